// The injector's controller against the local control plane, installed as the shipped manifests
// install it: its own namespace, its service account with exactly the rules of
// manifests/base/injector-rbac.yaml, and a webhook configuration. Names that are cluster-wide get a
// suffix per test run, so suites sharing the control plane never see each other's. And a sidecar
// started from an admitted pod exactly as the kubelet would start it: every file it mounts, read from
// the objects the pod's volumes name.
import { randomBytes } from 'node:crypto';
import { request, type RequestOptions } from 'node:https';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import {
  AdmissionregistrationV1Api,
  KubernetesObjectApi,
  type KubernetesObject,
  type V1ClusterRole,
  type V1Container,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
  type V1Role,
  type AuthenticationV1TokenRequest,
  type V1TokenRequestSpec,
  type V1VolumeProjection,
} from '@kubernetes/client-node';
import { KubeApi } from '../lib/kube-api/client.js';
import { kubeconfigConnection } from '../lib/kube-api/connection.js';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { createLogger, type Logger } from '../lib/log.js';
import { INSTALLATION_FILE } from '../lib/sidecar-config/installation.js';
import { Installation } from '../sidecar/installation.js';
import { startSidecar, type RunningSidecar } from '../sidecar/sidecar.js';
import { startController, type Controller } from '../injector/controller.js';
import { loadInjectorConfig, type InjectorConfig } from '../injector/config.js';
import { decodeData } from '../injector/provision/kube.js';
import type { ControlPlane } from './control-plane.js';
import { mintServiceAccountToken, type AdminClients } from './kube.js';
import { waitFor } from './wait.js';
import { preserveSidecarAuditLog, registerSidecarAuditLog, serviceAccountUsername } from './audit-join.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const INJECTOR_RBAC_FILE = path.join(REPO, 'manifests/base/injector-rbac.yaml');
export const WEBHOOK_CONFIGURATION_FILE = path.join(REPO, 'manifests/base/mutatingwebhookconfiguration.yaml');
export const CLASSIC_IMPERSONATION_RBAC_FILE = path.join(REPO, 'manifests/components/classic-impersonation/injector-classic-rbac.yaml');

const SHIPPED = { namespace: 'chaperone-system', webhookConfiguration: 'chaperone-injector', injectorRole: 'chaperone-injector' };

/** One injector installation of a test run. */
export interface InjectorInstallation {
  /** The injector's namespace. */
  namespace: string;
  /** `key=value`: only namespaces carrying it (and chaperone.dev/inject=enabled) are this run's. */
  runLabel: [string, string];
  webhookConfiguration: string;
  /** The prefix of the impersonator ClusterRole and ClusterRoleBinding of each namespace: `<prefix>:<namespace>`. */
  impersonatorRole: string;
  /** A kubeconfig file for the injector's service account. */
  kubeconfigFile: string;
  dir: string;
  admission: AdmissionregistrationV1Api;
  /** The flags that make an injector (and its controller) this installation's: namespace, kubeconfig, and the names of this run. */
  flags: string[];
  /** The injector configuration of this installation, with more flags. */
  config(flags?: string[]): InjectorConfig;
  /** A controller replica with a client (and token) of its own; stopped by cleanup() unless stopped before. */
  startReplica(flags?: string[]): Controller;
  /** A new namespace of this run, labelled for injection. */
  createLabelledNamespace(prefix: string): Promise<string>;
  cleanup(): Promise<void>;
}

