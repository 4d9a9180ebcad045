// HTTP/2 from clients to the sidecar, against the real API server: many requests and a watch on one
// connection, each request authenticated by the connection's certificate and judged on its own; and
// what HTTP/2 lets a client try that HTTP/1.1 does not (pseudo-headers, CONNECT, a body shorter than
// declared, a session without a certificate beside one with it), each judged by both audit logs.
import assert from 'node:assert/strict';
import { connect as connectHttp2, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as connectTls } from 'node:tls';
import { auditEventsFor, createNamespace, grantInNamespace, kubectl } from '../../local-cluster/kube.js';
import type { TestSidecar } from '../../local-cluster/sidecar.js';
import type { CertificateAndKey } from '../../lib/pki.js';
import { readEventLines, waitForEventLines } from '../unit/sidecar/audit/support.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The stream was reset instead of answered: its error code. */
  reset?: string;
}

function session(sidecar: TestSidecar, cert?: CertificateAndKey): Promise<ClientHttp2Session> {
  const opened = connectHttp2(sidecar.url, { ca: sidecar.servingCa.certPem, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) });
  return new Promise((resolve, reject) => {
    opened.once('connect', () => resolve(opened));
    opened.once('error', reject);
  });
}

function ask(client: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string): Promise<Answer> {
  const stream = client.request(headers, { endStream: body === undefined });
  return new Promise((resolve) => {
    let answer: Answer | undefined;
    stream.on('response', (received) => (answer = { status: Number(received[':status']), headers: received, body: '' }));
    stream.on('data', (chunk: Buffer) => answer && (answer.body += chunk.toString()));
    stream.on('end', () => resolve(answer!));
    stream.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, headers: {}, body: '', reset: err.code ?? err.message }));
    if (body !== undefined) stream.end(body);
  });
}

function auditIdOf(answer: Answer): string {
  const id = answer.headers['audit-id'];
  assert.ok(typeof id === 'string' && id.length > 0, `the answer carries the sidecar's Audit-ID: ${JSON.stringify(answer)}`);
  return id;
}

