// The HTTP/2 session pool against a server of the test's own: streams spread over sessions by the
// limit, a session told to go away takes no more, and one whose peer stops answering is cut.
import assert from 'node:assert/strict';
import { constants, createSecureServer, type Http2SecureServer, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import { connect as connectTcp, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import { createCA, issueCertificate } from '../../../lib/pki.js';
import { SessionPool, type SessionPoolOptions } from '../../../sidecar/forward/sessions.js';

describe('sidecar/forward/sessions', function () {
  this.timeout(20_000);
  const ca = createCA({ commonName: 'sessions-test-ca' });
  const serving = issueCertificate(ca, { commonName: 'api', usage: 'server', ipAddresses: ['127.0.0.1'] });
  let server: Http2SecureServer;
  let url: URL;
  const serverSessions: Http2Session[] = [];
  /** Streams the server holds open without answering, until a test lets them go. */
  const held: ServerHttp2Stream[] = [];

  before(async function () {
    server = createSecureServer({ cert: serving.certPem, key: serving.keyPem, settings: { maxConcurrentStreams: 1000 } });
    server.on('session', (session: Http2Session) => serverSessions.push(session));
    server.on('stream', (stream: ServerHttp2Stream, headers) => {
      if (headers[':path'] === '/hold') held.push(stream);
      else stream.respond({ ':status': 200 }, { endStream: true });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });

  afterEach(function () {
    held.splice(0).forEach((stream) => stream.destroy());
    serverSessions.splice(0).forEach((session) => session.destroy());
  });

  after(async function () {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const pool = (overrides: Partial<SessionPoolOptions> = {}) =>
    new SessionPool({
      url,
      secureContext: createSecureContext({ ca: ca.certPem }),
      servername: undefined,
      maxStreamsPerSession: 3,
      idleTimeoutMs: 60_000,
      healthIntervalMs: 60_000,
      healthTimeoutMs: 60_000,
      ...overrides,
    });

  const until = async (what: string, done: () => boolean) => {
    const deadline = Date.now() + 10_000;
    while (!done()) {
      if (Date.now() > deadline) assert.fail(`never: ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  it('opens another session once one carries as many streams as allowed', async function () {
    const sessions = pool();
    const streams = Array.from({ length: 7 }, () => sessions.request({ ':method': 'GET', ':path': '/hold' }, true));
    await until('seven streams held', () => held.length === 7);
    assert.deepEqual(sessions.describe().map((s) => s.open), [3, 3, 1]);
    streams.forEach((s) => s.close());
    sessions.destroy();
  });

  it('takes no new stream on a session that was told to go away', async function () {
    const sessions = pool();
    const first = sessions.request({ ':method': 'GET', ':path': '/hold' }, true);
    await until('held', () => held.length === 1);
    serverSessions[0]!.goaway(constants.NGHTTP2_NO_ERROR);
    await until('retired', () => sessions.describe()[0]?.retired === true);
    const second = sessions.request({ ':method': 'GET', ':path': '/hold' }, true);
    await until('held on a new session', () => held.length === 2);
    assert.equal(serverSessions.length, 2);
    [first, second].forEach((s) => s.close());
    sessions.destroy();
  });

  it('cuts a session, and its streams, when the API server stops answering pings', async function () {
    // A TCP relay that can go silent, as a peer that vanished does: nothing sent is answered.
    const sockets: Socket[] = [];
    let silent = false;
    const relay = createTcpServer((client) => {
      const upstream = connectTcp(Number(url.port), '127.0.0.1');
      sockets.push(client, upstream);
      client.on('data', (chunk: Buffer) => silent || upstream.write(chunk));
      upstream.on('data', (chunk: Buffer) => silent || client.write(chunk));
      for (const s of [client, upstream]) s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const sessions = pool({ url: new URL(`https://127.0.0.1:${(relay.address() as AddressInfo).port}`), healthIntervalMs: 100, healthTimeoutMs: 300 });
    try {
      const stream = sessions.request({ ':method': 'GET', ':path': '/hold' }, true);
      await until('held', () => held.length === 1);
      const failed = new Promise<Error>((resolve) => stream.once('error', resolve));
      silent = true;
      const err = await failed;
      assert.match(err.message, /did not answer a ping within 300ms/);
    } finally {
      sessions.destroy();
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    }
  });

  it('keeps a session whose peer answers, however quiet its streams', async function () {
    const sessions = pool({ healthIntervalMs: 50, healthTimeoutMs: 200 });
    const stream = sessions.request({ ':method': 'GET', ':path': '/hold' }, true);
    await until('held', () => held.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(stream.destroyed, false);
    assert.deepEqual(sessions.describe(), [{ open: 1, retired: false }]);
    stream.close();
    sessions.destroy();
  });
});
