// The injector's Kubernetes REST client against a local HTTPS server that answers as the API server
// would: verbs and paths, Status errors, watch streams and their end, connections kept alive, the
// in-cluster token file read again after a rotation. test/e2e (injector, certificates, provision...)
// run it against the real kube-apiserver.
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeApi, KubeApiError, type KubeApiOptions, type WatchEvents } from '../../../lib/kube-api/client.js';
import { inClusterConnection, kubeconfigConnection } from '../../../lib/kube-api/connection.js';
import { coordinationV1, coreV1, admissionRegistrationV1, microTime } from '../../../lib/kube-api/resources.js';
import { kubeconfigYaml } from '../../../lib/kubeconfig.js';
import { createCA, issueCertificate } from '../../../lib/pki.js';
import { describeError, isConflict, isNotFound, listWatch, statusCode } from '../../../injector/provision/kube.js';
import { waitFor } from '../../../local-cluster/wait.js';
import { silentLog } from '../injector/helpers.js';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: string;
  port: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

const status = (code: number, reason: string, message: string) => JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message });

describe('lib/kube-api: the injector’s REST client', function () {
  this.timeout(20_000);
  const ca = createCA({ commonName: 'kube-api-test-ca' });
  const serving = issueCertificate(ca, { commonName: 'apiserver', usage: 'server', ipAddresses: ['127.0.0.1', '::1'], dnsNames: ['localhost'] });
  let server: Server;
  let port: number;
  let dir: string;
  let seen: Seen[];
  let handler: Handler;
  const apis: KubeApi[] = [];

  before(async function () {
    server = createServer({ cert: serving.certPem, key: serving.keyPem, keepAliveTimeout: 10_000 }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, contentType: req.headers['content-type'], body, port: req.socket.remotePort! });
        handler(req, res, body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async function () {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(async function () {
    seen = [];
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-kube-api-'));
  });

  afterEach(async function () {
    for (const api of apis.splice(0)) api.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function api(token = 'admin-token', options: KubeApiOptions = {}): Promise<KubeApi> {
    const file = path.join(dir, 'kubeconfig');
    await writeFile(file, kubeconfigYaml(`https://127.0.0.1:${port}`, ca.certPem, 'admin', { token }));
    const client = new KubeApi(kubeconfigConnection(file), options);
    apis.push(client);
    return client;
  }

  describe('requests', function () {
    it('sends each verb to the path the API server spells, with the credentials and the body as JSON', async function () {
      handler = (_req, res, body) => res.writeHead(200, { 'content-type': 'application/json' }).end(body || '{"kind":"Secret"}');
      const core = coreV1(await api());
      await core.readNamespacedSecret({ name: 'tls', namespace: 'chaperone-system' });
      await core.listNamespacedSecret({ namespace: 'ns', fieldSelector: 'metadata.name=a b' });
      await core.createNamespacedSecret({ namespace: 'ns', body: { metadata: { name: 'x' } } });
      await core.replaceNamespacedSecret({ name: 'x', namespace: 'ns', body: { metadata: { name: 'x', resourceVersion: '7' } } });
      await core.deleteNamespacedServiceAccount({ name: 'sa', namespace: 'ns', body: { preconditions: { uid: 'u-1' }, propagationPolicy: 'Background' } });
      await core.listNamespace({ labelSelector: 'chaperone.dev/inject=enabled' });
      assert.deepEqual(
        seen.map((call) => `${call.method} ${call.url}`),
        [
          'GET /api/v1/namespaces/chaperone-system/secrets/tls',
          'GET /api/v1/namespaces/ns/secrets?fieldSelector=metadata.name%3Da+b',
          'POST /api/v1/namespaces/ns/secrets',
          'PUT /api/v1/namespaces/ns/secrets/x',
          'DELETE /api/v1/namespaces/ns/serviceaccounts/sa',
          'GET /api/v1/namespaces?labelSelector=chaperone.dev%2Finject%3Denabled',
        ],
      );
      assert.ok(seen.every((call) => call.authorization === 'Bearer admin-token'));
      assert.deepEqual(JSON.parse(seen[3]!.body), { metadata: { name: 'x', resourceVersion: '7' } });
      assert.deepEqual(JSON.parse(seen[4]!.body), { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: 'u-1' }, propagationPolicy: 'Background' });
      assert.equal(seen[2]!.contentType, 'application/json');
    });

    it('sends a patch with the Content-Type of its kind', async function () {
      const admission = admissionRegistrationV1(await api());
      await admission.patchMutatingWebhookConfiguration({ name: 'chaperone', body: [{ op: 'test', path: '/metadata/resourceVersion', value: '1' }] }, 'json');
      await admission.patchMutatingWebhookConfiguration({ name: 'chaperone', body: { metadata: { annotations: { a: 'b' } } } }, 'merge');
      assert.deepEqual(
        seen.map((call) => `${call.method} ${call.url} ${call.contentType}`),
        [
          'PATCH /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/chaperone application/json-patch+json',
          'PATCH /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/chaperone application/merge-patch+json',
        ],
      );
    });

    it('writes a Lease with MicroTime: RFC 3339 with microseconds', async function () {
      const coordination = coordinationV1(await api());
      const renewTime = microTime(new Date('2026-12-07T17:00:00.123Z'));
      assert.equal(renewTime, '2026-12-07T17:00:00.123000Z');
      await coordination.createNamespacedLease({ namespace: 'ns', body: { metadata: { name: 'l' }, spec: { holderIdentity: 'me', renewTime } } });
      assert.equal(seen[0]!.url, '/apis/coordination.k8s.io/v1/namespaces/ns/leases');
      assert.equal((JSON.parse(seen[0]!.body) as { spec: { renewTime: string } }).spec.renewTime, renewTime);
    });

    it('refuses with the HTTP status and the Status’s reason and message, never a header', async function () {
      handler = (req, res) => {
        const [code, reason] = req.url!.endsWith('/missing') ? [404, 'NotFound'] : [409, 'Conflict'];
        res.writeHead(code, { 'content-type': 'application/json' }).end(status(code, reason, `secrets "${path.basename(req.url!)}" ${reason}`));
      };
      const core = coreV1(await api('secret-token'));
      const missing = await core.readNamespacedSecret({ name: 'missing', namespace: 'ns' }).catch((err: unknown) => err);
      assert.ok(missing instanceof KubeApiError);
      assert.equal(statusCode(missing), 404);
      assert.ok(isNotFound(missing) && !isConflict(missing));
      assert.equal(missing.reason, 'NotFound');
      assert.equal(describeError(missing), 'HTTP 404: secrets "missing" NotFound');
      const conflict = await core.replaceNamespacedSecret({ name: 'x', namespace: 'ns', body: {} }).catch((err: unknown) => err);
      assert.ok(isConflict(conflict));
      assert.equal((conflict as Error).message, 'PUT /api/v1/namespaces/ns/secrets/x: HTTP 409: secrets "x" Conflict');
      assert.doesNotMatch(`${(conflict as Error).message} ${describeError(conflict)}`, /secret-token/);
    });

    it('says what a body that is no Status was, and gives get() undefined for a 404', async function () {
      handler = (req, res) => (req.url!.endsWith('/gone') ? res.writeHead(404).end('404 page not found') : res.writeHead(503).end('upstream connect error'));
      const client = await api();
      assert.equal(await client.get('/api/v1/namespaces/gone'), undefined);
      await assert.rejects(client.read('/api/v1/namespaces/x'), (err: unknown) => describeError(err) === 'HTTP 503: upstream connect error');
    });

    it('gives up on a request the API server does not answer within its timeout', async function () {
      handler = () => undefined;
      const client = await api('t', { timeoutMs: 200 });
      await assert.rejects(client.read('/api/v1/namespaces'), /^Error: GET \/api\/v1\/namespaces: no answer within 200ms$/);
    });

    it('sends a GET, PUT, PATCH or DELETE again on a new connection when a kept-alive one was closed under it; never a POST', async function () {
      const served = new WeakSet<object>();
      handler = (req, res) => {
        // Each connection answers once, then is reset: what a server closing idle connections looks like to the next request.
        if (served.has(req.socket)) return void req.socket.destroy();
        served.add(req.socket);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      };
      const core = coreV1(await api());
      await core.readNamespacedSecret({ name: 'a', namespace: 'ns' });
      await core.replaceNamespacedSecret({ name: 'a', namespace: 'ns', body: {} });
      await core.deleteNamespacedSecret({ name: 'a', namespace: 'ns' });
      assert.deepEqual(
        seen.map((call) => call.method),
        ['GET', 'PUT', 'PUT', 'DELETE', 'DELETE'],
      );
      await assert.rejects(core.createNamespacedSecret({ namespace: 'ns', body: {} }), /^Error: POST \/api\/v1\/namespaces\/ns\/secrets: socket hang up$/);
    });

    it('keeps one connection alive across requests', async function () {
      const client = await api();
      for (let i = 0; i < 5; i++) await client.read('/api/v1/namespaces/default');
      assert.equal(new Set(seen.map((call) => call.port)).size, 1);
    });
  });

  describe('watch', function () {
    const events = () => {
      const received: string[] = [];
      let opened = 0;
      const handlers: WatchEvents = {
        onEvent: (type, object) => received.push(`${type} ${(object as { metadata?: { name?: string }; code?: number }).metadata?.name ?? (object as { code?: number }).code}`),
        onOpen: () => opened++,
      };
      return { received, handlers, opened: () => opened };
    };

    it('asks for a watch with its query, and delivers newline-delimited events split anywhere, until the API server ends it', async function () {
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const stream = `${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } })}\n${JSON.stringify({ type: 'MODIFIED', object: { metadata: { name: 'b' } } })}\n{"type":"ERROR","object":{"kind":"Status","code":410}}\n`;
        res.write(stream.slice(0, 30));
        setTimeout(() => res.end(stream.slice(30)), 50);
      };
      const { received, handlers, opened } = events();
      await (await api()).watch('/api/v1/namespaces', { resourceVersion: '12', timeoutSeconds: 25, labelSelector: undefined }, handlers, new AbortController().signal);
      assert.deepEqual(received, ['ADDED a', 'MODIFIED b', 'ERROR 410']);
      assert.equal(opened(), 1);
      assert.equal(seen[0]!.url, '/api/v1/namespaces?resourceVersion=12&timeoutSeconds=25&watch=true');
    });

    it('ends when aborted, closing its connection', async function () {
      let closed = false;
      handler = (req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' }).write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } })}\n`);
        req.socket.on('close', () => (closed = true));
      };
      const { received, handlers } = events();
      const abort = new AbortController();
      const watching = (await api()).watch('/api/v1/secrets', {}, handlers, abort.signal);
      await waitFor('the first event', () => received.length === 1);
      abort.abort();
      await watching;
      await waitFor('the connection to close', () => closed);
    });

    it('fails with the API server’s refusal, its status kept (410: relist)', async function () {
      handler = (_req, res) => res.writeHead(410, { 'content-type': 'application/json' }).end(status(410, 'Expired', 'too old resource version: 1 (5)'));
      const { handlers, opened } = events();
      const err = await (await api()).watch('/api/v1/secrets', { resourceVersion: '1' }, handlers, new AbortController().signal).catch((e: unknown) => e);
      assert.equal(statusCode(err), 410);
      assert.equal(describeError(err), 'HTTP 410: too old resource version: 1 (5)');
      assert.equal(opened(), 0);
    });

    it('fails when the API server does not answer in time; ends, as the server would, once an open watch falls silent', async function () {
      handler = () => undefined;
      const { handlers, opened } = events();
      await assert.rejects((await api('t', { watchInactivityMs: 150 })).watch('/api/v1/secrets', {}, handlers, new AbortController().signal), /no answer within 150ms/);
      assert.equal(opened(), 0);
      handler = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } })}\n`);
      const quiet = events();
      const started = Date.now();
      await (await api('t', { watchInactivityMs: 150 })).watch('/api/v1/secrets', {}, quiet.handlers, new AbortController().signal);
      assert.deepEqual(quiet.received, ['ADDED a']);
      assert.ok(Date.now() - started >= 150);
    });

    it('fails when the connection breaks in the middle of a watch', async function () {
      handler = (req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' }).write(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } })}\n`);
        setTimeout(() => req.socket.destroy(), 50);
      };
      const { received, handlers } = events();
      await assert.rejects((await api()).watch('/api/v1/secrets', {}, handlers, new AbortController().signal));
      assert.deepEqual(received, ['ADDED a']);
    });
  });

  describe('listWatch (injector/provision/kube.ts) over it', function () {
    it('lists, watches from the list’s resourceVersion, lists again on 410 Gone, and leaves nothing running after stop()', async function () {
      let lists = 0;
      let lastWatchClosed = false;
      handler = (req, res) => {
        const url = new URL(req.url!, 'https://x');
        if (url.searchParams.get('watch') !== 'true') {
          lists++;
          return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ items: [{ metadata: { name: `listed-${lists}` } }], metadata: { resourceVersion: `${lists}0` } }));
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        if (lists === 1) return void res.end(`${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'new', resourceVersion: '11' } } })}\n{"type":"ERROR","object":{"kind":"Status","code":410}}\n`);
        res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '21' } } })}\n`);
        req.socket.once('close', () => (lastWatchClosed = true));
      };
      const client = await api();
      const seenItems: string[] = [];
      let watching = 0;
      const watch = listWatch<{ metadata?: { name?: string; resourceVersion?: string } }>({
        api: client,
        path: '/api/v1/namespaces',
        labelSelector: 'chaperone.dev/inject=enabled',
        list: () => client.list('/api/v1/namespaces', { labelSelector: 'chaperone.dev/inject=enabled' }),
        onList: (items) => seenItems.push(...items.map((item) => `list ${item.metadata?.name}`)),
        onEvent: (type, object) => seenItems.push(`${type} ${object.metadata?.name}`),
        onWatching: () => watching++,
        log: silentLog,
        what: 'the namespaces',
      });
      await waitFor('the second watch', () => watching === 2);
      await watch.stop();
      assert.deepEqual(seenItems, ['list listed-1', 'ADDED new', 'list listed-2']);
      const watches = seen.filter((call) => call.url.includes('watch=true')).map((call) => new URL(call.url, 'https://x').searchParams);
      assert.deepEqual(
        watches.map((query) => [query.get('resourceVersion'), query.get('allowWatchBookmarks'), query.get('timeoutSeconds'), query.get('labelSelector')]),
        [
          ['10', 'true', '25', 'chaperone.dev/inject=enabled'],
          ['20', 'true', '25', 'chaperone.dev/inject=enabled'],
        ],
      );
      await waitFor('the open watch’s connection to close', () => lastWatchClosed);
    });
  });

  describe('in cluster', function () {
    it('reaches https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with the service account’s CA, and reads its token again once rotated', async function () {
      await writeFile(path.join(dir, 'token'), 'first-token\n');
      await writeFile(path.join(dir, 'ca.crt'), ca.certPem);
      const connection = inClusterConnection({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) }, dir);
      const client = new KubeApi(connection);
      apis.push(client);
      assert.equal(connection.server, `https://127.0.0.1:${port}`);
      assert.equal(connection.caFile, path.join(dir, 'ca.crt'));
      await client.read('/api/v1/namespaces/default');
      await writeFile(path.join(dir, 'token.new'), 'rotated-token\n');
      await rename(path.join(dir, 'token.new'), path.join(dir, 'token'));
      await waitFor('the rotated token', async () => {
        await client.read('/api/v1/namespaces/default');
        return seen.at(-1)!.authorization === 'Bearer rotated-token';
      });
      assert.equal(seen[0]!.authorization, 'Bearer first-token');
    });

    it('brackets an IPv6 service address, and refuses to start without the service variables or the token', async function () {
      await writeFile(path.join(dir, 'token'), 't');
      const v6 = inClusterConnection({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, dir);
      assert.equal(v6.server, 'https://[fd00::1]:443');
      v6.close();
      assert.throws(() => inClusterConnection({}, dir), /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined/);
      assert.throws(() => inClusterConnection({ KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '1' }, path.join(dir, 'none')), /cannot read the service account token/);
    });
  });
});
