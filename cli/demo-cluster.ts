// The demo's objects on the node: sign-in configured once for the installation, the namespace the
// injector provisions, and the dashboard pod it injects, which the kubelet runs.
import YAML from 'yaml';
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { createCA } from '../lib/pki.js';
import { INJECT_LABEL, STATUS_ANNOTATION } from '../injector/names.js';
import { PROVISIONED_BY_LABEL } from '../injector/provision/names.js';
import { type AdminClients } from '../local-cluster/kube.js';
import { authenticationConfigurationFor, startTestProvider, type TestProvider } from '../local-cluster/identity/oidc-provider.js';
import { startPamHook, type PamHook } from '../local-cluster/identity/pam-hook.js';
import { importInClusterClient, inClusterClientContainer, INJECTOR_NAMESPACE } from '../local-cluster/installed.js';
import type { LocalNode } from '../local-cluster/node.js';
import { waitFor } from '../local-cluster/wait.js';
import type { Demo } from './demo.js';
import { describeRules } from './demo-describe.js';
import { runKubectl } from './demo-kubectl.js';
import { dim, type Step } from './demo-output.js';

export const NAMESPACE = 'demo';
export const DASHBOARD = 'dashboard';
/** Where the sidecar listens in the pod, on its own loopback. */
export const SIDECAR_PORT = 6443;
/** How long the people's certificates and tokens last: the demo works this long. */
export const CREDENTIALS_TTL_SECONDS = 8 * 3600;
export const CAROL_EMAIL = 'carol@example.com';
export const DAVE_PASSWORD = 'correct horse battery staple';
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
const POD_READY_MS = 120_000;

/**
 * A dashboard pod as a dashboard's Helm chart makes it (its own service account, one container),
 * whose app is a real in-cluster client (client-go's InClusterConfig), on the node.
 */
export function dashboardPod(nodeName: string, options: { optOut?: boolean } = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: DASHBOARD, labels: { 'app.kubernetes.io/name': DASHBOARD, ...(options.optOut ? { [INJECT_LABEL]: 'disabled' } : {}) } },
    spec: { nodeName, serviceAccountName: DASHBOARD, containers: [inClusterClientContainer(DASHBOARD)] },
  };
}

/** Where people sign in besides the identity CA: an OpenID provider and a pam_hook-style token webhook. */
export interface SignIn {
  provider: TestProvider;
  pamHook: PamHook;
}

export async function signIn(demo: Demo, clients: AdminClients, on: LocalNode): Promise<SignIn> {
  const step = demo.step('Sign-in, configured once for the installation: an OpenID provider and a pam_hook-style webhook');
  const providerCa = createCA({ commonName: 'demo-openid-provider-ca' });
  // On the bridge's address: the sidecars in pods reach it there, and nothing off this machine does.
  const provider = await startTestProvider(providerCa, {
    carol: { claims: { email: CAROL_EMAIL, email_verified: true, groups: ['platform'] }, ttlSeconds: CREDENTIALS_TTL_SECONDS },
  }, { host: on.address });
  demo.life.defer('the OpenID provider', () => provider.stop());
  const pamHook = await startPamHook({ dave: { password: DAVE_PASSWORD, uid: '1001', groups: ['ops'] } }, { tokenMinutes: CREDENTIALS_TTL_SECONDS / 60, host: on.address });
  demo.life.defer('the token webhook', () => pamHook.stop());
  const authentication = authenticationConfigurationFor(provider, providerCa.certPem, { username: { claim: 'email', prefix: '' }, groups: { claim: 'groups', prefix: 'oidc:' } });
  const files = {
    'sidecar.yaml': YAML.stringify({ authenticationConfig: 'authentication-config.yaml', authenticationTokenWebhookConfigFile: 'token-webhook.kubeconfig' }),
    'authentication-config.yaml': authentication,
    'token-webhook.kubeconfig': pamHook.kubeconfig(),
  };
  await clients.core.createNamespacedSecret({ namespace: INJECTOR_NAMESPACE, body: { metadata: { name: 'chaperone-sidecar-config' }, stringData: files } });
  step.say(`an OpenID provider at ${provider.issuer} (its own CA): carol's ID token says email ${CAROL_EMAIL}, groups [platform]`);
  step.say(`a pam_hook-style webhook at ${pamHook.url}: dave gets a token from its /token with his password`);
  step.say(dim(`both on the node bridge's address, which pods reach and nothing off this machine does`));
  step.say(`Secret ${INJECTOR_NAMESPACE}/chaperone-sidecar-config: sidecar.yaml, an AuthenticationConfiguration (username from email,`);
  step.say('groups from the groups claim, prefixed oidc:) and the webhook\'s kubeconfig; no application namespace can read or change it');
  step.done('every sidecar the injector adds from now on reads it from the API server, and follows it');
  return { provider, pamHook };
}

