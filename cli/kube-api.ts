// The injector's own client (lib/kube-api) over the person's kubeconfig as kubectl reads it
// (client-node's KubeConfig: merged files, --context, auth providers): for the injector's code the
// CLI runs, which takes that client.
import { readFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApi } from '../lib/kube-api/client.js';
import type { KubeConnection, RequestCredentials, ServerVerification } from '../lib/kube-api/connection.js';

function verificationOf(kubeconfig: KubeConfig): ServerVerification {
  const cluster = kubeconfig.getCurrentCluster()!;
  const ca = cluster.caData ? Buffer.from(cluster.caData, 'base64') : cluster.caFile ? readFileSync(cluster.caFile) : undefined;
  return { ...(ca ? { ca } : {}), ...(cluster.tlsServerName ? { servername: cluster.tlsServerName } : {}), ...(cluster.skipTLSVerify ? { rejectUnauthorized: false } : {}) };
}

/** What client-node would send: its Authorization header (whatever the user's kind) and client certificate. */
async function credentialsOf(kubeconfig: KubeConfig): Promise<RequestCredentials> {
  const options: RequestOptions = {};
  await kubeconfig.applyToHTTPSOptions(options);
  const headers = Object.fromEntries(Object.entries(options.headers ?? {}).map(([name, value]) => [name.toLowerCase(), String(value)]));
  const pem = (value: RequestOptions['cert']) => (value === undefined ? undefined : Buffer.from(value as string | Buffer));
  const [cert, key] = [pem(options.cert), pem(options.key as RequestOptions['cert'])];
  return { headers, ...(cert && key ? { cert, key } : {}) };
}

export function kubeApiOf(kubeconfig: KubeConfig): KubeApi {
  const cluster = kubeconfig.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current context with a cluster: pass --context');
  const verification = verificationOf(kubeconfig);
  const connection: KubeConnection = {
    server: cluster.server,
    source: `the kubeconfig's cluster ${cluster.name}`,
    verification: () => verification,
    credentials: () => credentialsOf(kubeconfig),
    rejected: () => undefined,
    close: () => undefined,
  };
  return new KubeApi(connection);
}
