// Kubeconfig files, as kubectl and client-go read them.
import YAML from 'yaml';

export type KubeconfigCredentials = { certPem: string; keyPem: string } | { token: string };

/** A kubeconfig with one cluster, one user and one context, credentials embedded. */
export function kubeconfigYaml(server: string, caPem: string, user: string, client: KubeconfigCredentials, cluster = 'chaperone'): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const credentials =
    'token' in client
      ? { token: client.token }
      : { 'client-certificate-data': b64(client.certPem), 'client-key-data': b64(client.keyPem) };
  return YAML.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: [{ name: user, user: credentials }],
    contexts: [{ name: user, context: { cluster, user } }],
    'current-context': user,
  });
}
