// What the containment suites share: a control plane that runs as clusters do (the Node authorizer
// and the NodeRestriction admission plugin on), the policies that keep the scoped token in the sidecar
// applied exactly as they ship, and the injector behind the shipped webhook configuration, injecting
// a labelled namespace that enforces Pod Security baseline (as docs/operations.md asks).
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { KubernetesObjectApi, PatchStrategy, setHeaderOptions, type KubernetesObject } from '@kubernetes/client-node';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import { createLogger } from '../../lib/log.js';
import { startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';
import type { AdminClients } from '../../local-cluster/kube.js';
import { createWebhookConfiguration, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { waitFor } from '../../local-cluster/wait.js';
import type { CertificateAndKey } from '../../lib/pki.js';

const BASE = path.resolve(import.meta.dirname, '../../manifests/base');
/** The policies that keep the token in the sidecar (what keeps the provisioned objects is tampering.test.ts's). */
export const TOKEN_POLICIES = ['scoped-token-policy.yaml', 'token-routes-policy.yaml'];

export const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export function startClusterLikeControlPlane(): Promise<ControlPlane> {
  return startControlPlane({ extraApiserverFlags: ['--authorization-mode=Node', '--enable-admission-plugins=NodeRestriction'] });
}

/** Creates the token policies and their bindings as they ship; returns what it created. */
export async function applyTokenPolicies(clients: AdminClients): Promise<KubernetesObject[]> {
  const objects = (await Promise.all(TOKEN_POLICIES.map((file) => readFile(path.join(BASE, file), 'utf8')))).flatMap((text) =>
    YAML.parseAllDocuments(text).map((doc) => doc.toJS() as KubernetesObject),
  );
  const api = KubernetesObjectApi.makeApiClient(clients.kubeconfig);
  for (const object of objects) await api.create(object);
  return objects;
}

/** The log of the injector started last, which a wait for injection that times out shows. */
let injectorLog: string | undefined;

/** The installation's injector on a free port of 127.0.0.1, called through its webhook configuration; its log in a file of its own until it stops. */
export async function startInjectorBehindWebhook(installation: InjectorInstallation, flags: string[] = []): Promise<RunningInjector> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-test-injector-log-'));
  const log = path.join(dir, 'injector.log');
  const injector = await startInjector(installation.config(['--listen=127.0.0.1:0', '--webhook-hosts=127.0.0.1', '--resync-interval=5s', ...flags]), createLogger('injector', 'info', log));
  injectorLog = log;
  await createWebhookConfiguration(installation, [`https://127.0.0.1:${injector.port}/mutate`]);
  return {
    ...injector,
    stop: async () => {
      await injector.stop();
      if (injectorLog === log) injectorLog = undefined;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function injectorLogTail(lines = 40): string {
  if (!injectorLog) return '(no injector log)';
  try {
    return readFileSync(injectorLog, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch (err) {
    return `(the injector's log could not be read: ${(err as Error).message})`;
  }
}

/** Until the API server calls the injector for the namespace (its informer, the caBundle, the provisioning); when it never does, the injector's log says why. */
export async function waitForInjection(clients: AdminClients, namespace: string): Promise<void> {
  try {
    await waitFor(
      `the injector to inject pods in ${namespace}`,
      async () =>
        (await clients.core.createNamespacedPod({ namespace, body: { metadata: { name: 'probe' }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } }, dryRun: 'All' }))
          .spec?.serviceAccountName === 'chaperone-impersonator',
      60_000,
      250,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\nthe injector's log, its last lines:\n${injectorLogTail()}`, { cause: err });
  }
}

/** A new namespace of the installation, labelled for injection, enforcing Pod Security baseline, and injected. */
export async function injectedBaselineNamespace(installation: InjectorInstallation, clients: AdminClients, prefix: string): Promise<string> {
  const namespace = await installation.createLabelledNamespace(prefix);
  await clients.core.patchNamespace({ name: namespace, body: { metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'baseline' } } } }, mergePatch());
  await waitForInjection(clients, namespace);
  return namespace;
}

/** What the API server answered, with its Status's message and the audit ID that names the request in its log. */
export interface ApiResponse {
  status: number;
  auditID: string;
  body: string;
  message: string;
}

/** A request to the API server as the holder of `cert` (the cluster admin without one): an attacker's try. */
export async function sendAs(cp: ControlPlane, cert: CertificateAndKey | undefined, method: string, urlPath: string, body?: unknown, contentType = 'application/json', headers: Record<string, string> = {}): Promise<ApiResponse> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const r = await rawRequest(`${cp.url}${urlPath}`, { method, ca: cp.ca.certPem, cert: cert ?? cp.admin, headers: { ...(text !== undefined ? { 'content-type': contentType } : {}), ...headers }, ...(text !== undefined ? { body: text } : {}) });
  let message = r.body;
  try {
    message = (JSON.parse(r.body) as { message?: string }).message ?? r.body;
  } catch {
    // not a Status
  }
  return { status: r.status, auditID: String(r.headers['audit-id'] ?? ''), body: r.body, message };
}
