// Real pods: a kubelet, containerd and runc on the local cluster (local-cluster/node.ts), so that
// what only a node does is tested for real. The injector runs as the shipped Deployment from its
// image, built without Docker from the bundles in dist/ (local-cluster/oci.ts); a labelled
// namespace; a dashboard pod whose app is a real in-cluster client (client-go's InClusterConfig,
// test/fixtures/in-cluster-client) is injected and runs. The person's requests and exec go from that
// app through the sidecar on the pod's own 127.0.0.1:6443 to the API server and the kubelet; the
// API server's audit log says whom they ran as. Last, stopping the node leaves nothing on the host.
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { PLACEHOLDER_TOKEN } from '../../injector/proxy.js';
import { SECRETS } from '../../injector/provision/names.js';
import { decodeData } from '../../injector/provision/kube.js';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { adminClients, bindClusterRoleInNamespace, kubectl, readAuditEvents, userSubject, type AdminClients, type AuditEvent } from '../../local-cluster/kube.js';
import { APP_UID, CLIENT_IMAGE, CLIENT_PORT, importInClusterClient, inClusterClientContainer, INJECTOR_NAMESPACE, installOnNode } from '../../local-cluster/installed.js';
import { startNode, type LocalNode } from '../../local-cluster/node.js';
import { waitFor } from '../../local-cluster/wait.js';
import { registerSidecarAuditLog, serviceAccountUsername } from '../../local-cluster/audit-join.js';
import { assertNodeOnHost, assertNothingLeft, bridgeVeths, hostSnapshot, type HostSnapshot } from '../support/host-snapshot.js';

const TOKEN_PATH = '/var/run/secrets/chaperone/upstream/token';
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** The shortest a projected token may live; the kubelet renews it after 80% of that (8 minutes). */
const TOKEN_SECONDS = 600;

function jwtClaims(token: string): { jti: string; iat: number; exp: number; sub: string } {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string; iat: number; exp: number; sub: string };
}

/** What the in-cluster client answers (test/fixtures/in-cluster-client/main.go). */
interface Answer {
  host: string;
  status?: number;
  body?: string;
  stdout?: string;
  stderr?: string;
  error?: string;
}

/** An RFC 3339 timestamp with up to nanoseconds (the container runtime's log stamps), in nanoseconds. */
function nanoseconds(stamp: string): bigint {
  const match = /^(.*?)(?:\.(\d+))?Z$/.exec(stamp);
  if (!match) throw new Error(`not a UTC timestamp: ${stamp}`);
  return BigInt(Date.parse(`${match[1]}Z`)) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}

/** A process's mounts, as its mount namespace sees them. */
async function mounts(pid: number): Promise<{ device: string; mountPoint: string }[]> {
  return (await readFile(`/proc/${pid}/mountinfo`, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' '))
    .map((fields) => ({ device: fields[2]!, mountPoint: fields[4]! }));
}

