// Forwarding against a stand-in API server (test/support/fake-upstream.ts), for what the local
// control plane cannot show: bytes of exec and port-forward streams (there is no kubelet), and
// exactly which headers arrive upstream.
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { connect, type TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { startFakeUpstream, type FakeUpstream, type SeenRequest } from '../../support/fake-upstream.js';
import { launchSidecar, rawRequest, type LocalSidecar } from '../../../local-cluster/sidecar.js';
import type { CertificateAndKey } from '../../../lib/pki.js';

const TOKEN = 'scoped-token-for-tests';
const EXEC = '/api/v1/namespaces/team/pods/dashboard/exec?command=sh&stdin=true&stdout=true';

/** Opens a TLS connection and writes a request by hand; resolves with the socket once the response head is in. */
function rawUpgrade(sidecar: LocalSidecar, cert: CertificateAndKey, head: string): Promise<{ status: number; headText: string; socket: TLSSocket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: sidecar.port, ca: sidecar.servingCa.certPem, cert: cert.certPem, key: cert.keyPem, servername: 'localhost' }, () => socket.write(head));
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const headText = buffer.subarray(0, end).toString();
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(headText)?.[1] ?? 0), headText, socket, rest: buffer.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.on('error', reject);
  });
}

function readMore(socket: TLSSocket, already: Buffer, bytes: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let buffer = already;
    if (buffer.length >= bytes) return resolve(buffer);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length >= bytes) {
        socket.off('data', onData);
        resolve(buffer);
      }
    };
    socket.on('data', onData);
  });
}

function lastUpgrade(fake: FakeUpstream): SeenRequest {
  const upgrades = fake.seen.filter((r) => r.headers.upgrade);
  assert.ok(upgrades.length > 0, 'the upgrade reached the upstream');
  return upgrades.at(-1)!;
}

