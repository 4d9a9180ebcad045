// The set-up of the suites about the installation configuration: an injector serving the webhook, a
// labelled namespace with one injected dashboard pod whose sidecar runs in this process, alice with
// `view` there and a certificate of the identity CA; and a pod the injector refuses, with why.
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { caSetFromSecret } from '../../injector/certs/ca-secret.js';
import { SECRETS } from '../../injector/provision/names.js';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import type { V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { grantInNamespace, type AdminClients } from '../../local-cluster/kube.js';
import { createInjectedPod, createWebhookConfiguration, startPodSidecar, type InjectorInstallation, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { silentLog } from '../unit/injector/helpers.js';

export interface InjectedDashboard {
  injector: RunningInjector;
  namespace: string;
  pod: V1Pod;
  sidecar: PodSidecar;
  alice: CertificateAndKey;
}

/** The namespace (named after `name`) also holds a ConfigMap `settings` ({theme: dark}) for alice to read. */
export async function startInjectedDashboard(cp: ControlPlane, clients: AdminClients, installation: InjectorInstallation, name: string): Promise<InjectedDashboard> {
  const injector = await startInjector(installation.config(['--listen=127.0.0.1:0', '--webhook-hosts=127.0.0.1']), silentLog);
  await createWebhookConfiguration(installation, [`https://127.0.0.1:${injector.port}/mutate`]);
  const namespace = await installation.createLabelledNamespace(name);
  await grantInNamespace(cp, clients, namespace, 'view', 'alice');
  await clients.core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'settings' }, data: { theme: 'dark' } } });
  const pod = await createInjectedPod(clients, namespace);
  const sidecar = await startPodSidecar(cp, clients, pod);
  const identityCa = caSetFromSecret(await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: installation.namespace })).active;
  const alice = issueCertificate(identityCa, { commonName: 'alice', organizations: ['dev'], usage: 'client', validitySeconds: 900 });
  return { injector, namespace, pod, sidecar, alice };
}

/**
 * Waits until a pod created in the namespace is refused with a message `why` matches (the message as
 * the API server returns it, in JSON: its quotes escaped), and returns the message.
 */
export function podRefusedFor(clients: AdminClients, namespace: string, why: RegExp): Promise<string> {
  return waitFor(
    `the injector to refuse pods for ${why.source}`,
    async () => {
      const body = { metadata: { name: `refused-${Date.now()}` }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } };
      const refused = await clients.core.createNamespacedPod({ namespace, body }).then(
        () => undefined,
        (err: Error & { body?: unknown }) => (typeof err.body === 'string' ? err.body : JSON.stringify(err.body ?? err.message)),
      );
      return refused !== undefined && why.test(refused) ? refused : undefined;
    },
    30_000,
    500,
  );
}