describe('real pods: a kubelet, containerd and runc in the local cluster', function () {
  this.timeout(180_000);
  let hostBefore: HostSnapshot;
  let node: LocalNode;
  let clients: AdminClients;
  let work: string;
  let namespace: string;
  let dashboard: V1Pod;
  let alice: CertificateAndKey;
  let bob: CertificateAndKey;
  let sidecarLog = '';

  /** Asks the dashboard's in-cluster client, at its pod IP, to act with this credential (none: the in-cluster token alone). */
  async function ask(
    person: CertificateAndKey | undefined,
    request: { path?: string; exec?: { namespace: string; pod: string; container: string; command: string[] }; portForward?: { namespace: string; pod: string; port: number; path: string } },
  ): Promise<Answer> {
    const response = await fetch(`http://${dashboard.status!.podIP}:${CLIENT_PORT}/do`, {
      method: 'POST',
      body: JSON.stringify({ ...(person ? { certPem: person.certPem, keyPem: person.keyPem } : {}), ...request }),
      signal: AbortSignal.timeout(60_000),
    });
    assert.equal(response.status, 200, await response.clone().text());
    return (await response.json()) as Answer;
  }

  async function auditEvents(predicate: (event: AuditEvent) => boolean): Promise<AuditEvent[]> {
    return waitFor('the audit events', async () => {
      const found = (await readAuditEvents(node.controlPlane)).filter(predicate);
      return found.length > 0 ? found : undefined;
    }, 10_000);
  }

  async function readyPod(name: string, ns: string): Promise<V1Pod> {
    return waitFor(`pod ${ns}/${name} Ready`, async () => {
      const pod = await clients.core.readNamespacedPod({ name, namespace: ns });
      return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? pod : undefined;
    }, 120_000, 500);
  }

  before(async function () {
    this.timeout(20 * 60_000);
    hostBefore = await hostSnapshot();
    node = await startNode();
    clients = adminClients(node.controlPlane);
    work = await mkdtemp(path.join(tmpdir(), 'chaperone-real-pods-'));
    const log = (line: string) => process.stderr.write(`[real-pods] ${line}\n`);
    // The shipped base, and the shortest token the API server issues, so that the kubelet renews it during the suite.
    await installOnNode(node, work, { injectorArgs: [`--token-expiration=${TOKEN_SECONDS}s`], log });
    await importInClusterClient(node, work, log);

    namespace = `dashboards-${Date.now().toString(36)}`;
    // Pod Security baseline, which every labelled namespace must enforce (docs/security-model.md).
    // Access dashboard, chosen: alice's exec goes through the sidecar, which the default (read-only) refuses.
    await clients.core.createNamespace({
      body: { metadata: { name: namespace, labels: { 'chaperone.dev/inject': 'enabled', 'pod-security.kubernetes.io/enforce': 'baseline' }, annotations: { 'chaperone.dev/access': 'dashboard' } } },
    });
    await waitFor('the namespace provisioned', async () => {
      await clients.core.readNamespacedServiceAccount({ name: 'chaperone-impersonator', namespace });
      await clients.core.readNamespacedSecret({ name: 'chaperone-serving', namespace });
      await clients.core.readNamespacedServiceAccount({ name: 'default', namespace });
      return true;
    }, 60_000, 500);
    const identity = decodeData((await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: INJECTOR_NAMESPACE })).data);
    const identityCa = { certPem: identity['ca.crt']!, keyPem: identity['ca.key']! };
    alice = issueCertificate(identityCa, { commonName: 'alice', organizations: ['dev'], usage: 'client' });
    bob = issueCertificate(identityCa, { commonName: 'bob', organizations: ['dev'], usage: 'client' });
    // edit: read the namespace and exec into its pods.
    await bindClusterRoleInNamespace(clients, namespace, 'edit', [userSubject('alice')]);

    const app = inClusterClientContainer('dashboard');
    await waitFor('the dashboard pod admitted', () =>
      clients.core.createNamespacedPod({ namespace, body: { metadata: { name: 'dashboard', labels: { app: 'dashboard' } }, spec: { nodeName: node.name, containers: [app] } } }),
    30_000, 1000);
    dashboard = await readyPod('dashboard', namespace);
    registerSidecarAuditLog({ controlPlane: node.controlPlane, serviceAccount: serviceAccountUsername(namespace, 'chaperone-impersonator'), read: () => sidecarLog, what: 'real pod sidecar' });
  });

  after(async function () {
    this.timeout(5 * 60_000);
    await node?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('runs the injector from its image as the shipped Deployment: every replica Ready, as the non-root user of the image', async function () {
    const pods = await clients.core.listNamespacedPod({ namespace: INJECTOR_NAMESPACE, labelSelector: 'app.kubernetes.io/name=chaperone-injector' });
    assert.equal(pods.items.length, 2);
    for (const pod of pods.items) {
      const status = pod.status!.containerStatuses![0]!;
      assert.equal(status.ready, true);
      const pid = await node.containerPid(status.containerID!);
      assert.match(await readFile(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+65532\s/m);
    }
  });

  it('injects the dashboard pod; the sidecar, a native sidecar, serves before the app starts', async function () {
    const sidecar = dashboard.spec!.initContainers!.find((c) => c.name === 'chaperone')!;
    assert.equal(sidecar.restartPolicy, 'Always');
    const sidecarStatus = dashboard.status!.initContainerStatuses!.find((s) => s.name === 'chaperone')!;
    const appStatus = dashboard.status!.containerStatuses!.find((s) => s.name === 'dashboard')!;
    assert.deepEqual([sidecarStatus.started, sidecarStatus.ready, appStatus.ready, appStatus.restartCount], [true, true, true, 0]);
    // The kubelet starts the app only once the sidecar's startup probe passed: the container
    // runtime's timestamps (nanoseconds) put the sidecar's "serving" line before the app's first.
    const stamped = async (container: string) => {
      const logs = await kubectl(node.controlPlane.adminKubeconfig, ['logs', '--timestamps', '-n', namespace, 'dashboard', '-c', container]);
      assert.equal(logs.code, 0, logs.stderr);
      return logs.stdout.split('\n').filter(Boolean).map((line) => ({ at: nanoseconds(line.slice(0, line.indexOf(' '))), text: line.slice(line.indexOf(' ') + 1) }));
    };
    const serving = (await stamped('chaperone')).find((line) => line.text.includes('"msg":"chaperone sidecar serving"'));
    assert.ok(serving, 'the sidecar says it is serving');
    const [appFirst] = await stamped('dashboard');
    assert.match(appFirst!.text, /in-cluster client listening/);
    assert.ok(serving.at < appFirst!.at, `sidecar serving at ${serving.at}ns, app started at ${appFirst!.at}ns`);
  });

  it("reaches the API server through the sidecar on the pod's 127.0.0.1:6443 as the person whose credential it forwards; the audit log names her", async function () {
    const answer = await ask(alice, { path: `/api/v1/namespaces/${namespace}/pods` });
    assert.equal(answer.host, 'https://127.0.0.1:6443');
    assert.equal(answer.status, 200, answer.body ?? answer.error);
    assert.ok((JSON.parse(answer.body!) as { items: V1Pod[] }).items.some((pod) => pod.metadata!.name === 'dashboard'));
    const [event] = await auditEvents((e) => e.impersonatedUser?.username === 'alice' && e.verb === 'list' && e.objectRef?.resource === 'pods' && e.objectRef.namespace === namespace);
    assert.equal(event!.user.username, serviceAccountUsername(namespace, 'chaperone-impersonator'));
    assert.equal(event!.responseStatus?.code, 200);
    const refused = await ask(bob, { path: `/api/v1/namespaces/${namespace}/pods` });
    assert.equal(refused.status, 403, refused.body);
  });

  it('gets 401 with the placeholder token alone', async function () {
    const answer = await ask(undefined, { path: `/api/v1/namespaces/${namespace}/pods` });
    assert.equal(answer.status, 401, answer.body);
  });

  it('the scoped token the kubelet wrote is readable by the sidecar’s non-root user and mounted in no other container', async function () {
    const volume = path.join(node.dir, 'kubelet/pods', dashboard.metadata!.uid!, 'volumes/kubernetes.io~projected/chaperone-upstream');
    const token = statSync(path.join(volume, 'token'));
    const mode = token.mode & 0o777;
    const sidecarCanRead = (token.uid === 65532 && (mode & 0o400) !== 0) || (mode & 0o004) !== 0;
    assert.ok(sidecarCanRead, `token owned by ${token.uid} with mode ${mode.toString(8)}`);
    // The kubelet's tmpfs for the volume, by its device: in the sidecar's mounts, in no other container's.
    const device = (await mounts(process.pid)).find((mount) => mount.mountPoint === volume)?.device;
    assert.ok(device, `the kubelet mounted no tmpfs at ${volume}`);
    const sidecarPid = await node.containerPid(dashboard.status!.initContainerStatuses!.find((s) => s.name === 'chaperone')!.containerID!);
    assert.deepEqual((await mounts(sidecarPid)).filter((mount) => mount.device === device).map((mount) => mount.mountPoint), [path.dirname(TOKEN_PATH)]);
    for (const status of dashboard.status!.containerStatuses!) {
      const pid = await node.containerPid(status.containerID!);
      assert.deepEqual((await mounts(pid)).filter((mount) => mount.device === device), [], `container ${status.name} mounts the scoped token's volume`);
    }
    // In the app's own filesystem, as the app's user: no scoped token, the placeholder in its place.
    const cat = await ask(alice, { exec: { namespace, pod: 'dashboard', container: 'dashboard', command: ['/client', 'cat', TOKEN_PATH] } });
    assert.match(cat.stderr ?? '', /no such file or directory/);
    const placeholder = await ask(alice, { exec: { namespace, pod: 'dashboard', container: 'dashboard', command: ['/client', 'cat', SERVICE_ACCOUNT_TOKEN] } });
    assert.equal(placeholder.stdout, PLACEHOLDER_TOKEN);
  });

  it('exec from the app through the sidecar reaches the app container (API server, kubelet, runc) as the person; the audit log names her', async function () {
    const answer = await ask(alice, { exec: { namespace, pod: 'dashboard', container: 'dashboard', command: ['/client', 'id'] } });
    assert.equal(answer.error, undefined, answer.error);
    assert.equal(answer.stdout, `uid=${APP_UID} gid=${APP_UID}\n`);
    const [event] = await auditEvents((e) => e.impersonatedUser?.username === 'alice' && e.objectRef?.subresource === 'exec' && e.objectRef.name === 'dashboard');
    assert.equal(event!.user.username, serviceAccountUsername(namespace, 'chaperone-impersonator'));
    assert.equal(event!.responseStatus?.code, 101);
    const refused = await ask(bob, { exec: { namespace, pod: 'dashboard', container: 'dashboard', command: ['/client', 'id'] } });
    assert.match(refused.error ?? '', /forbidden|Forbidden/);
    assert.equal(refused.stdout ?? '', '');
  });

  it('port-forward from the app through the sidecar reaches a port of a real container as the person; the audit log names her', async function () {
    const answer = await ask(alice, { portForward: { namespace, pod: 'dashboard', port: CLIENT_PORT, path: '/healthz' } });
    assert.equal(answer.error, undefined, answer.error);
    assert.deepEqual([answer.status, answer.body], [200, 'ok\n']);
    const [event] = await auditEvents((e) => e.impersonatedUser?.username === 'alice' && e.objectRef?.subresource === 'portforward' && e.objectRef.name === 'dashboard');
    assert.equal(event!.user.username, serviceAccountUsername(namespace, 'chaperone-impersonator'));
    const refused = await ask(bob, { portForward: { namespace, pod: 'dashboard', port: CLIENT_PORT, path: '/healthz' } });
    assert.match(refused.error ?? '', /forbidden|Forbidden|403/);
  });

  it("a debug container in the dashboard's process namespace, as the dashboard's user, reaches the dashboard's files and not the scoped token", async function () {
    const pod = await clients.core.readNamespacedPod({ name: 'dashboard', namespace });
    const debug = (name: string, file: string) => ({
      name,
      image: CLIENT_IMAGE,
      imagePullPolicy: 'IfNotPresent',
      command: ['/client', 'scan', file],
      targetContainerName: 'dashboard',
      securityContext: { runAsNonRoot: true, runAsUser: APP_UID, runAsGroup: APP_UID, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
    });
    pod.spec!.ephemeralContainers = [debug('look-for-token', TOKEN_PATH), debug('look-for-placeholder', SERVICE_ACCOUNT_TOKEN)];
    await clients.core.replaceNamespacedPodEphemeralcontainers({ name: 'dashboard', namespace, body: pod });
    const output = async (container: string) => {
      await waitFor(`debug container ${container} finished`, async () => {
        const current = await clients.core.readNamespacedPod({ name: 'dashboard', namespace });
        return current.status?.ephemeralContainerStatuses?.find((s) => s.name === container)?.state?.terminated ? true : undefined;
      }, 60_000, 500);
      const logs = await kubectl(node.controlPlane.adminKubeconfig, ['logs', '-n', namespace, 'dashboard', '-c', container]);
      assert.equal(logs.code, 0, logs.stderr);
      return logs.stdout.split('\n').filter(Boolean);
    };
    // The control: through the dashboard's root (its pid 1), its own files are in reach.
    const placeholder = await output('look-for-placeholder');
    assert.ok(placeholder.includes('1 readable'), placeholder.join('\n'));
    // Through no process it can see is the scoped token.
    const token = await output('look-for-token');
    assert.ok(token.length >= 2, token.join('\n'));
    assert.deepEqual(token.filter((line) => line.endsWith(' readable')), [], token.join('\n'));
  });

  it("what Pod Security baseline keeps out of a labelled namespace is real: through a hostPath volume, a pod elsewhere on the node reads the scoped token from the kubelet's disk", async function () {
    const podsDir = path.join(node.dir, 'kubelet/pods');
    const tokenOnDisk = readFileSync(path.join(podsDir, dashboard.metadata!.uid!, 'volumes/kubernetes.io~projected/chaperone-upstream/token'), 'utf8');
    const reader = (name: string): V1Pod => ({
      metadata: { name, labels: { 'chaperone.dev/inject': 'disabled' } },
      spec: {
        nodeName: node.name,
        restartPolicy: 'Never',
        containers: [{ name: 'reader', image: CLIENT_IMAGE, imagePullPolicy: 'IfNotPresent', command: ['/client', 'cat', `/kubelet-pods/${dashboard.metadata!.uid!}/volumes/kubernetes.io~projected/chaperone-upstream/token`], volumeMounts: [{ name: 'pods', mountPath: '/kubelet-pods', readOnly: true }] }],
        volumes: [{ name: 'pods', hostPath: { path: podsDir, type: 'Directory' } }],
      },
    });
    // In the labelled namespace, opted out of injection: refused before it exists.
    await assert.rejects(clients.core.createNamespacedPod({ namespace, body: reader('host-path-reader') }), (err: Error) => {
      assert.match(err.message, /violates PodSecurity \W+baseline:latest\W+: hostPath volumes/);
      return true;
    });
    // In kube-system, where the policies do not look (docs/security-model.md): it runs, and reads it.
    await clients.core.createNamespacedPod({ namespace: 'kube-system', body: reader('host-path-reader') });
    await waitFor('the hostPath reader finished', async () => {
      const pod = await clients.core.readNamespacedPod({ name: 'host-path-reader', namespace: 'kube-system' });
      return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed' ? pod : undefined;
    }, 60_000, 500);
    const logs = await kubectl(node.controlPlane.adminKubeconfig, ['logs', '-n', 'kube-system', 'host-path-reader']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(logs.stdout, tokenOnDisk);
    assert.equal(jwtClaims(logs.stdout).sub, serviceAccountUsername(namespace, 'chaperone-impersonator'));
  });

  it("picks up the token the kubelet renews: the sidecar's requests after the renewal carry the new token", async function () {
    this.timeout((TOKEN_SECONDS + 300) * 1000);
    const file = path.join(node.dir, 'kubelet/pods', dashboard.metadata!.uid!, 'volumes/kubernetes.io~projected/chaperone-upstream/token');
    const first = jwtClaims(readFileSync(file, 'utf8'));
    assert.equal(first.exp - first.iat, TOKEN_SECONDS);
    const credential = (jti: string) => (event: AuditEvent) => event.user.extra?.['authentication.kubernetes.io/credential-id']?.includes(`JTI=${jti}`) ?? false;
    const before = await ask(alice, { path: `/api/v1/namespaces/${namespace}/configmaps` });
    assert.equal(before.status, 200, before.body);
    await auditEvents((e) => e.impersonatedUser?.username === 'alice' && e.objectRef?.resource === 'configmaps' && credential(first.jti)(e));
    // The kubelet renews it 80% into its life (and a jitter), then swaps the volume's ..data link.
    const renewed = await waitFor('the kubelet to renew the token', () => {
      const claims = jwtClaims(readFileSync(file, 'utf8'));
      return Promise.resolve(claims.jti !== first.jti ? claims : undefined);
    }, (TOKEN_SECONDS * 0.8 + 120) * 1000 - (Date.now() / 1000 - first.iat) * 1000, 2000);
    assert.ok(renewed.iat > first.iat);
    const after = await waitFor('a request under the renewed token', async () => {
      const answer = await ask(alice, { path: `/api/v1/namespaces/${namespace}/services` });
      assert.notEqual(answer.status, 401, answer.body);
      const events = (await readAuditEvents(node.controlPlane)).filter((e) => e.impersonatedUser?.username === 'alice' && e.objectRef?.resource === 'services');
      return events.some(credential(renewed.jti)) ? events : undefined;
    }, 60_000, 2000);
    assert.ok(after.length > 0);
  });

  describe('stopping the node', function () {
    it('leaves nothing on the host: no process, mount, network link or namespace, cgroup, firewall rule, kernel setting or directory of its own', async function () {
      this.timeout(5 * 60_000);
      const running = await hostSnapshot();
      const veths = await bridgeVeths(node.bridge);
      assert.ok(veths.length >= 3, `the pods' veths on ${node.bridge}: ${veths.join(', ')}`);
      assertNodeOnHost(hostBefore, running, node, veths);
      const logs = await kubectl(node.controlPlane.adminKubeconfig, ['logs', '-n', namespace, 'dashboard', '-c', 'chaperone']);
      assert.equal(logs.code, 0, logs.stderr);
      // The audit events; the sidecar's log lines (standard error) come in the same stream.
      sidecarLog = logs.stdout.split('\n').filter((line) => line.includes('"apiVersion":"audit.k8s.io/v1"')).join('\n');

      await node.stop();
      assertNothingLeft(hostBefore, await hostSnapshot(), node, veths);
    });
  });
});
