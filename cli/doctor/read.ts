// The thin reader of the cluster behind `chaperone doctor`: every fact the checks judge, read with the
// person's own credentials. Nothing is written; the only POSTs are SubjectAccessReviews, which store
// nothing. What cannot be read is a fact too (with why, in the person's words); what cannot be
// reached at all is an error.
import {
  AdmissionregistrationV1Api,
  ApiException,
  AuthorizationV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  type KubeConfig,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
} from '@kubernetes/client-node';
import { installationConfigName, installationConfigProblems, type SignInFacts } from './sign-in.js';
import type { InjectorConfig } from '../../injector/config.js';
import { provisioningNames } from '../../injector/controller.js';
import { checkProvisioning } from '../../injector/provision/readiness.js';
import { NAMESPACE_EVENTS_NAMESPACE, neverInjected, REFUSED_REASON } from '../../injector/namespaces.js';
import { KubeApiError } from '../../lib/kube-api/client.js';
import { kubeApiOf } from '../kube-api.js';
import { apiErrorMessage } from '../cluster.js';
import { accessQuestions, serviceAccountUser } from './access.js';
import { absent, found, unreadable, type DoctorFacts, type Installation, type Observed, type WebhookServiceFacts } from './facts.js';

export interface DoctorTarget {
  namespace: string;
  pod?: string;
}

export function installationOf(config: InjectorConfig): Installation {
  return {
    namespace: config.namespace,
    serviceAccount: config.serviceAccount,
    caConfigMap: config.caConfigMap,
    servingSecret: config.servingSecret,
    webhookConfiguration: config.webhookConfiguration,
    certificates: config.certificates,
    ...(config.provisionSelector ? { provisionSelector: config.provisionSelector } : {}),
  };
}

/** `need` completes "you need …" when the answer is 403. Errors that are not the API server's answer are thrown. */
async function observe<T>(read: () => Promise<T>, need: string): Promise<Observed<T>> {
  try {
    return found(await read());
  } catch (err) {
    if (err instanceof KubeApiError) return unreadable(err.statusCode === 403 ? `forbidden: you need ${need}` : err.message);
    if (!(err instanceof ApiException)) throw err;
    if (err.code === 404) return absent;
    return unreadable(apiErrorMessage(err, need));
  }
}

interface Clients {
  core: CoreV1Api;
  discovery: DiscoveryV1Api;
  authorization: AuthorizationV1Api;
}

