// The options of the injector's controller (certificates and namespace provisioning). The keys shared
// with injector/config.ts (kubeconfig, namespace, serviceAccount, servingSecret, caConfigMap) are
// its very options, so the two specs merge into one.
import { defineSpec, duration, list, loadConfig, oneOf, option, path, str } from '../lib/config.js';
import type { ConfigOf, Env } from '../lib/config.js';
import { injectorConfigSpec } from './config.js';

const shared = injectorConfigSpec.options;

export const controllerConfigSpec = defineSpec({
  command: 'chaperone-injector',
  summary: "The injector's controller: its own serving certificate, the sidecars' CAs, and the provisioning of labelled namespaces.",
  options: {
    kubeconfig: shared.kubeconfig,
    namespace: shared.namespace,
    serviceAccount: shared.serviceAccount,
    servingSecret: shared.servingSecret,
    caConfigMap: shared.caConfigMap,
    leaderIdentity: option(str(), {
      description: 'How this replica names itself in the Lease; by default its host name (the pod name) and a random suffix.',
      example: '$(POD_NAME)',
    }),
    leaseName: option(str(), { default: 'chaperone-injector', description: 'The Lease (in the injector namespace) that makes one replica at a time the writer.' }),
    leaseDuration: option(duration(), { default: '15s', description: 'How long a leader that stopped renewing keeps the Lease before another replica takes it.' }),
    certificates: option(oneOf(['self-managed', 'cert-manager']), {
      default: 'self-managed',
      description:
        "self-managed: the injector keeps its own CA, serving certificate and the webhook configuration's caBundle; cert-manager: the serving certificate comes from a Secret cert-manager keeps, and cert-manager's cainjector keeps the caBundle.",
    }),
    webhookConfiguration: option(str(), { default: 'chaperone-injector', description: 'The MutatingWebhookConfiguration whose caBundle is kept (or which is annotated for cert-manager).' }),
    webhookService: option(str(), { default: 'chaperone-injector', description: "The Service in front of the injector: its DNS names go into the injector's serving certificate." }),
    webhookHosts: option(list(), {
      default: [],
      description: "More DNS names or IP addresses for the injector's serving certificate, for an API server that reaches it by URL.",
      example: '127.0.0.1,injector.example.com',
    }),
    webhookCertDir: option(path(), {
      description: "A directory where the serving certificate is also written as tls.crt and tls.key, for a server that reads files; kept current.",
      example: '/run/chaperone/tls',
    }),
    certManagerSecret: option(str(), { default: 'chaperone-injector-tls', description: 'cert-manager mode: the Secret (tls.crt, tls.key) of the Certificate cert-manager keeps for the injector.' }),
    certManagerCertificate: option(str(), {
      default: 'chaperone-injector',
      description: "cert-manager mode: the Certificate (in the injector namespace) whose CA cert-manager's cainjector puts in the caBundle.",
    }),
    certificateValidity: option(duration(), {
      default: '720h',
      description: "How long the injector's and the sidecars' serving certificates are valid; each is renewed when a third of its life is left.",
    }),
    caValidity: option(duration(), { default: '87600h', description: 'How long a CA the injector creates is valid; a successor is started when a third of its life is left.' }),
    caPropagationDelay: option(duration(), {
      default: '2m',
      description: 'How long a new CA is trusted before it signs anything: time for the API server, kubelets and dashboards to learn it.',
    }),
    caOverlap: option(duration(), {
      default: '24h',
      description: 'How long a CA stays trusted after its successor took over: longer than any certificate it signed is still in use.',
    }),
    impersonatorRole: option(str(), { default: 'chaperone-impersonator', description: 'The ClusterRole of the scoped service accounts (manifests/base/impersonator-clusterrole.yaml).' }),
    impersonatorBinding: option(str(), {
      default: 'chaperone-impersonator',
      description: "The one ClusterRoleBinding the injector keeps, binding every labelled namespace's scoped service account to the impersonator role.",
    }),
    provisionSelector: option(str(), {
      description: 'A label selector namespaces must also match to be provisioned, besides chaperone.dev/inject=enabled (to split namespaces between installations).',
      example: 'tenant=blue',
    }),
    resyncInterval: option(duration(), { default: '10m', description: 'How often everything is checked again even when nothing was seen to change.' }),
  },
});

export type ControllerConfig = ConfigOf<typeof controllerConfigSpec>;

/** Throws ConfigError naming every problem, or HelpRequested for --help. */
export function loadControllerConfig(argv: readonly string[], env: Env): ControllerConfig {
  return loadConfig(controllerConfigSpec, { argv, env });
}