function assertSanitised(seen: SeenRequest): void {
  assert.equal(seen.headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(seen.headers['impersonate-user'], 'alice');
  const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  assert.deepEqual(names.filter((n) => n === 'impersonate-group').length, 2, 'dev and system:authenticated, nothing more');
  assert.ok(!names.includes('x-remote-user'));
  assert.ok(!names.some((n) => n.startsWith('x-forwarded-')));
  assert.equal(names.filter((n) => n === 'authorization').length, 1);
}

describe('sidecar forwarding to a stand-in API server', function () {
  this.timeout(30_000);
  let fake: FakeUpstream;
  let sidecar: LocalSidecar;
  let alice: CertificateAndKey;

  before(async function () {
    fake = await startFakeUpstream();
    sidecar = await launchSidecar({ upstream: fake.url, upstreamCaPem: fake.ca.certPem, token: TOKEN, flags: ['--max-upgrades=2', '--max-request-body-bytes=1024', '--max-header-bytes=4096'] });
    alice = sidecar.clientCert('alice', ['dev']);
  });

  after(async function () {
    await sidecar?.stop();
    await fake?.close();
  });

  it('relays a WebSocket exec (v5.channel.k8s.io) both ways, impersonated and sanitised', async function () {
    const ws = new WebSocket(`wss://127.0.0.1:${sidecar.port}${EXEC}`, ['v5.channel.k8s.io', `base64url.bearer.authorization.k8s.io.${Buffer.from('not-for-upstream').toString('base64url')}`], {
      ca: sidecar.servingCa.certPem,
      cert: alice.certPem,
      key: alice.keyPem,
      headers: { 'X-Remote-User': 'admin', Authorization: 'Bearer stolen', 'X-Forwarded-For': '10.1.1.1' },
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    assert.equal(ws.protocol, 'v5.channel.k8s.io');
    const echoed = new Promise<Buffer>((resolve) => ws.once('message', (data) => resolve(data as Buffer)));
    ws.send(Buffer.from([0, ...Buffer.from('echo hello\n')]));
    assert.deepEqual([...(await echoed)], [0, ...Buffer.from('echo hello\n')]);
    ws.close();
    const seen = lastUpgrade(fake);
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, EXEC);
    assert.equal(seen.headers['sec-websocket-protocol'], 'v5.channel.k8s.io', 'the bearer subprotocol never reaches the API server');
    assertSanitised(seen);
  });

  it('relays a SPDY/3.1 upgrade both ways, impersonated and sanitised', async function () {
    const { status, headText, socket, rest } = await rawUpgrade(
      sidecar,
      alice,
      [`POST ${EXEC} HTTP/1.1`, 'Host: localhost', 'Connection: Upgrade', 'Upgrade: SPDY/3.1', 'X-Stream-Protocol-Version: v4.channel.k8s.io', 'X-Remote-User: admin', 'Impersonate-Group: system:masters', '', ''].join('\r\n'),
    );
    // the client asked for a group without a user: refused before anything went upstream
    assert.equal(status, 400, headText);
    socket.destroy();
    void rest;

    const upgraded = await rawUpgrade(
      sidecar,
      alice,
      [`POST ${EXEC} HTTP/1.1`, 'Host: localhost', 'Connection: Upgrade', 'Upgrade: SPDY/3.1', 'X-Stream-Protocol-Version: v4.channel.k8s.io', 'X-Remote-User: admin', '', ''].join('\r\n'),
    );
    assert.equal(upgraded.status, 101, upgraded.headText);
    assert.match(upgraded.headText, /X-Stream-Protocol-Version: v4\.channel\.k8s\.io/i);
    const frame = Buffer.from([0x80, 0x03, 0x00, 0x01, 0x01, 0x00, 0x00, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    upgraded.socket.write(frame);
    const back = await readMore(upgraded.socket, upgraded.rest, frame.length);
    assert.deepEqual([...back.subarray(0, frame.length)], [...frame]);
    upgraded.socket.destroy();
    const seen = lastUpgrade(fake);
    assert.equal(seen.method, 'POST');
    assert.equal(seen.headers.upgrade, 'SPDY/3.1');
    assertSanitised(seen);
  });

  it('refuses an upgrade the API server would not authorize, before it goes upstream', async function () {
    fake.allow = false;
    try {
      const before = fake.seen.filter((r) => r.headers.upgrade).length;
      // another pod than before, so no cached decision answers
      const { status, socket } = await rawUpgrade(sidecar, alice, [`GET ${EXEC.replace('dashboard', 'other')} HTTP/1.1`, 'Host: localhost', 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', '', ''].join('\r\n'));
      socket.destroy();
      assert.equal(status, 403);
      assert.equal(fake.seen.filter((r) => r.headers.upgrade).length, before);
    } finally {
      fake.allow = true;
    }
  });

  it('hands an upgrade the API server refused back whole, framed by its own length', async function () {
    const refused = EXEC.replace('/pods/dashboard/', '/pods/refused-upgrade/');
    const { status, headText, socket, rest } = await rawUpgrade(sidecar, alice, [`POST ${refused} HTTP/1.1`, 'Host: localhost', 'Connection: Upgrade', 'Upgrade: SPDY/3.1', '', ''].join('\r\n'));
    assert.equal(status, 403);
    assert.doesNotMatch(headText, /transfer-encoding/i, 'the body reaches the client without its chunking: no header may say otherwise');
    const length = Number(/content-length: (\d+)/i.exec(headText)?.[1]);
    const body = await readMore(socket, rest, length);
    socket.destroy();
    assert.equal(body.length, length);
    assert.equal((JSON.parse(body.toString()) as { message: string }).message, 'refused by the stand-in');
  });

  it('caps concurrent upgrades with a 429 Status', async function () {
    const spdy = [`POST ${EXEC} HTTP/1.1`, 'Host: localhost', 'Connection: Upgrade', 'Upgrade: SPDY/3.1', '', ''].join('\r\n');
    const open = [await rawUpgrade(sidecar, alice, spdy), await rawUpgrade(sidecar, alice, spdy)];
    assert.deepEqual(open.map((o) => o.status), [101, 101]);
    const third = await rawUpgrade(sidecar, alice, spdy);
    assert.equal(third.status, 429);
    assert.match(third.headText, /application\/json/);
    [...open, third].forEach((o) => o.socket.destroy());
  });

  it('refuses a body over the cap with 413 and headers over the cap with 431, as Status', async function () {
    const big = await rawRequest(`${sidecar.url}/api/v1/namespaces/team/configmaps`, { method: 'POST', ca: sidecar.servingCa.certPem, cert: alice, body: 'x'.repeat(2048), headers: { 'content-type': 'application/json' } });
    assert.equal(big.status, 413);
    assert.equal((JSON.parse(big.body) as { reason: string }).reason, 'RequestEntityTooLarge');
    const hugeHeaders = await rawRequest(`${sidecar.url}/version`, { ca: sidecar.servingCa.certPem, cert: alice, headers: { 'x-padding': 'p'.repeat(8192) } });
    assert.equal(hugeHeaders.status, 431);
    assert.equal((JSON.parse(hugeHeaders.body) as { kind: string }).kind, 'Status');
  });

  it('forwards nothing for a client that went away while the decision was being made', async function () {
    fake.reviewDelayMs = 300;
    try {
      const path = '/api/v1/namespaces/team/configmaps?watch=true&resourceVersion=gone-client';
      await new Promise<void>((resolve) => {
        const req = request({ host: '127.0.0.1', port: sidecar.port, path, ca: sidecar.servingCa.certPem, cert: alice.certPem, key: alice.keyPem, agent: false });
        req.on('error', () => resolve());
        req.end();
        setTimeout(() => req.destroy(), 50);
      });
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.deepEqual(fake.seen.filter((r) => r.url === path), [], 'the watch never reached the upstream');
    } finally {
      fake.reviewDelayMs = 0;
    }
  });

  it('asks for the body of Expect: 100-continue only once authorized, and bounds it by --upstream-timeout like any request', async function () {
    const quick = await launchSidecar({ upstream: fake.url, upstreamCaPem: fake.ca.certPem, token: TOKEN, flags: ['--upstream-timeout=300ms'] });
    fake.answerDelayMs = 3000;
    try {
      const path = '/api/v1/namespaces/team/configmaps?expect=1';
      const bytes = [`POST ${path} HTTP/1.1`, 'Host: localhost', 'Content-Type: application/json', 'Content-Length: 2', 'Expect: 100-continue', 'Connection: close', '', ''].join('\r\n');
      const { status, socket } = await rawUpgrade(quick, quick.clientCert('alice', ['dev']), bytes);
      assert.equal(status, 100, 'told to go on, once the request was authorized');
      const rest = await new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.on('close', () => resolve(text));
        socket.write('{}');
      });
      assert.match(rest, /^HTTP\/1\.1 504 /, 'the API server did not answer within the timeout');
      const seen = fake.seen.find((r) => r.url === path);
      assert.ok(seen, 'the request went upstream');
      assertSanitised(seen);
      assert.equal(seen.headers.expect, undefined, 'the sidecar frames the body; the API server is not asked to continue');
    } finally {
      fake.answerDelayMs = 0;
      await quick.stop();
    }
  });

  it('sends a request once more when the API server, going away, turned it away unprocessed', async function () {
    fake.refuseNextStream = true;
    const path = '/api/v1/namespaces/team/configmaps?goaway=1';
    const answer = await rawRequest(`${sidecar.url}${path}`, { ca: sidecar.servingCa.certPem, cert: alice });
    assert.equal(answer.status, 200, answer.body);
    const arrived = fake.seen.filter((r) => r.url === path);
    assert.deepEqual(arrived.map((r) => Boolean(r.refused)), [true, false], 'refused once, then served');
    assert.equal(arrived[0]!.headers['audit-id'], arrived[1]!.headers['audit-id'], 'the same request, sent again');
  });

  it('forwards a body within the cap untouched', async function () {
    const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/team/configmaps`, { method: 'POST', ca: sidecar.servingCa.certPem, cert: alice, body: '{"a":1}', headers: { 'content-type': 'application/json' } });
    assert.equal(response.status, 200);
  });
});
