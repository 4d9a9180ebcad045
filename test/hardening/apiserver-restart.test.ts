// The API server stopped and started again under a running sidecar (a process, as in a pod), on a
// control plane of this suite's own: while it is down every request is answered with a 503 Status
// and /readyz fails; open watches end instead of hanging; once it is back the sidecar serves again
// by itself; and it is left holding no socket the API server closed (CLOSE_WAIT) and no more
// descriptors than before.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createNamespace, grantInNamespace, type AuditEvent } from '../../local-cluster/kube.js';
import type { CertificateAndKey } from '../../lib/pki.js';
import { figure, size } from './support/knobs.js';
import { call, openStream } from './support/load.js';
import { describeStats, processStats } from './support/process-stats.js';
import { waitFor } from '../../local-cluster/wait.js';
import { withControlPlane, withSidecar } from '../support/fixtures.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('hardening: the API server stopped and started again', function () {
  this.timeout(size(240_000, 1_800_000));
  const { cp, clients } = withControlPlane();
  const sidecar = withSidecar({ asProcess: true }, { cp, clients });
  let ns: string;
  let alice: CertificateAndKey;
  let pid: number;

  before(async function () {
    pid = sidecar.process!.pid!;
    ns = await createNamespace(clients, 'hardening-restart');
    await grantInNamespace(cp, clients, ns, 'view', 'alice');
    alice = sidecar.clientCert('alice');
  });

  const get = (path: string) => call({ port: sidecar.port, path, ca: sidecar.servingCa.certPem, cert: alice });
  const readyz = async () => (await fetch(`${sidecar.opsUrl}/readyz`)).status;

  const cycles = size<('term' | 'kill')[]>(['kill'], ['kill', 'term', 'kill', 'term', 'kill']);
  cycles.forEach((how, i) => {
    it(`${how === 'kill' ? 'killed' : 'stopped'} (${i + 1}/${cycles.length}): 503 while down, watches end, recovery, no stuck sockets`, async function () {
      const list = `/api/v1/namespaces/${ns}/configmaps`;
      assert.equal((await get(list)).status, 200);
      const before = processStats(pid);
      const watch = await openStream({ port: sidecar.port, path: `${list}?watch=true`, ca: sidecar.servingCa.certPem, cert: alice });
      assert.equal(watch.status, 200);

      await cp.stopApiserver({ kill: how === 'kill' });
      const ended = await Promise.race([watch.ended, sleep(30_000).then(() => 'hanging' as const)]);
      assert.notEqual(ended, 'hanging', 'the open watch ended when the API server went away');

      const refused: string[] = [];
      for (const path of [list, `/api/v1/namespaces/${ns}/configmaps/never-asked-${i}`, '/version']) {
        const answer = await get(path);
        assert.equal(answer.status, 503, `${path} while the API server is down: ${answer.status} ${answer.error ?? answer.body}`);
        assert.equal((JSON.parse(answer.body) as { kind: string }).kind, 'Status');
        refused.push(String(answer.headers['audit-id']));
      }
      // The list's decision was cached, so it went as far as the connection: none of them reached the API server.
      const events = await waitFor('the audit events of the refused requests', async () => {
        const written = (await readFile(sidecar.auditLog, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as AuditEvent);
        const found = refused.map((id) => written.find((event) => event.auditID === id && event.stage === 'ResponseComplete'));
        return found.every(Boolean) ? (found as AuditEvent[]) : undefined;
      }, 10_000);
      for (const event of events) {
        assert.equal(event.responseStatus?.code, 503, event.requestURI);
        assert.equal(event.annotations?.['chaperone.dev/forwarded'], 'false', `${event.requestURI} is recorded as forwarded while the API server was down`);
      }
      await waitFor('/readyz fails', async () => ((await readyz()) === 503 ? true : undefined), 10_000);

      const downAt = Date.now();
      await cp.startApiserver();
      await waitFor('the sidecar serves again', async () => ((await get(list)).status === 200 ? true : undefined), 60_000);
      const recoveredMs = Date.now() - downAt;
      await waitFor('/readyz passes', async () => ((await readyz()) === 200 ? true : undefined), 60_000);

      // Keep-alive connections to the old API server are gone; what is left must be live.
      await sleep(1000);
      const after = processStats(pid);
      figure(`API server ${how}: serving again ${recoveredMs} ms after the restart began; before ${describeStats(before)}; after ${describeStats(after)}`);
      assert.equal(after.tcp.CLOSE_WAIT ?? 0, 0, `sockets the API server closed are still open: ${describeStats(after)}`);
      assert.ok(after.fds <= before.fds + 4, `descriptors grew: ${describeStats(before)} -> ${describeStats(after)}`);
    });
  });
});
