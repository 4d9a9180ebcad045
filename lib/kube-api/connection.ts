// Where the injector's API server is and how it is reached: from a kubeconfig file (read by
// lib/webhook-kubeconfig.ts's rules: token, tokenFile, client certificates, exec) or, without one, the
// pod's in-cluster configuration as client-go's rest.InClusterConfig makes it.
import path from 'node:path';
import { loadWebhookKubeconfig, type RequestCredentials } from '../webhook-kubeconfig.js';
import { watchFile, type WatchedFile } from '../watch-file.js';

export type { RequestCredentials } from '../webhook-kubeconfig.js';

/** How the API server is verified. */
export interface ServerVerification {
  ca?: Buffer;
  servername?: string;
  rejectUnauthorized?: boolean;
}

export interface KubeConnection {
  /** The API server's URL as configured (https://host:port, perhaps a path): what the sidecars are pinned to by default. */
  readonly server: string;
  /** The CA file the server is verified with, when the CA comes from a file (it is followed: a rotated CA is used). */
  readonly caFile?: string;
  /** Where the configuration comes from, for messages. */
  readonly source: string;
  /** How the server is verified now (a CA file is read again when it changes). */
  verification(): ServerVerification;
  /** The credentials for the next request (a rotated token file is read again, an exec plugin run when its answer expired). */
  credentials(): Promise<RequestCredentials>;
  /** The server answered 401 to a request sent with these. */
  rejected(used: RequestCredentials): void;
  close(): void;
}

/** The connection a kubeconfig file describes; throws KubeconfigError naming the field it cannot use. */
export function kubeconfigConnection(file: string): KubeConnection {
  const config = loadWebhookKubeconfig(file);
  const { url, tls } = config;
  return {
    server: url.pathname === '/' ? url.origin : `${url.origin}${url.pathname}`,
    ...(config.caFile ? { caFile: config.caFile } : {}),
    source: `the kubeconfig ${file}`,
    verification: () => tls,
    credentials: () => config.credentials(),
    rejected: (used) => config.rejected(used),
    close: () => config.close(),
  };
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** host:port as Go's net.JoinHostPort writes it: an IPv6 address in brackets. */
function joinHostPort(host: string, port: string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The pod's own: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the service account's
 * token (read again when the kubelet rotates it, as client-go's file token source does) and its CA.
 */
export function inClusterConnection(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error('unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined');
  const tokenFile = path.join(dir, 'token');
  const caFile = path.join(dir, 'ca.crt');
  const token: WatchedFile = watchFile(tokenFile);
  // client-go refuses to start without the token; a CA it cannot read it only logs.
  if (!token.current()) {
    token.close();
    throw new Error(`unable to load in-cluster configuration: cannot read the service account token ${tokenFile}`);
  }
  const ca: WatchedFile = watchFile(caFile);
  // A token file missing or empty for a moment (a rotation) leaves the last token in use.
  let bearer = token.current()!.toString('utf8').trim();
  const currentBearer = () => {
    const fresh = token.current()?.toString('utf8').trim();
    if (fresh) bearer = fresh;
    return bearer;
  };
  return {
    server: `https://${joinHostPort(host, port)}`,
    caFile,
    source: 'the in-cluster configuration',
    verification: () => {
      const current = ca.current();
      return current ? { ca: current } : {};
    },
    credentials: () => Promise.resolve({ headers: { authorization: `Bearer ${currentBearer()}` } }),
    rejected: () => undefined,
    close: () => {
      token.close();
      ca.close();
    },
  };
}

/** The connection --kubeconfig names, or the in-cluster one without it. */
export function kubeConnection(kubeconfig: string | undefined): KubeConnection {
  return kubeconfig ? kubeconfigConnection(kubeconfig) : inClusterConnection();
}
