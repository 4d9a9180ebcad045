// Real pods: a kubelet, containerd and runc on the local cluster (local-cluster/node.ts), so that
// what only a node does is tested for real. The injector runs as the shipped Deployment from its
// image, built without Docker from the bundles in dist/ (local-cluster/oci.ts); a labelled
// namespace; a dashboard pod whose app is a real in-cluster client (client-go's InClusterConfig,
// test/fixtures/in-cluster-client) is injected and runs. The person's requests and exec go from that
// app through the sidecar on the pod's own 127.0.0.1:6443 to the API server and the kubelet; the
// API server's audit log says whom they ran as. Last, stopping the node leaves nothing on the host.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import type { KubernetesObject, V1Container, V1Deployment, V1Pod } from '@kubernetes/client-node';
import { PLACEHOLDER_TOKEN } from '../../injector/proxy.js';
import { SECRETS } from '../../injector/provision/names.js';
import { decodeData } from '../../injector/provision/kube.js';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { ensureInClusterClient } from '../../local-cluster/binaries.js';
import { adminClients, bindClusterRoleInNamespace, kubectl, readAuditEvents, userSubject, type AdminClients, type AuditEvent } from '../../local-cluster/kube.js';
import { otherRunningNodes, startNode, type LocalNode } from '../../local-cluster/node.js';
import { buildBinaryImage, buildDockerfileImage } from '../../local-cluster/oci.js';
import { waitFor } from '../../local-cluster/wait.js';
import { registerSidecarAuditLog, serviceAccountUsername } from '../../local-cluster/audit-join.js';
import { ensureArtefacts } from '../../scripts/build-artefacts.js';

const run = promisify(execFile);
const MANIFESTS = path.resolve(import.meta.dirname, '../../manifests');
const INJECTOR_NAMESPACE = 'chaperone-system';
const CLIENT_IMAGE = 'chaperone.local/in-cluster-client:test';
const CLIENT_PORT = 8080;
const APP_UID = 1000;
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

// ---- what a node may leave on the host ----

interface HostSnapshot {
  mounts: string[];
  links: string[];
  netns: string[];
  cgroups: string[];
  firewall: string;
  tunables: Record<string, string>;
  paths: Record<string, boolean>;
}

const TUNABLES = ['vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys', 'kernel/keys/root_maxbytes', 'net/ipv4/ip_forward'];
const NODE_PATHS = ['/var/lib/kubelet', '/var/lib/containerd', '/run/containerd', '/var/log/pods', '/var/log/containers', '/var/lib/cni', '/etc/cni', '/opt/containerd', '/var/run/netns'];

