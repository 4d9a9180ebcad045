import { bool, defineSpec, duration, hostPort, httpsUrl, int, list, loadConfig, oneOf, option, path, str } from '../lib/config.js';
import type { ConfigOf, Env } from '../lib/config.js';

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
      description: 'A second TLS listener, for tools that connect from outside the pod.',
      example: '10.244.1.7:6443',
    }),
    tlsCertFile: option(path(), { required: true, description: 'The serving certificate (PEM, with its chain); reloaded when it changes.' }),
    tlsKeyFile: option(path(), { required: true, description: "The serving certificate's private key (PEM); reloaded when it changes." }),
    clientCaFile: option(path(), {
      description: 'The identity CA bundle that client certificates must chain to; without it, client certificates are not accepted.',
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
    anonymous: option(bool(), { default: false, description: 'Let requests without credentials through as system:anonymous instead of refusing them.' }),
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
      description: 'How long a request to the API server may take; watches, exec, attach and port-forward are exempt.',
    }),
    opsListen: option(hostPort(), { default: ':9901', description: 'The plain-HTTP listener for /healthz, /readyz and /metrics.' }),
    logLevel: option(oneOf(['trace', 'debug', 'info', 'warn', 'error']), { default: 'info', description: 'The least severe log level written.' }),
    podName: option(str(), { description: 'The name of the pod served, recorded in audit events.', example: '$(POD_NAME)' }),
    podNamespace: option(str(), { description: 'The namespace of the pod served, recorded in audit events.', example: '$(POD_NAMESPACE)' }),
  },
});

export type SidecarConfig = ConfigOf<typeof sidecarConfigSpec>;

/** Throws ConfigError naming every problem, or HelpRequested for --help. */
export function loadSidecarConfig(argv: readonly string[], env: Env): SidecarConfig {
  return loadConfig(sidecarConfigSpec, { argv, env });
}