async function askAll({ authorization }: Clients, namespace: string, serviceAccount: string): Promise<Record<string, boolean>> {
  const { user, groups } = serviceAccountUser(namespace, serviceAccount);
  const answers = await Promise.all(
    accessQuestions(namespace).map(async ({ id, attributes }) => {
      const review = await authorization.createSubjectAccessReview({ body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview', spec: { user, groups, resourceAttributes: attributes } } });
      return [id, review.status?.allowed === true] as const;
    }),
  );
  return Object.fromEntries(answers);
}

async function readyEndpoints({ discovery }: Clients, namespace: string, service: string): Promise<number> {
  const slices = await discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${service}` });
  const ready = new Set<string>();
  for (const slice of slices.items) {
    for (const endpoint of slice.endpoints ?? []) if (endpoint.conditions?.ready ?? true) ready.add(endpoint.targetRef?.uid ?? endpoint.addresses.join(','));
  }
  return ready.size;
}

async function webhookServices(clients: Clients, webhook: Observed<V1MutatingWebhookConfiguration>): Promise<WebhookServiceFacts[]> {
  if (webhook.state !== 'found') return [];
  const refs = new Map<string, { namespace: string; name: string }>();
  for (const w of webhook.value.webhooks ?? []) {
    const ref = w.clientConfig.service;
    if (ref) refs.set(`${ref.namespace}/${ref.name}`, { namespace: ref.namespace, name: ref.name });
  }
  return Promise.all(
    [...refs.values()].map(async ({ namespace, name }) => ({
      namespace,
      name,
      service: await observe(() => clients.core.readNamespacedService({ name, namespace }), `get on services/${name} in ${namespace}`),
      readyEndpoints: await observe(() => readyEndpoints(clients, namespace, name), `list on endpointslices (discovery.k8s.io) in ${namespace}`),
    })),
  );
}

async function readSignIn(core: CoreV1Api, config: InjectorConfig, namespace: V1Namespace): Promise<SignInFacts> {
  const { name, namedByNamespace } = installationConfigName(config, namespace);
  const secret = await observe(() => core.readNamespacedSecret({ name, namespace: config.namespace }), `get on secrets/${name} in ${config.namespace}`);
  return { name, namedByNamespace, secret, ...(secret.state === 'found' ? { problems: await installationConfigProblems(config, namespace, secret.value) } : {}) };
}

export async function readFacts(kubeconfig: KubeConfig, config: InjectorConfig, target: DoctorTarget, now = new Date()): Promise<DoctorFacts> {
  const core = kubeconfig.makeApiClient(CoreV1Api);
  const reader = kubeApiOf(kubeconfig);
  const clients: Clients = { core, discovery: kubeconfig.makeApiClient(DiscoveryV1Api), authorization: kubeconfig.makeApiClient(AuthorizationV1Api) };
  const installation = installationOf(config);
  const { namespace } = target;
  const selector = installation.provisionSelector;
  const refused = neverInjected(namespace, installation.namespace);
  const [ns, refusals, inProvisionSelector, serviceAccount, configMap, servingSecret, readiness, webhook, access, pod] = await Promise.all([
    observe(() => core.readNamespace({ name: namespace }), `get on namespaces/${namespace}`),
    refused
      ? observe(
          async () =>
            (await core.listNamespacedEvent({ namespace: NAMESPACE_EVENTS_NAMESPACE, fieldSelector: `involvedObject.kind=Namespace,involvedObject.name=${namespace},reason=${REFUSED_REASON}` })).items,
          `list on events in ${NAMESPACE_EVENTS_NAMESPACE}`,
        )
      : undefined,
    selector ? observe(async () => (await core.listNamespace({ labelSelector: selector, fieldSelector: `metadata.name=${namespace}` })).items.length > 0, 'list on namespaces') : undefined,
    observe(() => core.readNamespacedServiceAccount({ name: installation.serviceAccount, namespace }), `get on serviceaccounts in ${namespace}`),
    observe(() => core.readNamespacedConfigMap({ name: installation.caConfigMap, namespace }), `get on configmaps in ${namespace}`),
    observe(() => core.readNamespacedSecret({ name: installation.servingSecret, namespace }), `get on secrets/${installation.servingSecret} in ${namespace}`),
    observe(
      () => checkProvisioning(reader, provisioningNames(config), namespace, now),
      `get on what the injector's readiness check reads (the namespace, its serviceaccounts, configmaps and secrets, clusterroles, clusterrolebindings)`,
    ),
    observe(() => kubeconfig.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: installation.webhookConfiguration }), 'get on mutatingwebhookconfigurations'),
    observe(() => askAll(clients, namespace, installation.serviceAccount), 'create on subjectaccessreviews (authorization.k8s.io)'),
    target.pod !== undefined ? observe(() => core.readNamespacedPod({ name: target.pod!, namespace }), `get on pods in ${namespace}`) : undefined,
  ]).finally(() => reader.close());
  const signIn = ns.state === 'found' && !refused ? await readSignIn(core, config, ns.value) : undefined;
  return {
    now,
    namespaceName: namespace,
    ...(signIn ? { signIn } : {}),
    installation,
    namespace: ns,
    ...(refusals ? { refusals } : {}),
    ...(inProvisionSelector ? { inProvisionSelector } : {}),
    serviceAccount,
    configMap,
    servingSecret,
    readiness,
    webhook,
    webhookServices: await webhookServices(clients, webhook),
    access,
    ...(pod && target.pod !== undefined ? { pod: { name: target.pod, pod } } : {}),
  };
}
