import { bool, defineSpec, duration, hostPort, httpsUrl, int, list, loadConfig, oneOf, option, path, str } from '../config.js';
import { ConfigError, type ConfigOf, type Env, type LoadInput, type ValueType } from '../config.js';
import * as z from 'zod';
import { tokenAuthenticationProblems } from './tokens.js';
import { auditConfigProblems, auditOptions } from './audit.js';
import { revocationProblems } from './revocation.js';

const DNS_LABEL = '[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?';
const NAMESPACED_NAME = new RegExp(`^${DNS_LABEL}/[a-z0-9](?:[-.a-z0-9]{0,251}[a-z0-9])?$`);

function namespacedNameSchema() {
  const error = 'is not <namespace>/<name> (example: chaperone-system/chaperone-sidecar-config)';
  return z.string({ error }).regex(NAMESPACED_NAME, { error });
}

/** An object's namespace and name, as kubectl writes them: <namespace>/<name>. */
function namespacedName(): ValueType<ReturnType<typeof namespacedNameSchema>> {
  return { name: 'namespace/name', placeholder: 'namespace/name', schema: namespacedNameSchema(), list: false, standalone: false, fromText: (text) => text };
}

/** The API server as client-go's in-cluster config finds it. */
function inClusterApiServer(env: Env): string | undefined {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) return undefined;
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export const sidecarConfigSpec = defineSpec({
  command: 'chaperone-sidecar',
  summary: 'The chaperone auth proxy: authenticates each person, asks the API server, and forwards with impersonation.',
  options: {
    listen: option(hostPort(), { default: '127.0.0.1:6443', description: "The proxy's TLS listener, where the dashboard in the pod connects." }),
    extraListen: option(hostPort(), {
      description:
        'A second TLS listener, for tools that connect from outside the pod, with the same serving certificate and the same authentication. In an installation configuration, :<port>: the injector passes it to every pod it injects and declares the port (docs/listeners.md).',
      example: '10.244.1.7:6443',
    }),
    extraListenServices: option(list(), {
      default: [],
      description:
        "In an installation configuration, with extraListen: the Services of the pod's namespace that reach the extra listener; the injector issues the namespace's serving certificate for <service>.<namespace>.svc and <service>.<namespace>.svc.cluster.local of each (docs/listeners.md). The sidecar itself does not read it.",
      example: 'dashboard-api',
    }),
    tlsCertFile: option(path(), { required: true, description: 'The serving certificate (PEM, with its chain); reloaded when it changes.' }),
    tlsKeyFile: option(path(), { required: true, description: "The serving certificate's private key (PEM); reloaded when it changes." }),
    clientCaFile: option(path(), {
      description: 'The identity CA bundle: a client certificate must be issued directly by one of its CAs (checked at every request, against the file as it is now); without it, client certificates are not accepted.',
    }),
    clientCertificateRevocations: option(list(), {
      default: [],
      description:
        'Client certificates refused although the identity CA issued them: serial:<hex> for one certificate, user:<name> until <RFC 3339 time> (or for good without until) for every certificate of a username (written by `chaperone revoke`; lib/sidecar-config/revocation.ts).',
      example: 'serial:5f1c0a,user:mallory until 2026-12-14T09:00:00Z',
    }),
    upstream: option(httpsUrl(), {
      defaultFrom: {
        fromEnv: inClusterApiServer,
        text: 'https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT',
        unavailable: 'KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is unset',
      },
      description: 'The API server to forward to.',
    }),
    upstreamCaFile: option(path(), {
      default: '/var/run/secrets/chaperone/upstream/ca.crt',
      description: "The CA bundle that verifies the API server's certificate.",
    }),
    tokenFile: option(path(), {
      default: '/var/run/secrets/chaperone/upstream/token',
      description: "The scoped service account's token, sent to the API server; re-read when it changes.",
    }),
    installationConfig: option(namespacedName(), {
      description:
        "The installation's sidecar configuration: a Secret (<namespace>/<name>), in a namespace only cluster administrators can write, holding sidecar.yaml (sign-in options, the guard lists and the audit options, keyed as in the config file) and the files it names. Read from the API server with the service-account token before serving, and followed: a change applies to new requests without a restart. The injector passes it to every sidecar; not together with --config.",
      example: 'chaperone-system/chaperone-sidecar-config',
    }),
    installationConfigDir: option(path(), {
      default: '/var/run/chaperone/installation',
      description: "Where the installation configuration's files are written for the sidecar to read (an in-memory volume of the sidecar's own).",
    }),
    anonymous: option(bool(), { default: false, description: 'Let requests without credentials through as system:anonymous instead of refusing them.' }),
    authenticationConfig: option(path(), {
      description:
        "An AuthenticationConfiguration file (apiserver.config.k8s.io/v1) whose jwt list names the OIDC/JWT issuers whose tokens are accepted, read exactly as the API server's --authentication-config; not together with the --oidc-* flags.",
      example: '/etc/chaperone/authentication-config.yaml',
    }),
    oidcIssuerUrl: option(httpsUrl(), { description: "The OpenID issuer whose ID tokens are accepted, as the API server's --oidc-issuer-url; needs --oidc-client-id.", example: 'https://accounts.example.com' }),
    oidcClientId: option(str(), { description: 'The audience (client ID) ID tokens must be issued for, as --oidc-client-id.', example: 'headlamp' }),
    oidcUsernameClaim: option(str(), { default: 'sub', description: 'The claim that names the user, as --oidc-username-claim; with email, email_verified must not be false.' }),
    oidcUsernamePrefix: option(str(), {
      description: 'Put before every username, as --oidc-username-prefix: unset means "<issuer URL>#" unless the username claim is email, and "-" means no prefix.',
      example: 'oidc:',
    }),
    oidcGroupsClaim: option(str(), { description: 'The claim that lists the groups (a string or a list of strings), as --oidc-groups-claim.', example: 'groups' }),
    oidcGroupsPrefix: option(str(), { description: 'Put before every group, as --oidc-groups-prefix.', example: 'oidc:' }),
    oidcRequiredClaim: option(list(), { default: [], description: 'claim=value pairs every ID token must carry, as --oidc-required-claim.', example: 'hd=example.com' }),
    oidcCaFile: option(path(), { description: "The CA bundle that verifies the issuer's certificate, as --oidc-ca-file; the system's roots when unset." }),
    oidcSigningAlgs: option(list(), { default: ['RS256'], description: 'The signing algorithms accepted with the --oidc-* flags, as --oidc-signing-algs (asymmetric ones only).', example: 'RS256,ES256' }),
    authenticationTokenWebhookConfigFile: option(path(), {
      description: "A kubeconfig naming a token webhook (TokenReview, such as pam_hook) and how to reach it, as the API server's --authentication-token-webhook-config-file.",
      example: '/etc/chaperone/token-webhook.kubeconfig',
    }),
    authenticationTokenWebhookVersion: option(oneOf(['v1', 'v1beta1']), { default: 'v1beta1', description: 'The authentication.k8s.io TokenReview version the webhook speaks, as --authentication-token-webhook-version.' }),
    authenticationTokenWebhookCacheAuthorizedTtl: option(duration(), { default: '2m', description: "How long the webhook's acceptance of a token is cached." }),
    authenticationTokenWebhookCacheUnauthorizedTtl: option(duration(), { default: '30s', description: "How long the webhook's refusal of a token is cached." }),
    authenticationTokenWebhookTimeout: option(duration(), { default: '10s', description: 'How long the token webhook may take to answer before the token is refused.' }),
    authenticationTokenWebhookAudiences: option(list(), {
      default: [],
      description: 'Audiences asked of the token webhook; when it names the audiences of a token, one must be among these.',
    }),
    clusterTokenReview: option(bool(), {
      default: false,
      description:
        "Also accept tokens the cluster itself accepts (service-account tokens), judged by its TokenReview API; the scoped service account then needs the cluster-token-review role (docs/authentication.md).",
    }),
    clusterTokenReviewAudiences: option(list(), { default: [], description: "Audiences cluster tokens must be for; empty means the API server's own." }),
    clusterTokenReviewCacheTtl: option(duration(), { default: '10s', description: "How long the cluster's TokenReview answers are cached." }),
    accessPolicyFile: option(path(), {
      description:
        "The namespace's access policy (JSON, written by the injector into the chaperone-ca ConfigMap): the impersonation mode and what people may do at most; re-read when it changes. Without it there is no namespace policy and impersonation is classic.",
      example: '/var/run/secrets/chaperone/policy/access-policy.json',
    }),
    readOnly: option(bool(), { default: false, description: 'Let people only get, list and watch through this sidecar, whatever the namespace policy allows; never exec, attach, port-forward, a proxy, a token or any other stream a GET can open.' }),
    guardAllow: option(list(), {
      default: [],
      description: 'User and group names starting with system: that an identity from outside the cluster may carry although the guard would refuse them.',
      example: 'system:monitoring',
    }),
    guardDeny: option(list(), {
      default: [],
      description: 'More user and group names that are never impersonated, besides those the guard always refuses.',
      example: 'breakglass,root',
    }),
    authzAllowedTtl: option(duration(), { default: '30s', description: 'How long an allowed authorization decision is cached.' }),
    authzDeniedTtl: option(duration(), { default: '10s', description: 'How long a denied authorization decision is cached.' }),
    authzCacheSize: option(int({ min: 1 }), { default: 10000, description: 'How many authorization decisions the cache holds at most.' }),
    upstreamTimeout: option(duration(), {
      default: '60s',
      description: 'How long the API server may take to start answering; watches, logs, exec, attach and port-forward are exempt.',
    }),
    maxRequestBodyBytes: option(int({ min: 1 }), {
      default: 3 * 1024 * 1024,
      description: 'The largest request body forwarded (the API server itself takes 3 MiB); larger ones are refused with 413.',
    }),
    maxHeaderBytes: option(int({ min: 1024 }), {
      default: 64 * 1024,
      description: 'The most bytes of request headers accepted; more is refused with 431.',
    }),
    headersTimeout: option(duration(), {
      default: '10s',
      description: 'How long a client may take to finish its TLS handshake, and then to send its request headers (protection against slow clients).',
    }),
    http2: option(bool(), {
      default: true,
      description:
        'Offer HTTP/2 to clients that ask for it in the TLS handshake (client-go, kubectl and Go dashboards do), as the API server does: many requests and watches on one connection. HTTP/1.1 is served either way, and for exec, attach and port-forward.',
    }),
    http2MaxStreams: option(int({ min: 1 }), {
      default: 250,
      description: 'The most requests (watches included) one HTTP/2 client connection may have open at once; the client queues the rest.',
    }),
    maxUpgrades: option(int({ min: 1 }), {
      default: 100,
      description: 'The most upgraded connections (exec, attach, port-forward) open at once; more are refused with 429.',
    }),
    shutdownTimeout: option(duration(), {
      default: '20s',
      description: 'On SIGTERM, how long requests in flight may take to finish before the process exits; watches end at once.',
    }),
    opsListen: option(hostPort(), { default: ':9901', description: 'The plain-HTTP listener for /healthz, /readyz and /metrics.' }),
    logLevel: option(oneOf(['trace', 'debug', 'info', 'warn', 'error']), { default: 'info', description: 'The least severe log level written.' }),
    podName: option(str(), { description: 'The name of the pod served, recorded in audit events.', example: '$(POD_NAME)' }),
    podNamespace: option(str(), { description: 'The namespace of the pod served, recorded in audit events.', example: '$(POD_NAMESPACE)' }),
    ...auditOptions,
  },
});

