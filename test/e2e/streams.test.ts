// Long-lived traffic through the sidecar against the real API server: watches, exec and
// port-forward (up to where the missing kubelet ends them), token rotation, readiness, SIGTERM.
import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import {
  auditEventsFor,
  createNamespace,
  grantClusterWide,
  grantInNamespace,
  kubectl,
  mintServiceAccountToken,
  userSubject,
  waitForAuditEvents,
  waitForCanI,
} from '../../local-cluster/kube.js';
import { rawRequest, type TestSidecar } from '../../local-cluster/sidecar.js';
import type { CertificateAndKey } from '../../lib/pki.js';
import { waitFor } from '../../local-cluster/wait.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

interface WatchEvent {
  type: string;
  object: { metadata: { name: string } };
}

interface OpenWatch {
  status: number;
  events: WatchEvent[];
  /** Resolves when the stream ends: 'end' for a clean end of stream, 'error' for a reset. */
  ended: Promise<'end' | 'error'>;
  response: IncomingMessage;
  next(type: string, name: string, timeoutMs?: number): Promise<WatchEvent>;
  close(): void;
}

function openWatch(sidecar: TestSidecar, cert: CertificateAndKey, path: string): Promise<OpenWatch> {
  const options: RequestOptions = { host: '127.0.0.1', port: sidecar.port, path, ca: sidecar.servingCa.certPem, cert: cert.certPem, key: cert.keyPem, agent: false };
  return new Promise((resolve, reject) => {
    const req = request(options, (response) => {
      const events: WatchEvent[] = [];
      const waiters: (() => void)[] = [];
      let buffered = '';
      response.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line) events.push(JSON.parse(line) as WatchEvent);
        }
        waiters.splice(0).forEach((wake) => wake());
      });
      const ended = new Promise<'end' | 'error'>((done) => {
        response.once('end', () => done('end'));
        response.once('error', () => done('error'));
        response.once('aborted', () => done('error'));
      });
      const next = async (type: string, name: string, timeoutMs = 5000) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const found = events.find((e) => e.type === type && e.object.metadata.name === name);
          if (found) return found;
          if (Date.now() > deadline) throw new Error(`no ${type} event within ${timeoutMs}ms; saw ${events.map((e) => e.type).join(', ')}`);
          await new Promise<void>((wake) => {
            waiters.push(wake);
            setTimeout(wake, 100);
          });
        }
      };
      resolve({ status: response.statusCode ?? 0, events, ended, response, next, close: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}

async function readyz(sidecar: TestSidecar): Promise<number> {
  return (await fetch(`${sidecar.opsUrl}/readyz`)).status;
}

/** One sample from /metrics, 0 when absent. */
async function metric(sidecar: TestSidecar, series: string): Promise<number> {
  const text = await (await fetch(`${sidecar.opsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe('streams through the sidecar (real API server)', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar();
  let ns: string;
  let alice: CertificateAndKey;

  before(async function () {
    ns = await createNamespace(clients, 'streams');
    await grantInNamespace(cp, clients, ns, 'edit', 'alice');
    alice = sidecar.clientCert('alice', ['dev']);
  });

  describe('watches', function () {
    it('streams ADDED, MODIFIED and DELETED as they happen', async function () {
      const watch = await openWatch(sidecar, alice, `/api/v1/namespaces/${ns}/configmaps?watch=true`);
      assert.equal(watch.status, 200);
      await clients.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'watched' }, data: { a: '1' } } });
      await watch.next('ADDED', 'watched');
      await clients.core.patchNamespacedConfigMap({ name: 'watched', namespace: ns, body: [{ op: 'replace', path: '/data/a', value: '2' }] });
      await watch.next('MODIFIED', 'watched');
      await clients.core.deleteNamespacedConfigMap({ name: 'watched', namespace: ns });
      await watch.next('DELETED', 'watched');
      watch.close();
    });

    it('refuses a watch alice may not open with 403', async function () {
      const other = await createNamespace(clients, 'no-watch');
      const watch = await openWatch(sidecar, alice, `/api/v1/namespaces/${other}/configmaps?watch=true`);
      assert.equal(watch.status, 403);
      watch.close();
    });
  });

  describe('exec and port-forward', function () {
    let pod: string;

    before(async function () {
      pod = 'dashboard';
      await clients.core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'default' } } }).catch(() => undefined);
      await clients.core.createNamespacedPod({ namespace: ns, body: { metadata: { name: pod }, spec: { containers: [{ name: 'app', image: 'example.invalid/app' }] } } });
      // No kubelet will start it; kubectl port-forward refuses a pod that is not Running.
      const patched = await kubectl(cp.adminKubeconfig, ['patch', 'pod', pod, '-n', ns, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
      assert.equal(patched.code, 0, patched.stderr);
    });

    it('kubectl exec reaches the API server as alice, authorized as the API server authorizes it', async function () {
      const kubeconfig = await sidecar.kubeconfigFor('alice', ['dev']);
      const result = await kubectl(kubeconfig, ['exec', '-n', ns, pod, '--', 'true'], { timeoutMs: 30_000 });
      // No kubelet runs the pod: the API server itself answers that the pod has no node.
      assert.notEqual(result.code, 0);
      assert.doesNotMatch(result.stderr, /forbidden/i, result.stderr);
      const events = await waitForAuditEvents(cp, (e) => e.objectRef?.subresource === 'exec' && e.objectRef.namespace === ns && e.impersonatedUser?.username === 'alice');
      assert.ok(events.length > 0, 'the API server saw alice exec');
      assert.ok(events.every((e) => e.user.username === sidecar.serviceAccountUsername));
    });

    it('a SPDY exec is the impersonated create on pods/exec in the API server\'s log', async function () {
      const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/pods/${pod}/exec?command=true&stdout=true`, {
        method: 'POST',
        ca: sidecar.servingCa.certPem,
        cert: alice,
        headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': 'v4.channel.k8s.io' },
      });
      assert.notEqual(response.status, 403, response.body);
      // a long-running request: the API server logs ResponseStarted and ResponseComplete
      const events = await auditEventsFor(cp, response.headers['audit-id'] as string);
      assert.ok(events.some((e) => e.stage === 'ResponseComplete'));
      for (const event of events) {
        assert.equal(event.verb, 'create');
        assert.equal(event.objectRef?.subresource, 'exec');
        assert.equal(event.impersonatedUser?.username, 'alice');
      }
    });

    it('kubectl port-forward reaches the API server as alice', async function () {
      const kubeconfig = await sidecar.kubeconfigFor('alice', ['dev']);
      const result = await kubectl(kubeconfig, ['port-forward', '-n', ns, `pod/${pod}`, '0:80'], { timeoutMs: 20_000 });
      assert.notEqual(result.code, 0, 'the pod does not run, so port-forward cannot stay up');
      const events = await waitForAuditEvents(cp, (e) => e.objectRef?.subresource === 'portforward' && e.objectRef.namespace === ns);
      assert.ok(events.length > 0, result.stderr);
      assert.ok(events.every((e) => e.impersonatedUser?.username === 'alice'));
    });

    it('refuses exec to someone without the right, from the sidecar itself', async function () {
      const bob = sidecar.clientCert('bob', []);
      await grantInNamespace(cp, clients, ns, 'view', 'bob');
      const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/pods/${pod}/exec?command=true&stdout=true`, {
        method: 'POST',
        ca: sidecar.servingCa.certPem,
        cert: bob,
        headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1' },
      });
      assert.equal(response.status, 403);
      assert.match((JSON.parse(response.body) as { message: string }).message, /User "bob" cannot create resource "pods\/exec"/);
      assert.deepEqual(await auditEventsFor(cp, response.headers['audit-id'] as string, 500), []);
    });

    it('requires create as well as get for a WebSocket exec, as the API server does', async function () {
      await grantClusterWide(clients, 'exec-get-only', [{ apiGroups: [''], resources: ['pods/exec'], verbs: ['get'] }], [userSubject('carol')]);
      await waitForCanI(cp, 'carol', ['get', 'pods', '--subresource=exec', '-n', ns]);
      const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/pods/${pod}/exec?command=true&stdout=true`, {
        ca: sidecar.servingCa.certPem,
        cert: sidecar.clientCert('carol', []),
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol': 'v5.channel.k8s.io' },
      });
      assert.equal(response.status, 403);
      assert.match((JSON.parse(response.body) as { message: string }).message, /cannot create resource "pods\/exec"/);
    });
  });

  describe('the scoped token', function () {
    it('picks up a rotated token within seconds, without failing a request', async function () {
      const jti = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
      const fresh = await mintServiceAccountToken(clients, sidecar.namespace, sidecar.serviceAccount);
      const results: { status: number; auditID: string }[] = [];
      let rotatedAt = 0;
      const started = Date.now();
      while (Date.now() - started < 4000) {
        if (!rotatedAt && Date.now() - started > 1000) {
          await writeFile(`${sidecar.tokenFile}.new`, fresh);
          await rename(`${sidecar.tokenFile}.new`, sidecar.tokenFile);
          rotatedAt = Date.now();
        }
        const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/configmaps`, { ca: sidecar.servingCa.certPem, cert: alice });
        results.push({ status: response.status, auditID: response.headers['audit-id'] as string });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(results.every((r) => r.status === 200), `every request succeeded: ${results.map((r) => r.status).join(',')}`);
      const last = await auditEventsFor(cp, results.at(-1)!.auditID);
      assert.deepEqual(last[0]!.user.extra?.['authentication.kubernetes.io/credential-id'], [`JTI=${jti(fresh)}`]);
    });

    it('turns /readyz false and refuses requests with 503 while the token file is gone, and recovers', async function () {
      assert.equal(await readyz(sidecar), 200);
      const reloadsBefore = await metric(sidecar, 'chaperone_token_reloads_total{present="false"}');
      const token = await mintServiceAccountToken(clients, sidecar.namespace, sidecar.serviceAccount);
      await rm(sidecar.tokenFile);
      try {
        await waitFor('/readyz turns false', async () => (await readyz(sidecar)) === 503);
        const body = await (await fetch(`${sidecar.opsUrl}/readyz`)).text();
        assert.match(body, /\[-\]service-account-token failed/);
        const refused = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/configmaps`, { ca: sidecar.servingCa.certPem, cert: alice });
        assert.equal(refused.status, 503);
        assert.deepEqual(await auditEventsFor(cp, refused.headers['audit-id'] as string, 500), [], 'nothing went upstream without the token');
        assert.equal(await metric(sidecar, 'chaperone_token_reloads_total{present="false"}'), reloadsBefore + 1);
      } finally {
        await writeFile(sidecar.tokenFile, token);
      }
      await waitFor('/readyz turns true again', async () => (await readyz(sidecar)) === 200);
    });
  });

  describe('metrics', function () {
    it('counts requests, authentications and cache lookups', async function () {
      for (let i = 0; i < 2; i++) assert.equal((await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/configmaps`, { ca: sidecar.servingCa.certPem, cert: alice })).status, 200);
      const text = await (await fetch(`${sidecar.opsUrl}/metrics`)).text();
      assert.match(text, /chaperone_requests_total\{code="200",verb="list"\} \d+/);
      assert.match(text, /chaperone_authentications_total\{method="x509",outcome="success"\} \d+/);
      assert.match(text, /chaperone_authorization_cache_total\{result="hit"\} \d+/);
      assert.match(text, /chaperone_upstream_request_duration_seconds_bucket/);
      assert.match(text, /chaperone_audit_events_written\{sink="file"\} [1-9]\d*/);
      assert.match(text, /chaperone_audit_events_dropped\{sink="file"\} 0/);
    });
  });
});

describe('sidecar shutdown on SIGTERM (a real process)', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar({ asProcess: true, flags: ['--shutdown-timeout=5s'] });
  let ns: string;

  before(async function () {
    ns = await createNamespace(clients, 'shutdown');
    await grantInNamespace(cp, clients, ns, 'view', 'alice');
  });

  it('ends open watches cleanly and exits in time', async function () {
    const alice = sidecar.clientCert('alice', []);
    const watches = await Promise.all([1, 2, 3].map(() => openWatch(sidecar, alice, `/api/v1/namespaces/${ns}/configmaps?watch=true`)));
    assert.deepEqual(watches.map((w) => w.status), [200, 200, 200]);
    const exited = new Promise<number | null>((resolve) => sidecar.process!.once('exit', (code) => resolve(code)));
    const signalledAt = Date.now();
    sidecar.process!.kill('SIGTERM');
    assert.deepEqual(await Promise.all(watches.map((w) => w.ended)), ['end', 'end', 'end'], 'each client sees the stream end, not a reset');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - signalledAt < 5000, `exited after ${Date.now() - signalledAt}ms`);
  });
});
