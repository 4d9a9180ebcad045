// Slow and hostile clients against a sidecar process: headers that never end (slowloris), TLS
// handshakes that never finish, oversized headers and bodies, many upgrades at once, a watch whose
// client never reads. Each limit answers with a Status, and the sidecar keeps serving everyone else
// meanwhile, quickly.
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { CertificateAndKey } from '../../lib/pki.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { createNamespace, grantInNamespace } from '../../local-cluster/kube.js';
import { type LocalSidecar } from '../../local-cluster/sidecar.js';
import { figure, size } from './support/knobs.js';
import { call, loops } from './support/load.js';
import { describeStats, processStats } from './support/process-stats.js';
import { withStandIn } from './support/stand-in.js';
import { exchange, openTls, parseAnswer } from '../support/wire.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const HEADERS_TIMEOUT_MS = 2000;

/** Requests from a well-behaved client while something else goes on: all must be served, quickly. */
function bystander(port: number, ca: string, cert: CertificateAndKey, path: string) {
  const traffic = loops(1, async () => {
    const started = Date.now();
    const answer = await call({ port, path, ca, cert, timeoutMs: 10_000 });
    await sleep(50);
    return { ...answer, ms: Date.now() - started };
  });
  return async (): Promise<void> => {
    const results = await traffic.stop();
    assert.ok(results.length > 0, 'the bystander got to ask');
    const bad = results.filter((a) => a.status !== 200);
    assert.deepEqual(bad.map((a) => `${a.status} ${a.error ?? a.body}`), [], 'every bystander request was served');
    const slowest = Math.max(...results.map((a) => a.ms));
    assert.ok(slowest < 3000, `a bystander request took ${slowest} ms`);
  };
}

function readAll(socket: Socket | TLSSocket): Promise<{ text: string; closedAfterMs: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ text, closedAfterMs: Date.now() - started }));
  });
}

function isStatus(body: string, code: number): boolean {
  try {
    const status = JSON.parse(body) as { kind?: string; code?: number };
    return status.kind === 'Status' && status.code === code;
  } catch {
    return false;
  }
}

