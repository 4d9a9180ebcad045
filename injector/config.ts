import * as z from 'zod';
import { bool, defineSpec, duration, hostPort, httpsUrl, list, loadConfig, oneOf, option, path, str } from '../lib/config.js';
import type { ConfigOf, Env, ValueType } from '../lib/config.js';
import { canonicalQuantity, quantityNano } from './quantity.js';
import { VERSION } from '../lib/version.js';

export const AUTHENTICATORS = ['client-cert', 'oidc', 'cluster-token-review', 'anonymous'] as const;
export type AuthenticatorName = (typeof AUTHENTICATORS)[number];

function authenticatorsSchema() {
  const error = `is not a list of authenticators (${AUTHENTICATORS.join(', ')})`;
  return z
    .array(z.enum(AUTHENTICATORS, { error: `is not one of ${AUTHENTICATORS.join(', ')}` }), { error })
    .min(1, { error: 'must name at least one authenticator' })
    .refine((names) => new Set(names).size === names.length, { error: 'names an authenticator twice' });
}

/** The sidecar's authentication methods, a comma-separated list. */
export function authenticators(): ValueType<ReturnType<typeof authenticatorsSchema>> {
  return {
    name: `list of ${AUTHENTICATORS.map((name) => `\`${name}\``).join(', ')}`,
    placeholder: 'a,b,...',
    schema: authenticatorsSchema(),
    list: true,
    standalone: false,
    fromText: (text) => text.split(',').map((item) => item.trim()).filter((item) => item !== ''),
  };
}

function quantitySchema(least?: { quantity: string; because: string }) {
  const error = 'is not a resource quantity (examples: 100m, 0.5, 64Mi, 1Gi)';
  return z.string({ error }).transform((text, ctx) => {
    const canonical = canonicalQuantity(text);
    if (canonical === undefined) {
      ctx.issues.push({ code: 'custom', message: error, input: text });
      return z.NEVER;
    }
    if (least && quantityNano(canonical)! < quantityNano(least.quantity)!) {
      ctx.issues.push({ code: 'custom', message: `is less than ${least.quantity}: ${least.because}`, input: text });
      return z.NEVER;
    }
    return canonical;
  });
}

/** A Kubernetes resource quantity, at least `least` if given; the loaded value is the API server's canonical spelling of it. */
export function quantity(least?: { quantity: string; because: string }): ValueType<ReturnType<typeof quantitySchema>> {
  return {
    name: least ? `resource quantity, at least ${least.quantity}` : 'resource quantity',
    placeholder: 'quantity',
    schema: quantitySchema(least),
    list: false,
    standalone: false,
    fromText: (text) => text,
  };
}

/**
 * The least memory limit a sidecar can work in: Node.js and the sidecar take about 90 MiB resident
 * idle, and the image gives V8 half the limit for its heap (docs/sizing.md).
 */
const LEAST_MEMORY_LIMIT = { quantity: '128Mi', because: "the sidecar takes about 90 MiB idle, and V8's heap is half the limit (docs/sizing.md)" };

const COMPONENT = '[a-z0-9]+(?:[._-]+[a-z0-9]+)*';
/** registry[:port]/path[:tag][@sha256:digest], as a container runtime parses it. */
const IMAGE = new RegExp(`^${COMPONENT}(?::\\d+)?(?:/${COMPONENT})*(?::\\w[\\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`);

function imageSchema() {
  const error = 'is not an image reference (example: ghcr.io/chaperone-dev/chaperone-sidecar:v0.1.0)';
  return z.string({ error }).regex(IMAGE, { error });
}

export function image(): ValueType<ReturnType<typeof imageSchema>> {
  return { name: 'image reference', placeholder: 'image', schema: imageSchema(), list: false, standalone: false, fromText: (text) => text };
}

/** The sidecar image's repository, as manifests/base and the Helm chart name it. */
export const SIDECAR_REPOSITORY = 'ghcr.io/chaperone-dev/chaperone-sidecar';
/** The sidecar of this release: its image is tagged v<package.json's version>, as the release builds it (docs/images.md). */
export const DEFAULT_SIDECAR_IMAGE = `${SIDECAR_REPOSITORY}:v${VERSION}`;

export const injectorConfigSpec = defineSpec({
  command: 'chaperone-injector',
  summary: 'The chaperone admission webhook: adds the auth-proxy sidecar to pods in labelled namespaces and takes the dashboard\'s own token away.',
  options: {
    listen: option(hostPort(), { default: ':8443', description: 'The HTTPS listener the API server calls (POST /mutate), and GET /healthz and /metrics.' }),
    tlsCertFile: option(path(), {
      description: "The webhook's serving certificate (PEM, with its chain), reloaded when it changes; without it (and --tls-key-file), the certificate the controller keeps.",
    }),
    tlsKeyFile: option(path(), { description: "The serving certificate's private key (PEM), reloaded when it changes; only with --tls-cert-file." }),
    kubeconfig: option(path(), {
      description:
        "A kubeconfig to reach the API server with; without it, the pod's in-cluster service account (its token read again when the kubelet rotates it). Read as kube-apiserver reads a webhook kubeconfig: the current context's server and CA, and a token, tokenFile (read again when it changes), client certificate or exec plugin; auth-provider, impersonation (as, as-groups...) and proxy-url are refused.",
    }),
    namespace: option(str(), {
      default: 'chaperone-system',
      description: 'The namespace the injector runs in; its pods are never injected.',
    }),
    logLevel: option(oneOf(['trace', 'debug', 'info', 'warn', 'error']), { default: 'info', description: "The injector's least severe log level written." }),
    serviceAccount: option(str(), {
      default: 'chaperone-impersonator',
      description: 'The scoped service account injected pods run as, one per labelled namespace.',
    }),
    servingSecret: option(str(), {
      default: 'chaperone-serving',
      description: "The Secret (tls.crt, tls.key) in each labelled namespace holding the sidecar's serving certificate.",
    }),
    caConfigMap: option(str(), {
      default: 'chaperone-ca',
      description: 'The ConfigMap in each labelled namespace holding serving-ca.crt (what the dashboard trusts), identity-ca.crt (what signs people\'s certificates) and upstream-ca.crt (the cluster\'s CA, what the sidecar verifies the API server with).',
    }),
    tokenAudience: option(str(), {
      description: "The audience of the sidecar's service-account token; without it, the API server's own.",
      example: 'https://kubernetes.default.svc.cluster.local',
    }),
    tokenExpiration: option(duration(), {
      default: '1h',
      description: "How long the sidecar's service-account token lives; the kubelet renews it well before.",
    }),
    sidecarUpstream: option(httpsUrl(), {
      description:
        "The API server the sidecars forward to, passed as their --upstream; by default the injector's own (its kubeconfig's server, in a cluster https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT as the injector's pod sees them). Pinned so that a Service named kubernetes in a labelled namespace, which the kubelet would turn into the sidecar's KUBERNETES_SERVICE_HOST, cannot redirect it.",
      example: 'https://10.96.0.1:443',
    }),
    sidecarImage: option(image(), {
      default: DEFAULT_SIDECAR_IMAGE,
      description: "The sidecar's image, unless the namespace's chaperone.dev/image annotation says otherwise (a pod cannot: the sidecar holds the scoped token). It must be an image of --allowed-images, or the injector does not start.",
    }),
    allowedImages: option(list(), {
      default: [SIDECAR_REPOSITORY],
      description: "The image repositories a namespace's chaperone.dev/image annotation may name (any tag or digest of them): the sidecar holds the scoped token, so it does not run just any image. Any tag includes releases before a security fix: list only repositories whose every tag you would let hold the token, and pin the version with --sidecar-image or the Namespace annotation.",
    }),
    trustedCsiDrivers: option(list(), {
      default: [],
      description:
        "CSI drivers trusted with tokens of the scoped service account: pods the injector injects may have claims (persistentVolumeClaim, generic ephemeral volumes) although these drivers' CSIDriver objects request tokens the API server accepts (rule csi-claim-in-scoped-pod, docs/security-model.md). Name only drivers that keep such a token on the node and hand it to nobody: it can impersonate people.",
      example: 'ebs.csi.aws.com',
    }),
    sidecarMode: option(oneOf(['native', 'classic']), {
      default: 'native',
      description: 'native: an init container with restartPolicy Always, started and ready before the dashboard; classic: an ordinary container, for clusters without native sidecars.',
    }),
    authenticators: option(authenticators(), { default: ['client-cert'], description: "How the sidecar authenticates people, unless the namespace's chaperone.dev/authenticators annotation says otherwise (a pod cannot)." }),
    sidecarConfig: option(str(), {
      default: 'chaperone-sidecar-config',
      description:
        "The Secret in the injector's namespace holding the installation's sidecar configuration (sidecar.yaml and the files it names: how people sign in, the guard lists, what is audited where), unless the namespace's chaperone.dev/sidecar-config annotation names another there (a pod cannot). Validated before a pod gets it; the sidecars read it from the API server and follow its changes. While the default one does not exist, sidecars use the injector's flags alone.",
    }),
    oidcIssuerUrl: option(httpsUrl(), { description: "The OpenID issuer the sidecar trusts, when the oidc authenticator is on, unless the namespace's chaperone.dev/oidc-issuer-url annotation says otherwise (a pod cannot).", example: 'https://accounts.example.com' }),
    oidcClientId: option(str(), { description: "The client ID OIDC tokens must be issued for, when the oidc authenticator is on, unless the namespace's chaperone.dev/oidc-client-id annotation says otherwise (a pod cannot).", example: 'headlamp' }),
    readOnly: option(bool(), { default: false, description: "Let people only read through the sidecar (get, list, watch; never exec, attach, port-forward, a proxy, a token or any other stream a GET can open); a pod's chaperone.dev/read-only may turn it on, never off." }),
    sidecarLogLevel: option(oneOf(['trace', 'debug', 'info', 'warn', 'error']), { default: 'info', description: "The sidecar's least severe log level." }),
    cpuRequest: option(quantity(), { default: '50m', description: "The sidecar's CPU request." }),
    cpuLimit: option(quantity(), { default: '500m', description: "The sidecar's CPU limit." }),
    memoryRequest: option(quantity(), { default: '128Mi', description: "The sidecar's memory request: about what it uses after some load (docs/sizing.md)." }),
    memoryLimit: option(quantity(LEAST_MEMORY_LIMIT), {
      default: '256Mi',
      description: "The sidecar's memory limit. The sidecar image gives V8 half of it for its heap (Node.js reads the limit from the container's cgroup), so the two always agree; docs/sizing.md says what to give it.",
    }),
    // The controller's (certificates and namespace provisioning), listed in docs/operations.md.
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
    impersonatorRole: option(str(), {
      default: 'chaperone-impersonator',
      description: "The prefix of each labelled namespace's impersonator ClusterRole and ClusterRoleBinding, named <prefix>:<namespace> and generated from the namespace's access policy.",
    }),
    impersonationMode: option(oneOf(['auto', 'constrained', 'classic']), {
      default: 'auto',
      description:
        'constrained: the impersonator roles hold only constrained-impersonation verbs (KEP-5284), so the API server itself limits what the scoped token can do; classic: the impersonate verb, for clusters without it; auto: constrained when the API server honours it (probed at start).',
    }),
    impersonationGroups: option(list(), {
      default: [],
      description: 'The only groups the scoped service accounts may impersonate (besides system:authenticated); empty: any group but system:masters. Needed for least privilege in classic mode.',
      example: 'dev,ops',
    }),
    impersonationExtras: option(list(), {
      default: [],
      description:
        "User-extra keys the sidecars may send besides chaperone's own (chaperone.dev/original-user-info, authentication.kubernetes.io/credential-id): those an AuthenticationConfiguration's claimMappings.extra or a token webhook adds.",
      example: 'example.com/team',
    }),
    defaultAccess: option(oneOf(['read-only', 'dashboard']), {
      default: 'read-only',
      description:
        "The access policy of a labelled namespace that has no chaperone.dev/access annotation: read-only lets people get, list and watch (no Secrets, exec, attach, port-forward or proxies) whatever their RBAC allows; dashboard also lets them create, change and delete, as far as their RBAC allows, and exec into pods (docs/security-model.md#the-access-policy says what each costs).",
    }),
    provisionSelector: option(str(), {
      description: 'A label selector namespaces must also match to be provisioned, besides chaperone.dev/inject=enabled (to split namespaces between installations).',
      example: 'tenant=blue',
    }),
    resyncInterval: option(duration(), { default: '10m', description: 'How often everything is checked again even when nothing was seen to change.' }),
  },
});

/** The options the controller reads: docs/operations.md lists them (scripts/gen-config-docs.ts). */
export const CONTROLLER_OPTION_KEYS = [
  'kubeconfig',
  'namespace',
  'serviceAccount',
  'servingSecret',
  'caConfigMap',
  'leaderIdentity',
  'leaseName',
  'leaseDuration',
  'certificates',
  'webhookConfiguration',
  'webhookService',
  'webhookHosts',
  'webhookCertDir',
  'certManagerSecret',
  'certManagerCertificate',
  'certificateValidity',
  'caValidity',
  'caPropagationDelay',
  'caOverlap',
  'impersonatorRole',
  'sidecarConfig',
  'impersonationMode',
  'impersonationGroups',
  'impersonationExtras',
  'defaultAccess',
  'provisionSelector',
  'resyncInterval',
] as const satisfies readonly (keyof typeof injectorConfigSpec.options)[];

export type InjectorConfig = ConfigOf<typeof injectorConfigSpec>;

/** Throws ConfigError naming every problem, or HelpRequested for --help. */
export function loadInjectorConfig(argv: readonly string[], env: Env): InjectorConfig {
  return loadConfig(injectorConfigSpec, { argv, env });
}