export type SidecarConfig = ConfigOf<typeof sidecarConfigSpec>;

/**
 * What an installation configuration (--installation-config) may set: the listener for tools
 * outside the pod (which the injector passes to each pod it creates), how people sign in, which
 * names the guard refuses or lets through, and what is audited where (these applied to running
 * sidecars as they change). The rest is the injector's to pass for each pod (the pod's own listener,
 * what the sidecar trusts and forwards to).
 */
export const INSTALLATION_KEYS = [
  'extraListen',
  'extraListenServices',
  'guardAllow',
  'guardDeny',
  'clientCertificateRevocations',
  'anonymous',
  'authenticationConfig',
  'oidcIssuerUrl',
  'oidcClientId',
  'oidcUsernameClaim',
  'oidcUsernamePrefix',
  'oidcGroupsClaim',
  'oidcGroupsPrefix',
  'oidcRequiredClaim',
  'oidcCaFile',
  'oidcSigningAlgs',
  'authenticationTokenWebhookConfigFile',
  'authenticationTokenWebhookVersion',
  'authenticationTokenWebhookCacheAuthorizedTtl',
  'authenticationTokenWebhookCacheUnauthorizedTtl',
  'authenticationTokenWebhookTimeout',
  'authenticationTokenWebhookAudiences',
  'clusterTokenReview',
  'clusterTokenReviewAudiences',
  'clusterTokenReviewCacheTtl',
  'auditPolicyFile',
  'auditSinks',
  'auditWebhookConfigFile',
  'auditWebhookBatchMaxSize',
  'auditWebhookBatchMaxWait',
  'auditWebhookBufferSize',
  'auditWebhookOverflow',
  'auditWebhookInitialBackoff',
  'auditFlushTimeout',
  'auditBodyLimit',
] as const satisfies readonly (keyof SidecarConfig)[];

/**
 * Throws ConfigError naming every problem, or HelpRequested for --help. installationFile: the
 * installation configuration's sidecar.yaml, read as the config file but limited to INSTALLATION_KEYS.
 */
export function loadSidecarConfig(argv: readonly string[], env: Env, installationFile?: string): SidecarConfig {
  const input: LoadInput = { argv, env };
  if (installationFile !== undefined) {
    input.configFile = installationFile;
    input.fileKeys = { allowed: INSTALLATION_KEYS, why: 'is not an installation setting: the injector sets it for each pod (the installation configuration sets the extra listener, how people sign in, the guard lists and the audit)' };
  }
  const config = loadConfig(sidecarConfigSpec, input);
  const problems = [...tokenAuthenticationProblems(config), ...auditConfigProblems(config), ...revocationProblems(config.clientCertificateRevocations)];
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