function renamed<T extends KubernetesObject>(object: T, changes: { namespace: string; suffix: string; webhookConfiguration: string }): T {
  const copy = structuredClone(object);
  const metadata = copy.metadata!;
  const clusterScoped = copy.kind === 'ClusterRole' || copy.kind === 'ClusterRoleBinding';
  if (metadata.namespace === SHIPPED.namespace) metadata.namespace = changes.namespace;
  if (clusterScoped) metadata.name = `${metadata.name}-${changes.suffix}`;
  const withRules = copy as unknown as V1ClusterRole | V1Role;
  for (const rule of withRules.rules ?? []) {
    if (rule.resources?.includes('mutatingwebhookconfigurations')) rule.resourceNames = rule.resourceNames?.map(() => changes.webhookConfiguration);
  }
  const binding = copy as unknown as { roleRef?: { kind: string; name: string }; subjects?: { namespace?: string }[] };
  if (binding.roleRef?.kind === 'ClusterRole') binding.roleRef.name = `${binding.roleRef.name}-${changes.suffix}`;
  for (const subject of binding.subjects ?? []) if (subject.namespace === SHIPPED.namespace) subject.namespace = changes.namespace;
  return copy;
}

export interface InstallOptions {
  tokenExpirationSeconds?: number;
  /** Also install manifests/components/classic-impersonation, which lets the injector grant the classic verb. */
  classicImpersonation?: boolean;
}