describe('HTTP/2 clients (real API server)', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar();
  const http1Only = withSidecar({ flags: ['--http2=false'] });
  let ns: string;
  let alice: CertificateAndKey;
  const open: ClientHttp2Session[] = [];

  before(async function () {
    ns = await createNamespace(clients, 'h2');
    await grantInNamespace(cp, clients, ns, 'edit', 'alice');
    alice = sidecar.clientCert('alice', ['dev']);
  });

  after(() => open.forEach((client) => client.destroy()));

  async function aliceSession(): Promise<ClientHttp2Session> {
    const client = await session(sidecar, alice);
    open.push(client);
    return client;
  }

  it('offers h2 in the TLS handshake, and only http/1.1 with --http2=false', async function () {
    const chosen = (server: TestSidecar) =>
      new Promise<string | false>((resolve, reject) => {
        const options = { host: '127.0.0.1', port: server.port, ca: server.servingCa.certPem, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] };
        const socket = connectTls(options, () => {
          resolve(socket.alpnProtocol ?? false);
          socket.destroy();
        });
        socket.once('error', reject);
      });
    assert.equal(await chosen(sidecar), 'h2');
    assert.equal(await chosen(http1Only), 'http/1.1');
  });

  it('serves twenty requests at once on one connection, each as alice, each with its own Audit-ID in both logs', async function () {
    const client = await aliceSession();
    const answers = await Promise.all(Array.from({ length: 20 }, () => ask(client, { ':path': `/api/v1/namespaces/${ns}/configmaps` })));
    const ids = answers.map((answer) => {
      assert.equal(answer.status, 200, answer.body);
      return auditIdOf(answer);
    });
    assert.equal(new Set(ids).size, 20);
    const ours = await waitForEventLines(sidecar.auditLog, ids);
    assert.ok(ours.every((event) => event.user.username === 'alice' && event.verb === 'list'));
    for (const id of ids.slice(0, 3)) {
      const [theirs] = await auditEventsFor(cp, id);
      assert.equal(theirs?.user.username, sidecar.serviceAccountUsername);
      assert.equal(theirs?.impersonatedUser?.username, 'alice');
    }
  });

  it('streams a watch on a connection that serves other requests meanwhile, and ends it when the client resets it', async function () {
    const client = await aliceSession();
    const watch = client.request({ ':path': `/api/v1/namespaces/${ns}/configmaps?watch=true&timeoutSeconds=60` }, { endStream: true });
    const headers = await new Promise<IncomingHttpHeaders>((resolve) => watch.once('response', resolve));
    assert.equal(headers[':status'], 200, 'the watch is answered before any event (client-go waits for it)');
    let seen = '';
    watch.on('data', (chunk: Buffer) => (seen += chunk.toString()));
    const created = await ask(client, { ':method': 'POST', ':path': `/api/v1/namespaces/${ns}/configmaps`, 'content-type': 'application/json' }, JSON.stringify({ metadata: { name: 'seen-by-watch' } }));
    assert.equal(created.status, 201, created.body);
    const deadline = Date.now() + 10_000;
    while (!seen.includes('seen-by-watch') && Date.now() < deadline) await new Promise((wake) => setTimeout(wake, 50));
    assert.match(seen, /"type":"ADDED".*seen-by-watch/);
    watch.close();
    const watchId = headers['audit-id'] as string;
    const [recorded] = await waitForEventLines(sidecar.auditLog, [watchId]);
    assert.equal(recorded?.verb, 'watch');
    const after = await ask(client, { ':path': `/api/v1/namespaces/${ns}/configmaps/seen-by-watch` });
    assert.equal(after.status, 200, 'the connection goes on after one of its streams was reset');
  });

  it('judges each connection by its own certificate: a connection without one is 401, never alice', async function () {
    const anonymous = await session(sidecar);
    open.push(anonymous);
    const refused = await ask(anonymous, { ':path': `/api/v1/namespaces/${ns}/configmaps` });
    assert.equal(refused.status, 401);
    assert.deepEqual(await auditEventsFor(cp, auditIdOf(refused), 500), []);
    const aliceAnswer = await ask(await aliceSession(), { ':path': `/api/v1/namespaces/${ns}/configmaps` });
    assert.equal(aliceAnswer.status, 200);
  });

  it('sends the API server its own :authority and :path, never the client\'s: a full URL as :path never leaves', async function () {
    const client = await aliceSession();
    const elsewhere = await ask(client, { ':path': `/api/v1/namespaces/${ns}/configmaps`, ':authority': 'attacker.example:443' });
    assert.equal(elsewhere.status, 200);
    const [event] = await auditEventsFor(cp, auditIdOf(elsewhere));
    assert.equal(event?.impersonatedUser?.username, 'alice');
    const before = (await readEventLines(sidecar.auditLog)).length;
    const fullUrl = await ask(client, { ':path': `https://127.0.0.1:${new URL(cp.url).port}/api/v1/namespaces/${ns}/secrets` });
    // nghttp2 resets a stream whose :path is not a path; the sidecar's own check would answer 400.
    assert.ok(fullUrl.reset !== undefined || fullUrl.status === 400, JSON.stringify(fullUrl));
    const forwarded = (await readEventLines(sidecar.auditLog)).slice(before).filter((event) => event.requestURI.includes('/secrets'));
    assert.deepEqual(forwarded.filter((event) => event.annotations?.['chaperone.dev/forwarded'] !== 'false'), []);
  });

  it('refuses a nested Impersonate-User alice may not use, before the API server', async function () {
    const answer = await ask(await aliceSession(), { ':path': `/api/v1/namespaces/${ns}/configmaps`, 'impersonate-user': 'admin' });
    assert.equal(answer.status, 403);
    assert.deepEqual(await auditEventsFor(cp, auditIdOf(answer), 500), []);
  });

  it('never tunnels: CONNECT is refused, and nothing reaches the API server', async function () {
    const before = (await readEventLines(sidecar.auditLog)).length;
    const answer = await ask(await aliceSession(), { ':method': 'CONNECT', ':authority': new URL(cp.url).host });
    // node:http2 answers CONNECT 405 itself: it never reaches the pipeline, so no event either.
    assert.equal(answer.status, 405, JSON.stringify(answer));
    const events = await readEventLines(sidecar.auditLog);
    assert.deepEqual(events.slice(before).filter((event) => event.verb === 'connect' || event.requestURI === '' || event.requestURI === '/'), []);
  });

  it('refuses headers larger than --max-header-bytes before anything is forwarded', async function () {
    const before = (await readEventLines(sidecar.auditLog)).length;
    const answer = await ask(await aliceSession(), { ':path': `/api/v1/namespaces/${ns}/configmaps`, 'x-padding': 'a'.repeat(128 * 1024) });
    assert.ok(answer.reset !== undefined || answer.status === 431, JSON.stringify({ ...answer, body: answer.body.slice(0, 200) }));
    const recorded = (await readEventLines(sidecar.auditLog)).slice(before);
    assert.deepEqual(recorded.filter((event) => event.annotations?.['chaperone.dev/forwarded'] === 'true'), []);
  });

  it('refuses a GET that declares a body', async function () {
    const answer = await ask(await aliceSession(), { ':path': `/api/v1/namespaces/${ns}/configmaps`, 'content-length': '5' }, 'hello');
    assert.equal(answer.status, 400, answer.body);
    assert.deepEqual(await auditEventsFor(cp, auditIdOf(answer), 500), []);
  });

  it('creates nothing from a body shorter than its declared length: the stream is reset and the API server stores no object', async function () {
    const body = JSON.stringify({ metadata: { name: 'short-body' } });
    const answer = await ask(
      await aliceSession(),
      { ':method': 'POST', ':path': `/api/v1/namespaces/${ns}/configmaps`, 'content-type': 'application/json', 'content-length': String(body.length + 20) },
      body,
    );
    assert.notEqual(answer.status, 201, JSON.stringify(answer));
    await new Promise((wake) => setTimeout(wake, 1000));
    const stored = await ask(await aliceSession(), { ':path': `/api/v1/namespaces/${ns}/configmaps/short-body` });
    assert.equal(stored.status, 404, 'the API server never stored the object');
  });

  it('creates what a chunk-less body of unknown length carries, read whole first', async function () {
    const answer = await ask(
      await aliceSession(),
      { ':method': 'POST', ':path': `/api/v1/namespaces/${ns}/configmaps`, 'content-type': 'application/json' },
      JSON.stringify({ metadata: { name: 'unknown-length' }, data: { k: 'v' } }),
    );
    assert.equal(answer.status, 201, answer.body);
    const [event] = await auditEventsFor(cp, auditIdOf(answer));
    assert.equal(event?.verb, 'create');
    assert.equal(event?.objectRef?.name, 'unknown-length');
  });

  it('serves kubectl, which speaks HTTP/2 to a server that offers it', async function () {
    const http2Connections = async () => Number(/^chaperone_http2_connections_total (\d+)/m.exec(await (await fetch(`${sidecar.opsUrl}/metrics`)).text())?.[1]);
    const before = await http2Connections();
    const kubeconfig = await sidecar.kubeconfigFor('alice', ['dev']);
    const result = await kubectl(kubeconfig, ['get', 'configmaps', '-n', ns, '-o', 'name']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /configmap\/seen-by-watch/);
    assert.equal(await http2Connections(), before + 1, 'kubectl came on one HTTP/2 connection');
    const created = await kubectl(kubeconfig, ['create', 'configmap', 'made-by-kubectl', '-n', ns, '--from-literal=k=v']);
    assert.equal(created.code, 0, created.stderr);
    const read = await ask(await aliceSession(), { ':path': `/api/v1/namespaces/${ns}/configmaps/made-by-kubectl` });
    assert.equal((JSON.parse(read.body) as { data: Record<string, string> }).data.k, 'v', 'the body with its length went through whole');
  });
});