async function commandOutput(command: string, args: string[]): Promise<string | undefined> {
  try {
    return (await run(command, args)).stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function cgroupDirs(): string[] {
  const root = '/sys/fs/cgroup';
  return readdirSync(root).flatMap((hierarchy) => {
    try {
      return readdirSync(path.join(root, hierarchy), { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => `${hierarchy}/${entry.name}`);
    } catch {
      return [];
    }
  });
}

async function hostSnapshot(): Promise<HostSnapshot> {
  const iptables = await commandOutput('iptables-save', []);
  const nft = await commandOutput('nft', ['list', 'ruleset']);
  return {
    mounts: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => line.split(' ').slice(3, 5).join(' ')),
    links: (await run('ip', ['-o', 'link'])).stdout.split('\n').filter(Boolean).map((line) => line.split(':')[1]!.trim().replace(/@.*$/, '')),
    netns: existsSync('/var/run/netns') ? readdirSync('/var/run/netns') : [],
    cgroups: cgroupDirs(),
    firewall: `iptables: ${iptables ?? '(not installed)'}\nnft: ${nft ?? '(not installed)'}`,
    tunables: Object.fromEntries(TUNABLES.map((name) => [name, readFileSync(`/proc/sys/${name}`, 'utf8').trim()])),
    paths: Object.fromEntries(NODE_PATHS.map((p) => [p, existsSync(p)])),
  };
}

const added = (before: string[], after: string[]) => after.filter((item) => !before.includes(item));

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
    await ensureArtefacts((line) => process.stderr.write(`[real-pods] ${line}\n`));

    // The shipped base, as kubectl renders it, with one change: there is no scheduler, so the
    // Deployment's pods name the node.
    const rendered = await kubectl(node.controlPlane.adminKubeconfig, ['kustomize', path.join(MANIFESTS, 'base')]);
    assert.equal(rendered.code, 0, rendered.stderr);
    const objects = YAML.parseAllDocuments(rendered.stdout).map((doc) => doc.toJS() as KubernetesObject);
    const deployment = objects.find((o): o is V1Deployment => o.kind === 'Deployment')!;
    deployment.spec!.template.spec!.nodeName = node.name;
    const injectorContainer = deployment.spec!.template.spec!.containers[0]!;
    // And the shortest token the API server issues, so that the kubelet renews it during the suite.
    injectorContainer.args!.push(`--token-expiration=${TOKEN_SECONDS}s`);
    const sidecarImage = injectorContainer.args!.find((arg) => arg.startsWith('--sidecar-image='))!.slice('--sidecar-image='.length);
    const images = [
      await buildDockerfileImage('Dockerfile.injector', injectorContainer.image!, path.join(work, 'injector.tar')),
      await buildDockerfileImage('Dockerfile.sidecar', sidecarImage, path.join(work, 'sidecar.tar')),
      await buildBinaryImage(await ensureInClusterClient(), 'client', CLIENT_IMAGE, path.join(work, 'client.tar')),
    ];
    for (const image of images) await node.importImage(image.file);
    const file = path.join(work, 'base.json');
    await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    const applied = await kubectl(node.controlPlane.adminKubeconfig, ['apply', '--server-side', '-f', file]);
    assert.equal(applied.code, 0, applied.stderr);

    await waitFor('the injector Deployment available', async () => {
      const status = (await kubectl(node.controlPlane.adminKubeconfig, ['get', 'deployment', '-n', INJECTOR_NAMESPACE, 'chaperone-injector', '-o', 'jsonpath={.status.readyReplicas}'])).stdout;
      return Number(status) === deployment.spec!.replicas ? true : undefined;
    }, 180_000, 1000);

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

    const app: V1Container = {
      name: 'dashboard',
      image: CLIENT_IMAGE,
      imagePullPolicy: 'IfNotPresent',
      args: ['serve'],
      ports: [{ name: 'http', containerPort: CLIENT_PORT }],
      securityContext: { runAsNonRoot: true, runAsUser: APP_UID, runAsGroup: APP_UID, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
    };
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
      // What the check looks for is there while the node runs.
      assert.ok(added(hostBefore.mounts, running.mounts).some((mount) => mount.includes(node.dir)), 'the node has mounts under its dir');
      assert.ok(running.links.includes(node.bridge), 'the node has its bridge');
      assert.ok(added(hostBefore.links, running.links).some((link) => link.startsWith('veth')), "the pods' veth pairs are on the host");
      assert.ok(added(hostBefore.cgroups, running.cgroups).some((cgroup) => cgroup.endsWith(`/${node.name}`)), 'the node has its cgroups');
      const logs = await kubectl(node.controlPlane.adminKubeconfig, ['logs', '-n', namespace, 'dashboard', '-c', 'chaperone']);
      assert.equal(logs.code, 0, logs.stderr);
      // The audit events; the sidecar's log lines (standard error) come in the same stream.
      sidecarLog = logs.stdout.split('\n').filter((line) => line.includes('"apiVersion":"audit.k8s.io/v1"')).join('\n');

      const ourVeths = (await run('ip', ['-o', 'link', 'show', 'master', node.bridge])).stdout.split('\n').filter(Boolean).map((line) => line.split(':')[1]!.trim().replace(/@.*$/, ''));
      assert.ok(ourVeths.length >= 3, `the pods' veths on ${node.bridge}: ${ourVeths.join(', ')}`);

      await node.stop();
      const after = await hostSnapshot();
      // Another run's node, if one runs now, has things of its own on the host: they are not this node's.
      const others = otherRunningNodes(node.name);
      const notOthers = (item: string) => !others.some((other) => item.includes(other.dir) || item.includes(other.bridge) || item.includes(other.name));
      const othersVeth = (link: string) => others.length > 0 && link.startsWith('veth') && !ourVeths.includes(link);
      assert.deepEqual(added(hostBefore.mounts, after.mounts).filter(notOthers), []);
      assert.deepEqual(added(hostBefore.links, after.links).filter(notOthers).filter((link) => !othersVeth(link)), []);
      for (const veth of ourVeths) assert.ok(!after.links.includes(veth), veth);
      assert.deepEqual(added(hostBefore.netns, after.netns).filter(() => others.length === 0), []);
      assert.deepEqual(added(hostBefore.cgroups, after.cgroups).filter(notOthers), []);
      assert.equal(after.firewall, hostBefore.firewall);
      if (others.length === 0) {
        assert.deepEqual(after.tunables, hostBefore.tunables);
        assert.deepEqual(after.paths, hostBefore.paths);
      } else {
        // The last node to stop puts them back, from what they were before any node started.
        process.stderr.write(`      (the kernel settings and the kubelet's fixed directories are left to ${others.map((other) => other.name).join(', ')}, still running, to put back)\n`);
      }
      const processes = readdirSync('/proc').filter((pid) => /^\d+$/.test(pid) && (() => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(node.dir);
        } catch {
          return false;
        }
      })());
      assert.deepEqual(processes, []);
      assert.equal(existsSync(node.dir), false);
    });
  });
});