/** Installs the injector's RBAC (the shipped rules, names made unique) and a namespace for it. */
export async function installInjector(cp: ControlPlane, clients: AdminClients, options: InstallOptions = {}): Promise<InjectorInstallation> {
  const suffix = randomBytes(4).toString('hex');
  const namespace = `chaperone-system-${suffix}`;
  const webhookConfiguration = `chaperone-injector-${suffix}`;
  const impersonatorRole = `chaperone-impersonator-${suffix}`;
  const runLabel: [string, string] = ['chaperone.dev/test-run', suffix];
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-injector-'));
  await clients.core.createNamespace({ body: { metadata: { name: namespace } } });

  const files = [INJECTOR_RBAC_FILE, ...(options.classicImpersonation ? [CLASSIC_IMPERSONATION_RBAC_FILE] : [])];
  const documents = (await Promise.all(files.map((file) => readFile(file, 'utf8')))).flatMap((text) => YAML.parseAllDocuments(text));
  const objects = documents.map((doc) => renamed(doc.toJS() as KubernetesObject, { namespace, suffix, webhookConfiguration }));
  const kube = clients.kubeconfig;
  const objectApi = KubernetesObjectApi.makeApiClient(kube);
  for (const object of objects) await objectApi.create(object);
  const clusterScoped = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding');

  const token = await mintServiceAccountToken(clients, namespace, 'chaperone-injector', { expirationSeconds: options.tokenExpirationSeconds ?? 3600 });
  const kubeconfigFile = path.join(dir, 'injector.kubeconfig');
  await writeFile(kubeconfigFile, kubeconfigYaml(cp.url, cp.ca.certPem, 'chaperone-injector', { token }), { mode: 0o600 });

  const replicas: Controller[] = [];
  const namespaces: string[] = [];
  const installationFlags = [
    `--namespace=${namespace}`,
    `--kubeconfig=${kubeconfigFile}`,
    `--webhook-configuration=${webhookConfiguration}`,
    `--impersonator-role=${impersonatorRole}`,
    `--provision-selector=${runLabel.join('=')}`,
    // The suites and the demo act through dashboards as people do (writes, exec, port-forward): they
    // choose the permissive policy, which the injector's default (read-only) would refuse.
    '--default-access=dashboard',
  ];
  const config = (flags: string[] = []) => loadInjectorConfig([...installationFlags, ...flags], {});
  return {
    namespace,
    runLabel,
    webhookConfiguration,
    impersonatorRole,
    kubeconfigFile,
    dir,
    admission: kube.makeApiClient(AdmissionregistrationV1Api),
    flags: installationFlags,
    config,
    startReplica: (flags = []) => {
      // Each replica loads the file itself: a client of its own, as a process of its own would have.
      const replica = startController(config(flags), { api: new KubeApi(kubeconfigConnection(kubeconfigFile)), log: createLogger('injector', 'error') });
      replicas.push(replica);
      return replica;
    },
    createLabelledNamespace: async (prefix) => {
      const name = `${prefix}-${randomBytes(4).toString('hex')}`;
      await clients.core.createNamespace({ body: { metadata: { name, labels: { 'chaperone.dev/inject': 'enabled', [runLabel[0]]: runLabel[1] } } } });
      namespaces.push(name);
      return name;
    },
    cleanup: async () => {
      await Promise.all(replicas.map((replica) => replica.stop()));
      const admission = kube.makeApiClient(AdmissionregistrationV1Api);
      const ignore = () => undefined;
      await admission.deleteMutatingWebhookConfiguration({ name: webhookConfiguration }).catch(ignore);
      const provisioned = { labelSelector: `chaperone.dev/provisioned-by=${namespace}` };
      for (const b of (await clients.rbac.listClusterRoleBinding(provisioned)).items) await clients.rbac.deleteClusterRoleBinding({ name: b.metadata!.name! }).catch(ignore);
      for (const r of (await clients.rbac.listClusterRole(provisioned)).items) await clients.rbac.deleteClusterRole({ name: r.metadata!.name! }).catch(ignore);
      for (const object of clusterScoped) await objectApi.delete(object).catch(ignore);
      for (const name of [...namespaces, namespace]) await clients.core.deleteNamespace({ name }).catch(ignore);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The shipped webhook configuration, pointed at URLs instead of the Service (one webhook per URL) and
 * limited to this run's namespaces, so that no other suite's pods ever reach it.
 */
export async function createWebhookConfiguration(installation: InjectorInstallation, urls: string[]): Promise<V1MutatingWebhookConfiguration> {
  const shipped = YAML.parse(await readFile(WEBHOOK_CONFIGURATION_FILE, 'utf8')) as V1MutatingWebhookConfiguration;
  const template = shipped.webhooks![0]!;
  const [key, value] = installation.runLabel;
  const body: V1MutatingWebhookConfiguration = {
    ...shipped,
    metadata: { ...shipped.metadata, name: installation.webhookConfiguration },
    webhooks: urls.map((url, i) => ({
      ...template,
      name: `w${i}.inject.chaperone.dev`,
      clientConfig: { url },
      namespaceSelector: {
        matchLabels: { [key]: value },
        matchExpressions: (template.namespaceSelector?.matchExpressions ?? []).map((expression) =>
          expression.key === 'kubernetes.io/metadata.name' ? { ...expression, values: [...(expression.values ?? []), installation.namespace] } : expression,
        ),
      },
    })),
  };
  return installation.admission.createMutatingWebhookConfiguration({ body });
}

/** The base64 caBundle of each webhook, decoded. */
export async function readCaBundles(installation: InjectorInstallation): Promise<{ bundles: string[]; resourceVersion: string }> {
  const configuration = await installation.admission.readMutatingWebhookConfiguration({ name: installation.webhookConfiguration });
  return {
    bundles: (configuration.webhooks ?? []).map((webhook) => Buffer.from(webhook.clientConfig.caBundle ?? '', 'base64').toString('utf8')),
    resourceVersion: configuration.metadata?.resourceVersion ?? '',
  };
}

// ---- a pod's files, as the kubelet would write them ----

function fieldValue(pod: V1Pod, fieldPath: string): string {
  if (fieldPath === 'metadata.name') return pod.metadata!.name!;
  if (fieldPath === 'metadata.namespace') return pod.metadata!.namespace!;
  const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(fieldPath);
  if (annotation) return pod.metadata?.annotations?.[annotation[1]!] ?? '';
  throw new Error(`the test kubelet does not know the field ${fieldPath}`);
}

/** The node the test kubelet plays (there is no scheduler, so no pod names one). */
const TEST_NODE = 'chaperone-test-node';
const TEST_KUBELET_ROLE = 'chaperone-test-kubelet';
const kubeletRoles = new Map<string, Promise<void>>();

/**
 * These control planes run no nodes, so no Node authorizer vouches for one: the test kubelet's node gets
 * the one permission a kubelet uses here from RBAC instead (once per API server).
 */
function ensureKubeletRole(clients: AdminClients, server: string): Promise<void> {
  let ready = kubeletRoles.get(server);
  if (!ready) {
    const exists = (err: unknown) => {
      if ((err as { code?: number }).code !== 409) throw err;
    };
    ready = (async () => {
      await clients.rbac
        .createClusterRole({ body: { metadata: { name: TEST_KUBELET_ROLE }, rules: [{ apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] }] } })
        .catch(exists);
      await clients.rbac
        .createClusterRoleBinding({
          body: {
            metadata: { name: TEST_KUBELET_ROLE },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: TEST_KUBELET_ROLE },
            subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: `system:node:${TEST_NODE}` }],
          },
        })
        .catch(exists);
    })();
    ready.catch(() => kubeletRoles.delete(server));
    kubeletRoles.set(server, ready);
  }
  return ready;
}

