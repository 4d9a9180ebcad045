// Red team 2: a body the client never finished, or finished too slowly, once reached the API server
// as a complete one: on a reset, Node's Http2Stream.close() ends the sending side first (END_STREAM),
// and a chunked body carried no length by which the API server could tell. Now every body goes
// upstream with an exact length, and a chunked one only once it has arrived whole. Each test asserts
// the safe outcome; the API server's audit log and its stored objects are the judges.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createNamespace, grantInNamespace, readAuditEvents } from '../../local-cluster/kube.js';
import { openTls } from '../support/wire.js';
import { startStandIn } from './support/stand-in.js';
import { sidecarEventFor } from './support/red-team.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const tag = (): string => randomBytes(3).toString('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('hardening: red team 2 findings, closed', function () {
  this.timeout(60_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar();
  const hasty = withSidecar({ flags: ['--upstream-timeout', '300ms'] });
  let ns: string;

  before(async function () {
    ns = await createNamespace(clients, 'redteam2-open');
    await grantInNamespace(cp, clients, ns, 'edit', 'rt2f-alice');
  });

  it('G1: a chunked create whose client goes away before the last chunk creates nothing, and both logs agree', async function () {
    const name = `rt2f-cut-${tag()}`;
    const json = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name } });
    const socket = await openTls({ port: sidecar.port, ca: sidecar.servingCa.certPem }, sidecar.clientCert('rt2f-alice'));
    socket.on('error', () => undefined);
    socket.write(`POST /api/v1/namespaces/${ns}/configmaps HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${json.length.toString(16)}\r\n${json}\r\n`);
    await sleep(400);
    socket.destroy(); // no terminating 0-chunk: the request never ended
    await sleep(1500);
    const creates = (await readAuditEvents(cp)).filter((e) => e.stage === 'ResponseComplete' && e.verb === 'create' && e.objectRef?.name === name);
    const created = await clients.core.readNamespacedConfigMap({ namespace: ns, name }).then(() => true, () => false);
    const ours = creates[0] ? await sidecarEventFor(sidecar, creates[0].auditID) : undefined;
    assert.equal(
      created,
      false,
      `created from a body the client never finished; API server: ${creates[0]?.responseStatus?.code} ${creates[0]?.responseStatus?.message}; sidecar: ${ours?.responseStatus?.code} objectRef ${JSON.stringify(ours?.objectRef)} annotations ${JSON.stringify(ours?.annotations)}`,
    );
  });

  it('G1 at the stand-in: a chunked body the client never finished never leaves; one with a length arrives, if at all, short of its length', async function () {
    const standIn = await startStandIn();
    try {
      const json = '{"metadata":{"name":"x"}}';
      const cut = async (tag: string, framing: string, bytes: string) => {
        const socket = await openTls({ port: standIn.sidecar.port, ca: standIn.sidecar.servingCa.certPem }, standIn.alice);
        socket.on('error', () => undefined);
        socket.write(`POST /api/v1/namespaces/default/configmaps?${tag} HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n${framing}\r\n\r\n${bytes}`);
        await sleep(400);
        socket.destroy();
      };
      await cut('g1-chunked', 'Transfer-Encoding: chunked', `${json.length.toString(16)}\r\n${json}\r\n`);
      await cut('g1-length', `Content-Length: ${json.length + 10}`, json);
      await sleep(800);
      assert.equal(standIn.fake.seen.find((r) => r.url.endsWith('?g1-chunked')), undefined, 'a chunked body is read whole before anything is forwarded');
      const withLength = standIn.fake.seen.find((r) => r.url.endsWith('?g1-length'));
      if (withLength) {
        assert.equal(withLength.headers['content-length'], String(json.length + 10), 'its length goes with it');
        assert.ok(withLength.aborted || (withLength.body?.length ?? 0) < json.length + 10, 'never complete');
        assert.equal(withLength.aborted, true, `the stand-in took ${JSON.stringify(withLength.body?.toString())} as a complete body`);
      }
    } finally {
      await standIn.stop();
    }
  });

  it('G2: a slow chunked YAML create cut by the upstream timeout creates nothing from the part that arrived', async function () {
    const name = `rt2f-slow-${tag()}`;
    const first = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  a: "1"\n`;
    const rest = `  b: "2"\n`;
    const socket = await openTls({ port: hasty.port, ca: hasty.servingCa.certPem }, hasty.clientCert('rt2f-alice'));
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.on('error', () => undefined);
    socket.write(`POST /api/v1/namespaces/${ns}/configmaps HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/yaml\r\nTransfer-Encoding: chunked\r\n\r\n${first.length.toString(16)}\r\n${first}\r\n`);
    await sleep(1500); // an honest client on a slow link; the sidecar's 300ms run out
    if (!socket.destroyed) socket.write(`${rest.length.toString(16)}\r\n${rest}\r\n0\r\n\r\n`);
    await sleep(800);
    socket.destroy();
    const answer = Buffer.concat(received).toString('latin1').split('\r\n')[0];
    const cm = await clients.core.readNamespacedConfigMap({ namespace: ns, name }).catch(() => undefined);
    const ev = (await readAuditEvents(cp)).find((e) => e.stage === 'ResponseComplete' && e.verb === 'create' && e.objectRef?.name === name);
    const ours = ev ? await sidecarEventFor(hasty, ev.auditID) : undefined;
    assert.equal(
      cm,
      undefined,
      `the client was told ${answer}; the API server created ${name} with data ${JSON.stringify(cm?.data)} (its audit: ${ev?.responseStatus?.code}); the sidecar's audit: ${ours?.responseStatus?.code} objectRef ${JSON.stringify(ours?.objectRef)}`,
    );
  });
});