/** Waits until the API server would have the injector inject a pod in the namespace: the webhook refuses pods until the namespace is provisioned. */
async function injecting(clients: AdminClients, on: LocalNode): Promise<string> {
  return waitFor(
    `the injector to inject pods in namespace ${NAMESPACE}`,
    async () => {
      const pod = await clients.core.createNamespacedPod({ namespace: NAMESPACE, body: dashboardPod(on.name), dryRun: 'All' });
      return pod.metadata?.annotations?.[STATUS_ANNOTATION] !== undefined && pod.spec?.serviceAccountName;
    },
    60_000,
    250,
  );
}

async function describeProvisioned(step: Step, clients: AdminClients, scoped: string): Promise<void> {
  const labelSelector = `${PROVISIONED_BY_LABEL}=${INJECTOR_NAMESPACE}`;
  const [accounts, configMaps, secrets, bindings] = await Promise.all([
    clients.core.listNamespacedServiceAccount({ namespace: NAMESPACE, labelSelector }),
    clients.core.listNamespacedConfigMap({ namespace: NAMESPACE, labelSelector }),
    clients.core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector }),
    clients.rbac.listClusterRoleBinding(),
  ]);
  const names = (kind: string, list: { items: { metadata?: { name?: string } }[] }) => list.items.map((item) => `${kind} ${item.metadata?.name}`);
  step.say(`created: ${[...names('ServiceAccount', accounts), ...names('ConfigMap', configMaps), ...names('Secret', secrets)].join(', ')}`);
  const roles = bindings.items
    .filter((binding) => (binding.subjects ?? []).some((s) => s.kind === 'ServiceAccount' && s.namespace === NAMESPACE && s.name === scoped))
    .map((binding) => binding.roleRef.name);
  for (const role of roles) {
    step.say(`ServiceAccount ${scoped} is bound to ClusterRole ${role}, which allows:`);
    for (const line of describeRules((await clients.rbac.readClusterRole({ name: role })).rules ?? [])) step.say(`  ${line}`);
  }
}

export async function provisionNamespace(demo: Demo, clients: AdminClients, on: LocalNode): Promise<void> {
  const step = demo.step(`Namespace ${NAMESPACE}, labelled ${INJECT_LABEL}=enabled: the injector provisions it`);
  // Pod Security baseline, which every labelled namespace must enforce (docs/security-model.md).
  await clients.core.createNamespace({ body: { metadata: { name: NAMESPACE, labels: { [INJECT_LABEL]: 'enabled', 'pod-security.kubernetes.io/enforce': 'baseline' } } } });
  step.say('and pod-security.kubernetes.io/enforce=baseline, which every namespace chaperone serves must enforce');
  // The dashboard's own service account, as its Helm chart would create it.
  await clients.core.createNamespacedServiceAccount({ namespace: NAMESPACE, body: { metadata: { name: DASHBOARD } } });
  const scoped = await injecting(clients, on);
  await describeProvisioned(step, clients, scoped);
  step.done(`provisioned; pods created in ${NAMESPACE} now run as ServiceAccount ${scoped}`);
}

function containerState(status: V1ContainerStatus): string {
  if (status.state?.waiting) return status.state.waiting.reason ?? 'waiting';
  if (status.state?.terminated) return `exited ${status.state.terminated.exitCode}`;
  return status.ready ? 'ready' : 'running, not ready';
}

/** What keeps a pod from being Ready, from its containers' states. */
function whyNotReady(pod: V1Pod | undefined): string {
  const status = pod?.status ?? {};
  const states = [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])].map((s) => `${s.name}: ${containerState(s)}`);
  return [`phase ${status.phase ?? 'unknown'}`, ...states].join('; ');
}

async function readyPod(clients: AdminClients): Promise<V1Pod> {
  let last: V1Pod | undefined;
  try {
    return await waitFor(`pod ${NAMESPACE}/${DASHBOARD} Ready`, async () => {
      last = await clients.core.readNamespacedPod({ name: DASHBOARD, namespace: NAMESPACE });
      return last.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? last : undefined;
    }, POD_READY_MS, 500);
  } catch (err) {
    throw new Error(`${(err as Error).message} (${whyNotReady(last)})`, { cause: err });
  }
}

/** Creates the dashboard pod on the node; resolves with the pod as the API server stored it. */
export async function createDashboard(demo: Demo, clients: AdminClients, on: LocalNode, step: Step): Promise<V1Pod> {
  await importInClusterClient(on, demo.dir, (line) => step.say(dim(line)));
  return clients.core.createNamespacedPod({ namespace: NAMESPACE, body: dashboardPod(on.name) });
}

/** Waits until the dashboard pod is Ready; shows what its app reads as its service-account token. */
export async function dashboardRunning(demo: Demo, clients: AdminClients, on: LocalNode, step: Step): Promise<V1Pod> {
  const pod = await readyPod(clients);
  const args = ['exec', '-n', NAMESPACE, DASHBOARD, '-c', DASHBOARD, '--', '/client', 'cat', SERVICE_ACCOUNT_TOKEN];
  const token = await runKubectl(demo.kubectl, on.controlPlane.adminKubeconfig, args);
  step.say(`what its app reads as its service-account token: $ kubectl ${args.join(' ')}`);
  step.say(`  ${token.output}`);
  return pod;
}