describe('hardening: slow and hostile clients', function () {
  this.timeout(120_000);

  describe('against a stand-in API server', function () {
    const MAX_UPGRADES = 8;
    const standIn = withStandIn({
      asProcess: true,
      flags: [`--headers-timeout=${HEADERS_TIMEOUT_MS}ms`, `--max-upgrades=${MAX_UPGRADES}`, '--max-header-bytes=16384', '--max-request-body-bytes=65536'],
    });
    let fake: FakeUpstream;
    let sidecar: LocalSidecar;
    let alice: CertificateAndKey;

    before(function () {
      ({ fake, sidecar, alice } = standIn);
    });

    const target = () => ({ port: sidecar.port, ca: sidecar.servingCa.certPem });
    const watchBystander = () => bystander(sidecar.port, sidecar.servingCa.certPem, alice, '/api/v1/namespaces/team/configmaps');

    it('slowloris: headers that never end get a 408 Status within the headers timeout, and the connection is closed', async function () {
      const done = watchBystander();
      const attackers = await Promise.all(
        Array.from({ length: size(40, 200) }, async () => {
          const socket = await openTls(target(), alice);
          const answer = readAll(socket);
          socket.write('GET /version HTTP/1.1\r\nHost: localhost\r\n');
          const drip = setInterval(() => socket.writable && socket.write('X-Slow: a\r\n'), 300);
          return answer.finally(() => clearInterval(drip));
        }),
      );
      figure(`slowloris: ${attackers.length} clients, each answered 408 and closed after at most ${Math.max(...attackers.map((a) => a.closedAfterMs))} ms`);
      for (const { text, closedAfterMs } of attackers) {
        const answer = parseAnswer(text);
        assert.equal(answer.status, 408, text);
        assert.ok(isStatus(answer.body, 408), answer.body);
        assert.ok(closedAfterMs < HEADERS_TIMEOUT_MS + 2500, `closed after ${closedAfterMs} ms`);
      }
      await done();
    });

    it('TLS handshakes that never finish are dropped within the headers timeout', async function () {
      const done = watchBystander();
      const sockets: Socket[] = [];
      const stalled = Promise.all(
        Array.from({ length: size(40, 200) }, async () => {
          const socket = tcpConnect({ host: '127.0.0.1', port: sidecar.port });
          sockets.push(socket);
          await new Promise((resolve) => socket.once('connect', resolve));
          socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])); // the start of a ClientHello, and no more
          return readAll(socket);
        }),
      );
      try {
        const outcome = await Promise.race([stalled, sleep(HEADERS_TIMEOUT_MS + 5000).then(() => 'held' as const)]);
        if (outcome === 'held') assert.fail('stalled handshakes were still held open');
        figure(`stalled TLS handshakes: ${outcome.length} closed after at most ${Math.max(...outcome.map((o) => o.closedAfterMs))} ms`);
      } finally {
        sockets.forEach((s) => s.destroy());
      }
      await done();
    });

    it('oversized headers, one huge or a great many small ones: 431 Status', async function () {
      for (const headers of [`X-Big: ${'b'.repeat(20_000)}`, Array.from({ length: 3000 }, () => 'x:y').join('\r\n')]) {
        const answer = await exchange(target(), `GET /version HTTP/1.1\r\nHost: localhost\r\n${headers}\r\nConnection: close\r\n\r\n`, alice);
        assert.equal(answer.status, 431);
        assert.ok(isStatus(answer.body, 431), answer.body);
      }
    });

    it('oversized bodies: 413 Status when declared, and the request is not forwarded', async function () {
      const path = '/api/v1/namespaces/team/configmaps?big';
      const answer = await call({ ...target(), path, method: 'POST', cert: alice, headers: { 'content-type': 'application/json' }, body: 'x'.repeat(70_000) });
      assert.equal(answer.status, 413);
      assert.ok(isStatus(answer.body, 413), answer.body);
      assert.equal(fake.seen.filter((r) => r.url === path).length, 0);
    });

    it('answers a client that asks to close the connection by closing it', async function () {
      const socket = await openTls(target(), alice);
      const closed = readAll(socket);
      socket.write('GET /api/v1/namespaces/team/configmaps/closing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      const { text, closedAfterMs } = await Promise.race([closed, sleep(5000).then(() => ({ text: '', closedAfterMs: Infinity }))]);
      assert.ok(closedAfterMs < 5000, 'the sidecar closed the connection');
      assert.equal(parseAnswer(text).status, 200);
      assert.match(text, /\r\nconnection: close\r\n/i);
    });

    it(`many upgrades at once: at most --max-upgrades (${MAX_UPGRADES}) are relayed, the rest get a 429 Status, others are served`, async function () {
      const done = watchBystander();
      const exec = '/api/v1/namespaces/team/pods/dashboard/exec?command=sh&stdin=true';
      const spdy = `POST ${exec} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`;
      const open = async () => {
        const socket = await openTls(target(), alice);
        const head = new Promise<string>((resolve) => {
          let text = '';
          const onData = (chunk: Buffer) => {
            text += chunk.toString('latin1');
            if (text.includes('\r\n\r\n')) {
              socket.off('data', onData);
              resolve(text);
            }
          };
          socket.on('data', onData);
          socket.on('close', () => resolve(text));
        });
        socket.on('error', () => undefined);
        socket.write(spdy);
        return { socket, answer: parseAnswer(await head) };
      };
      const attempts = await Promise.all(Array.from({ length: size(40, 200) }, open));
      const relayed = attempts.filter((a) => a.answer.status === 101);
      const refused = attempts.filter((a) => a.answer.status !== 101);
      figure(`upgrades at once: ${attempts.length} arrived, ${relayed.length} relayed, ${refused.length} refused`);
      assert.ok(relayed.length <= MAX_UPGRADES, `${relayed.length} upgrades relayed at once, more than --max-upgrades`);
      assert.ok(relayed.length > 0, 'some were relayed');
      for (const { answer } of refused) assert.equal(answer.status, 429, JSON.stringify(answer));
      // The relayed ones work: the stand-in echoes.
      const echo = await new Promise<string>((resolve) => {
        relayed[0]!.socket.once('data', (chunk: Buffer) => resolve(chunk.toString()));
        relayed[0]!.socket.write('ping');
      });
      assert.equal(echo, 'ping');
      attempts.forEach((a) => a.socket.destroy());
      await sleep(500);
      const again = await Promise.all(Array.from({ length: MAX_UPGRADES }, open));
      assert.equal(again.filter((a) => a.answer.status === 101).length, MAX_UPGRADES, 'the slots are free again once the connections close');
      again.forEach((a) => a.socket.destroy());
      await done();
    });
  });

  describe('against the real API server', function () {
    const { cp, clients } = withSharedControlPlane();
    const sidecar = withSidecar({ asProcess: true, flags: ['--max-request-body-bytes=65536'] });
    let ns: string;
    let alice: CertificateAndKey;

    before(async function () {
      ns = await createNamespace(clients, 'hardening-hostile');
      await grantInNamespace(cp, clients, ns, 'edit', 'alice');
      alice = sidecar.clientCert('alice');
    });

    async function openWatches(): Promise<number> {
      const text = await (await fetch(`${sidecar.opsUrl}/metrics`)).text();
      return Number(/^chaperone_open_watches (\d+)/m.exec(text)?.[1] ?? 0);
    }

    it('a body over the limit sent in chunks: 413 Status', async function () {
      const socket = await openTls({ port: sidecar.port, ca: sidecar.servingCa.certPem }, alice);
      const answer = readAll(socket);
      socket.write(`POST /api/v1/namespaces/${ns}/configmaps HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`);
      const chunk = 'x'.repeat(16_384);
      for (let i = 0; i < 8; i++) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      socket.end('0\r\n\r\n');
      const parsed = parseAnswer((await answer).text);
      assert.equal(parsed.status, 413);
    });

    it('a watch whose client never reads: the sidecar holds back instead of buffering, keeps serving others, and lets go when the client does', async function () {
      const pid = sidecar.process!.pid!;
      const socket = await openTls({ port: sidecar.port, ca: sidecar.servingCa.certPem }, alice);
      socket.write(`GET /api/v1/namespaces/${ns}/configmaps?watch=true HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      await new Promise((resolve) => socket.once('data', resolve));
      socket.pause(); // and never read again
      const before = processStats(pid);
      await clients.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'small' }, data: { value: 'small' } } });
      const done = bystander(sidecar.port, sidecar.servingCa.certPem, alice, `/api/v1/namespaces/${ns}/configmaps/small`);
      const value = 'v'.repeat(512 * 1024);
      const updates = size(100, 600); // 50 MiB of events in the short run, 300 MiB in the long one
      await clients.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'flood' }, data: { value } } });
      for (let i = 0; i < updates; i++) {
        await clients.core.replaceNamespacedConfigMap({ name: 'flood', namespace: ns, body: { metadata: { name: 'flood' }, data: { value: `${i}${value.slice(String(i).length)}` } } });
      }
      const during = processStats(pid);
      await done();
      const floodMiB = (updates * value.length) / 2 ** 20;
      const grownMiB = (during.rssBytes - before.rssBytes) / 2 ** 20;
      figure(`never-reading watch client: ${floodMiB} MiB of events; sidecar ${describeStats(before)} -> ${describeStats(during)}`);
      assert.ok(grownMiB < floodMiB / 2, `the sidecar grew by ${grownMiB.toFixed(1)} MiB for ${floodMiB} MiB of events nobody read`);
      assert.ok((await openWatches()) >= 1 || socket.destroyed, 'the watch is open (or the API server dropped the slow watcher)');
      socket.destroy();
      const deadline = Date.now() + 10_000;
      while ((await openWatches()) > 0 && Date.now() < deadline) await sleep(200);
      assert.equal(await openWatches(), 0, 'the upstream watch is released once the client is gone');
    });
  });
});