/**
 * TokenRequest as the kubelet makes it: bound to the pod, as its node (system:node:<name> in
 * system:nodes), since the shipped policy gives the scoped token to nobody else.
 */
async function requestTokenAsNode(clients: AdminClients, pod: V1Pod, spec: V1TokenRequestSpec): Promise<AuthenticationV1TokenRequest> {
  const cluster = clients.kubeconfig.getCurrentCluster();
  if (!cluster) throw new Error('the admin kubeconfig has no cluster');
  await ensureKubeletRole(clients, cluster.server);
  const url = new URL(`${cluster.server}/api/v1/namespaces/${pod.metadata!.namespace!}/serviceaccounts/${pod.spec!.serviceAccountName!}/token`);
  const options: RequestOptions = {
    method: 'POST',
    host: url.hostname,
    port: url.port,
    path: url.pathname,
    headers: { 'content-type': 'application/json', 'impersonate-user': `system:node:${TEST_NODE}`, 'impersonate-group': 'system:nodes' },
  };
  await clients.kubeconfig.applyToHTTPSOptions(options);
  const once = () =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(options, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec }));
    });
  // RBAC sees a new binding a moment after it is written.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { status, body } = await once();
    if (status === 201) return JSON.parse(body) as AuthenticationV1TokenRequest;
    if (status !== 403 || !/cannot create resource/.test(body) || Date.now() > deadline) throw new Error(`TokenRequest as the node ${TEST_NODE}: HTTP ${status}: ${body}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function projectedFiles(clients: AdminClients, pod: V1Pod, source: V1VolumeProjection): Promise<Record<string, string>> {
  const namespace = pod.metadata!.namespace!;
  const files: Record<string, string> = {};
  if (source.serviceAccountToken) {
    const token = await requestTokenAsNode(clients, pod, {
      audiences: source.serviceAccountToken.audience ? [source.serviceAccountToken.audience] : [],
      expirationSeconds: source.serviceAccountToken.expirationSeconds ?? 3600,
      boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name!, uid: pod.metadata!.uid! },
    });
    files[source.serviceAccountToken.path] = token.status?.token ?? '';
  }
  if (source.configMap) {
    const configMap = await clients.core.readNamespacedConfigMap({ name: source.configMap.name!, namespace });
    for (const item of source.configMap.items ?? []) {
      const value = configMap.data?.[item.key];
      if (value === undefined) throw new Error(`ConfigMap ${namespace}/${source.configMap.name} has no key ${item.key}`);
      files[item.path] = value;
    }
  }
  if (source.secret) {
    const data = decodeData((await clients.core.readNamespacedSecret({ name: source.secret.name!, namespace })).data);
    for (const item of source.secret.items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
      if (data[item.key] === undefined) throw new Error(`Secret ${namespace}/${source.secret.name} has no key ${item.key}`);
      files[item.path] = data[item.key]!;
    }
  }
  for (const item of source.downwardAPI?.items ?? []) files[item.path] = fieldValue(pod, item.fieldRef!.fieldPath);
  return files;
}

/**
 * Writes the files of every volume the container mounts under `dir`, as the kubelet would (failing,
 * as the kubelet would, when an object or key a volume names is missing); returns mount path -> directory.
 */
export async function writeMountedFiles(clients: AdminClients, pod: V1Pod, container: V1Container, dir: string): Promise<Map<string, string>> {
  const mounts = new Map<string, string>();
  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.spec!.volumes!.find((v) => v.name === mount.name);
    if (!volume) throw new Error(`container ${container.name} mounts volume ${mount.name}, which the pod does not have`);
    const sources: V1VolumeProjection[] = volume.projected?.sources ?? [
      ...(volume.secret ? [{ secret: { name: volume.secret.secretName!, ...(volume.secret.items ? { items: volume.secret.items } : {}) } }] : []),
      ...(volume.configMap ? [{ configMap: volume.configMap }] : []),
    ];
    if (sources.length === 0 && !volume.emptyDir) throw new Error(`the test kubelet cannot mount volume ${volume.name}`);
    const local = path.join(dir, container.name, mount.name);
    await mkdir(local, { recursive: true });
    for (const source of sources) {
      for (const [file, content] of Object.entries(await projectedFiles(clients, pod, source))) {
        // Whole files at once, as the kubelet's symlink swap gives them: never half-written.
        const target = path.join(local, file);
        await writeFile(`${target}.tmp`, content, { mode: 0o600 });
        await rename(`${target}.tmp`, target);
      }
    }
    mounts.set(mount.mountPath, local);
  }
  return mounts;
}

/** Replaces mount paths in a flag value with where their files were written. */
function relocate(arg: string, mounts: Map<string, string>): string {
  for (const [mountPath, local] of mounts) {
    if (arg.includes(`=${mountPath}/`)) return arg.replace(`=${mountPath}/`, `=${local}/`);
    if (arg.endsWith(`=${mountPath}`)) return `${arg.slice(0, -mountPath.length)}${local}`;
  }
  return arg;
}

export interface PodSidecar {
  url: string;
  /** The files the dashboard container sees in its service-account directory: ca.crt, namespace, token. */
  dashboard: { caPem: string; token: string; namespace: string };
  /** The files the sidecar mounts: mount path -> local directory. */
  mounts: Map<string, string>;
  /** The sidecar's audit events (its file sink). */
  auditLog: string;
  /** The ops listener: /healthz, /readyz, /metrics. */
  opsUrl: string;
  /** The extra listener, when the pod's sidecar has one (the installation's extraListen). */
  extraUrl?: string;
  /** Writes every file again from the objects as they are now, as the kubelet does when they change. */
  refresh(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs the pod's chaperone container in this process with its own arguments and environment and
 * exactly the files the pod mounts; only its listeners move to free ports on 127.0.0.1, and the
 * service variables name the local API server.
 */
/** The audit sinks the installation configuration the sidecar's arguments name asks for (none without one). */
async function installationAuditSinks(clients: AdminClients, args: readonly string[]): Promise<string[]> {
  const ref = args.find((arg) => arg.startsWith('--installation-config='))?.split('=', 2)[1];
  if (!ref) return [];
  const [namespace, name] = ref.split('/') as [string, string];
  const secret = await clients.core.readNamespacedSecret({ namespace, name }).catch(() => undefined);
  const sidecarYaml = secret?.data?.[INSTALLATION_FILE];
  if (!sidecarYaml) return [];
  const sinks: unknown = (YAML.parse(Buffer.from(sidecarYaml, 'base64').toString('utf8')) as Record<string, unknown> | null)?.auditSinks;
  return Array.isArray(sinks) ? sinks.map(String).filter((sink) => sink !== 'file') : [];
}

/**
 * A dashboard pod the injector injected, created in a labelled namespace once its default service
 * account exists; created again until the injector has seen the namespace (its caches may lag by a
 * moment) and injects it.
 */
export async function createInjectedPod(clients: AdminClients, namespace: string, name = 'dashboard'): Promise<V1Pod> {
  await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace }).then(() => true));
  return waitFor(
    'the injector to inject a pod',
    async () => {
      const body = { metadata: { name }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } };
      const created = await clients.core.createNamespacedPod({ namespace, body }).catch(() => undefined);
      return created?.spec?.serviceAccountName === 'chaperone-impersonator' ? created : undefined;
    },
    90_000,
    1000,
  );
}

export async function startPodSidecar(
  cp: ControlPlane,
  clients: AdminClients,
  pod: V1Pod,
  containerName = 'chaperone',
  log: Logger = createLogger('sidecar', 'warn'),
): Promise<PodSidecar> {
  const containers = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers];
  const sidecar = containers.find((c) => c.name === containerName);
  const dashboard = containers.find((c) => c.name !== containerName);
  if (!sidecar || !dashboard) throw new Error(`pod ${pod.metadata?.name} has no ${containerName} container beside the dashboard`);
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-pod-'));
  const mounts = await writeMountedFiles(clients, pod, sidecar, dir);
  const dashboardMounts = await writeMountedFiles(clients, pod, dashboard, dir);
  const serviceAccountDir = dashboardMounts.get('/var/run/secrets/kubernetes.io/serviceaccount')!;
  const read = (file: string) => readFile(path.join(serviceAccountDir, file), 'utf8');
  const readDashboard = async () => ({ caPem: await read('ca.crt'), token: await read('token'), namespace: await read('namespace') });

  const env: Record<string, string> = { KUBERNETES_SERVICE_HOST: cp.host, KUBERNETES_SERVICE_PORT: String(cp.port) };
  for (const variable of sidecar.env ?? []) env[variable.name] = variable.value ?? fieldValue(pod, variable.valueFrom!.fieldRef!.fieldPath);
  const args = [
    ...(sidecar.args ?? []).map((arg) => relocate(arg, mounts)),
    '--listen=127.0.0.1:0',
    '--ops-listen=127.0.0.1:0',
    ...((sidecar.args ?? []).some((arg) => arg.startsWith('--extra-listen=')) ? ['--extra-listen=127.0.0.1:0'] : []),
    '--log-level=warn',
    // A file for the run's audit join, besides whatever sinks the installation configuration names.
    `--audit-sinks=${['file', ...(await installationAuditSinks(clients, sidecar.args ?? []))].join(',')}`,
    `--audit-file-path=${path.join(dir, 'audit.jsonl')}`,
  ];
  // As sidecar/main.ts: the installation configuration, when the injector named one, read from the API server first.
  const { config, installation } = await Installation.load(args, env, log);
  const running: RunningSidecar = await startSidecar(config, log, installation);
  const serviceAccount = serviceAccountUsername(pod.metadata!.namespace!, pod.spec!.serviceAccountName ?? 'default');
  const joined = registerSidecarAuditLog({ controlPlane: cp, serviceAccount, file: path.join(dir, 'audit.jsonl'), what: `sidecar of pod ${pod.metadata!.namespace}/${pod.metadata!.name}` });
  const result: PodSidecar = {
    url: `https://127.0.0.1:${running.listening[0]!.port}`,
    dashboard: await readDashboard(),
    mounts,
    auditLog: path.join(dir, 'audit.jsonl'),
    opsUrl: `http://127.0.0.1:${running.opsPort}`,
    ...(running.listening[1] ? { extraUrl: `https://127.0.0.1:${running.listening[1].port}` } : {}),
    refresh: async () => {
      await writeMountedFiles(clients, pod, sidecar, dir);
      await writeMountedFiles(clients, pod, dashboard, dir);
      result.dashboard = await readDashboard();
    },
    stop: async () => {
      await running.stop();
      await preserveSidecarAuditLog(joined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return result;
}
