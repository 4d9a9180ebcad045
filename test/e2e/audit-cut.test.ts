// Requests their clients abandon, against the real API server: the sidecar's event says forwarded
// only when the API server has the request (docs/audit.md's integrity query, run as written, finds
// nothing), and its status is the one the API server recorded for the same auditID; a request that
// never reached the API server is recorded as the sidecar saw it end, with the identity known by
// then. Every path: HTTP/2 streams (plain, cut mid-body, long-running) and upgrades. Then every jq
// recipe of docs/audit.md, run as written over both logs, finds what the run did.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:tls';
import { createNamespace, grantInNamespace, readAuditEvents, waitForCanI } from '../../local-cluster/kube.js';
import type { CertificateAndKey } from '../../lib/pki.js';
import { ANNOTATIONS } from '../../sidecar/audit/event.js';
import type { Event } from '../../sidecar/audit/types.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { waitFor } from '../../local-cluster/wait.js';
import type { CommandResult } from '../../local-cluster/kube.js';
import { DocRunner } from '../support/doc-runner.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function succeeded(result: Promise<CommandResult>): Promise<CommandResult> {
  const { code, stdout, stderr } = await result;
  assert.equal(code, 0, `exit code ${code}: ${stderr}${code === 127 ? " (jq is needed to run the docs' queries: apt-get install jq)" : ''}`);
  return { code, stdout, stderr };
}