describe('HTTP/2 clients at shutdown (a real process, SIGTERM)', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar({ asProcess: true, flags: ['--shutdown-timeout=5s'] });

  it('ends the watches of a connection cleanly, then the connection, and exits in time', async function () {
    const ns = await createNamespace(clients, 'h2-shutdown');
    await grantInNamespace(cp, clients, ns, 'view', 'alice');
    const client = await session(sidecar, sidecar.clientCert('alice', []));
    const watches = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<{ ended: Promise<'end' | 'error'> }>((resolve, reject) => {
            const watch = client.request({ ':path': `/api/v1/namespaces/${ns}/configmaps?watch=true` }, { endStream: true });
            const ended = new Promise<'end' | 'error'>((done) => {
              watch.once('end', () => done('end'));
              watch.once('error', () => done('error'));
            });
            watch.once('response', (headers) => {
              if (headers[':status'] !== 200) reject(new Error(`a watch was answered ${headers[':status']}`));
              watch.resume();
              resolve({ ended });
            });
          }),
      ),
    );
    const closed = new Promise<void>((resolve) => client.once('close', resolve));
    const exited = new Promise<number | null>((resolve) => sidecar.process!.once('exit', (code) => resolve(code)));
    const signalledAt = Date.now();
    sidecar.process!.kill('SIGTERM');
    assert.deepEqual(await Promise.all(watches.map((w) => w.ended)), ['end', 'end', 'end'], 'each stream ends with END_STREAM, not a reset');
    await closed;
    assert.equal(await exited, 0);
    assert.ok(Date.now() - signalledAt < 5000, `exited after ${Date.now() - signalledAt}ms`);
  });
});

describe('HTTP/2 connections that say nothing', function () {
  this.timeout(60_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar({ flags: ['--headers-timeout=1s'] });

  it('closes a connection that begins no request within --headers-timeout, as HTTP/1.1 does, and keeps one that did', async function () {
    const ns = await createNamespace(clients, 'h2-idle');
    await grantInNamespace(cp, clients, ns, 'view', 'alice');
    const alice = sidecar.clientCert('alice', []);
    const silent = await session(sidecar, alice);
    const silentClosed = new Promise<number>((resolve) => {
      const openedAt = Date.now();
      silent.once('close', () => resolve(Date.now() - openedAt));
    });
    const busy = await session(sidecar, alice);
    let busyClosed = false;
    busy.once('close', () => (busyClosed = true));
    assert.equal((await ask(busy, { ':path': `/api/v1/namespaces/${ns}/configmaps` })).status, 200);
    const closedAfter = await silentClosed;
    assert.ok(closedAfter < 5000, `the silent connection was closed after ${closedAfter}ms`);
    await new Promise((wake) => setTimeout(wake, 1500));
    assert.equal(busyClosed, false, 'a connection that served a request waits for the idle timeout, not the headers timeout');
    assert.equal((await ask(busy, { ':path': `/api/v1/namespaces/${ns}/configmaps` })).status, 200);
    busy.destroy();
  });
});