describe('audit: requests their clients abandon (real API server)', function () {
  this.timeout(300_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar();
  let ns: string;
  let alice: CertificateAndKey;

  before(async function () {
    ns = await createNamespace(clients, 'audit-cut');
    await grantInNamespace(cp, clients, ns, 'edit', 'alice');
    await waitForCanI(cp, 'alice', ['create', 'configmaps', '-n', ns]);
    alice = sidecar.clientCert('alice', ['dev']);
  });

  /** The sidecar's audit events so far. */
  async function recorded(): Promise<Event[]> {
    return (await readFile(sidecar.auditLog, 'utf8'))
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Event);
  }

  /** Writes one request and closes the connection `afterMs` later, whatever has happened by then. */
  function cut(request: string, afterMs: number): Promise<void> {
    return new Promise((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: Number(new URL(sidecar.url).port), ca: sidecar.servingCa.certPem, cert: alice.certPem, key: alice.keyPem, servername: 'localhost' }, () => {
        socket.write(request);
        setTimeout(() => socket.destroy(), afterMs);
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
      socket.on('data', () => undefined);
    });
  }

  it('records each once; forwarded only when the API server has it, with the code the API server recorded', async function () {
    // Each kind of request, cut at each moment: a list, a create sent whole, a create cut half-way
    // through its body (the sidecar ends its stream short), a watch (a long-running HTTP/2 stream),
    // and an exec upgrade (an HTTP/1.1 connection of its own, which the API server answers without
    // upgrading: the pod does not exist).
    const kinds = ['list', 'create', 'half-body', 'watch', 'exec'] as const;
    const moments = [0, 1, 2, 5, 10, 20, 50];
    const marks: string[] = [];
    const kindOf = new Map<string, string>();
    const requests: Promise<void>[] = [];
    for (let i = 0; i < kinds.length * moments.length * 2; i++) {
      const kind = kinds[i % kinds.length]!;
      const afterMs = moments[Math.floor(i / kinds.length) % moments.length]!;
      const mark = `cut-${i}-${Date.now()}`;
      marks.push(mark);
      kindOf.set(mark, kind);
      const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: mark }, data: { pad: 'x'.repeat(200) } });
      const post = `POST /api/v1/namespaces/${ns}/configmaps?fieldManager=${mark} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
      const request = {
        list: `GET /api/v1/namespaces/${ns}/configmaps?labelSelector=${mark} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
        create: `${post}${body}`,
        'half-body': `${post}${body.slice(0, 100)}`,
        watch: `GET /api/v1/namespaces/${ns}/configmaps?watch=true&labelSelector=${mark} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
        exec: `GET /api/v1/namespaces/${ns}/pods/${mark}/exec?command=ls&stdout=true HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n`,
      }[kind];
      requests.push(cut(request, kind === 'half-body' ? afterMs + 30 : afterMs));
      if (i % 10 === 9) await Promise.all(requests.splice(0));
    }
    await Promise.all(requests);
    await sleep(3000);

    const sidecarEvents = (await recorded()).filter((e) => marks.some((mark) => e.requestURI.includes(mark)));
    const apiServer = (await readAuditEvents(cp)) as unknown as Event[];
    const apiServerById = new Map<string, Event[]>();
    for (const event of apiServer) apiServerById.set(event.auditID, [...(apiServerById.get(event.auditID) ?? []), event]);

    const summary: Record<string, number> = {};
    const failures: string[] = [];
    for (const mark of marks) {
      try {
      const mine = sidecarEvents.filter((e) => new RegExp(`[=/]${mark}(?:[/&]|$)`).test(e.requestURI) && e.stage === 'ResponseComplete');
      assert.equal(mine.length, 1, `${mark}: one ResponseComplete`);
      const event = mine[0]!;
      const forwarded = event.annotations?.[ANNOTATIONS.forwarded] === 'true';
      const theirs = apiServerById.get(event.auditID) ?? [];
      const theirCode = (theirs.find((e) => e.stage === 'ResponseComplete') ?? theirs.find((e) => e.stage === 'ResponseStarted'))?.responseStatus?.code;
      const key = `${kindOf.get(mark)} forwarded=${forwarded} ours=${event.responseStatus?.code} theirs=${theirCode ?? 'none'}`;
      summary[key] = (summary[key] ?? 0) + 1;
      // The integrity query in docs/audit.md: forwarded, and the API server has no event.
      if (forwarded) assert.ok(theirs.length > 0, `${mark}: forwarded, but the API server has no event for ${event.auditID}: ${JSON.stringify(event)}`);
      else assert.equal(theirs.length, 0, `${mark}: not forwarded, yet the API server has ${event.auditID}`);
      if (theirCode !== undefined) assert.equal(event.responseStatus?.code, theirCode, `${mark}: the code the API server recorded: ${JSON.stringify(event)} vs ${JSON.stringify(theirs)}`);
      assert.notEqual(event.responseStatus?.status, 'Success', `${mark}: an abandoned request is no success unless the API server said so: ${JSON.stringify(event)}`);
      assert.equal(event.user.username, 'alice', `${mark}: the identity known by then`);
      } catch (err) {
        failures.push((err as Error).message.split('\n', 1)[0]!);
      }
    }
    this.test!.title += ` (${JSON.stringify(summary)})`;
    assert.deepEqual(failures, [], JSON.stringify(summary));
  });

  describe("docs/audit.md's jq recipes, run as written over both logs (named as the docs name them)", function () {
    let docs: DocRunner;
    let dir: string;
    let forwarded: Event;

    before(async function () {
      dir = await mkdtemp(path.join(tmpdir(), 'chaperone-audit-recipes-'));
      docs = await DocRunner.create({ testFile: import.meta.filename, dir, adminKubeconfig: cp.adminKubeconfig, namespace: ns });
      await symlink(cp.auditLog, docs.file('apiserver-audit.log'));
      await symlink(sidecar.auditLog, docs.file('sidecar-audit.log'));
      // One request of each outcome: forwarded, refused by authorization, and with no credential.
      const mark = `recipes-${Date.now()}`;
      const get = (path: string, cert?: CertificateAndKey) => rawRequest(`${sidecar.url}${path}`, { ca: sidecar.servingCa.certPem, cert });
      assert.equal((await get(`/api/v1/namespaces/${ns}/configmaps?labelSelector=${mark}`, alice)).status, 200);
      assert.equal((await get(`/api/v1/namespaces/kube-system/secrets?labelSelector=${mark}`, alice)).status, 403);
      assert.equal((await get(`/api/v1/namespaces/${ns}/configmaps?labelSelector=${mark}-nobody`)).status, 401);
      forwarded = await waitFor('the sidecar to record the forwarded request', async () => (await recorded()).find((e) => e.requestURI.endsWith(`labelSelector=${mark}`) && e.stage === 'ResponseComplete'), 10_000, 200);
      await waitFor('the API server to record it', async () => (await readAuditEvents(cp)).some((e) => e.auditID === forwarded.auditID && e.stage === 'ResponseComplete'), 10_000, 200);
    });

    after(async function () {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const lines = (stdout: string) => stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);

    it('what the API server did for each forwarded request, and who asked', async function () {
      const joined = lines((await succeeded(docs.run('docs/audit.md', 'apiserverSaw'))).stdout).find((line) => line.auditID === forwarded.auditID);
      assert.deepEqual({ ...joined, time: undefined, pod: undefined }, {
        auditID: forwarded.auditID, time: undefined, person: 'alice', how: 'x509', pod: undefined, verb: 'list', uri: forwarded.requestURI,
        apiserverSaw: sidecar.serviceAccountUsername, asWhom: 'alice', code: 200,
      });
    });

    it('who was behind one API server event (the auditID of this run for the example)', async function () {
      const found = lines((await succeeded(docs.run('docs/audit.md', 'ID=', { example: { written: '8c1e4f1a-6f0e-4d0e-9b8f-1c1f6d7e9a21', actual: forwarded.auditID } }))).stdout);
      assert.equal(found.length, 1);
      assert.equal((found[0]!.person as { username: string }).username, 'alice');
    });

    it('everything the sidecar refused, and failed authentication by source and reason', async function () {
      const refused = lines((await succeeded(docs.run('docs/audit.md', 'forwarded"] == "false"'))).stdout);
      assert.ok(refused.some((line) => line.person === 'alice' && line.code === 403 && String(line.uri).includes('/kube-system/secrets')), JSON.stringify(refused));
      assert.ok(refused.some((line) => line.person === '(unauthenticated)' && line.code === 401));
      const failures = (await succeeded(docs.run('docs/audit.md', '.responseStatus.code == 401'))).stdout;
      assert.match(failures, /^ *\d+ 127\.0\.0\.1\t[^\t]*\tno credential$/m);
    });

    it('integrity: no forwarded request the API server has no event for', async function () {
      assert.equal((await succeeded(docs.run('docs/audit.md', '$seen[.auditID]'))).stdout, '');
    });

    it('ran every recipe the docs say this suite runs', function () {
      assert.deepEqual(docs.notRun(), []);
    });
  });
});
