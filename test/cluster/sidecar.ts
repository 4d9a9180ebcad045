// A sidecar set up as an injected pod would have it, against the local control plane: a scoped
// service account bound to the shipped impersonator role, a TokenRequest token, an identity CA and a
// serving CA of its own.
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import type { V1ClusterRole } from '@kubernetes/client-node';
import { createCA, issueCertificate, type CertificateAndKey, type CertificateRequest } from '../../lib/pki.js';
import { createLogger } from '../../lib/log.js';
import { loadSidecarConfig } from '../../sidecar/config.js';
import { startSidecar, type RunningSidecar } from '../../sidecar/sidecar.js';
import { kubeconfigYaml, type ControlPlane } from './control-plane.js';
import { createNamespace, createServiceAccount, mintServiceAccountToken, serviceAccountSubject, type AdminClients } from './kube.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const IMPERSONATOR_ROLE_FILE = path.join(REPO, 'manifests/base/impersonator-clusterrole.yaml');

export interface TestSidecar {
  url: string;
  port: number;
  dir: string;
  /** The namespace of the scoped service account. */
  namespace: string;
  serviceAccount: string;
  /** system:serviceaccount:<namespace>:<name>, as the API server's audit log names it. */
  serviceAccountUsername: string;
  bindingName: string;
  identityCa: CertificateAndKey;
  servingCa: CertificateAndKey;
  servingCert: CertificateAndKey;
  tokenFile: string;
  /** A client certificate from the identity CA (or another CA, to test refusal). */
  clientCert(username: string, groups?: string[], overrides?: Partial<CertificateRequest>, ca?: CertificateAndKey): CertificateAndKey;
  /** A kubeconfig that reaches the API server through this sidecar as that person. */
  kubeconfigFor(username: string, groups?: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTPS request with full control over headers (repeated, any letter case). */
export function rawRequest(
  url: string,
  options: { method?: string; headers?: OutgoingHttpHeaders; ca: string; cert?: CertificateAndKey; body?: string },
): Promise<RawResponse> {
  // Not new URL(): it would resolve dot segments and drop fragments, and tests need to send those.
  const match = /^https:\/\/([^/:]+):(\d+)(\/.*)?$/.exec(url);
  if (!match) throw new Error(`rawRequest needs https://host:port/path, not ${url}`);
  const requestOptions: RequestOptions = {
    method: options.method ?? 'GET',
    host: match[1],
    port: Number(match[2]),
    path: match[3] ?? '/',
    ca: options.ca,
    headers: options.headers ?? {},
    agent: false,
    ...(options.cert ? { cert: options.cert.certPem, key: options.cert.keyPem } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = request(requestOptions, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export async function ensureImpersonatorRole(clients: AdminClients): Promise<string> {
  const role = YAML.parse(await readFile(IMPERSONATOR_ROLE_FILE, 'utf8')) as V1ClusterRole;
  const name = role.metadata!.name!;
  try {
    await clients.rbac.readClusterRole({ name });
  } catch {
    await clients.rbac.createClusterRole({ body: role });
  }
  return name;
}

export interface TestSidecarOptions {
  /** Extra sidecar flags, e.g. ['--anonymous']. */
  flags?: string[];
}

export async function startTestSidecar(cp: ControlPlane, clients: AdminClients, options: TestSidecarOptions = {}): Promise<TestSidecar> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-sidecar-'));
  const file = (name: string) => path.join(dir, name);
  const namespace = await createNamespace(clients, 'chaperone');
  const serviceAccount = 'chaperone-impersonator';
  await createServiceAccount(clients, namespace, serviceAccount);
  const role = await ensureImpersonatorRole(clients);
  const bindingName = `chaperone-impersonator-${namespace}`;
  await clients.rbac.createClusterRoleBinding({
    body: {
      metadata: { name: bindingName },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [serviceAccountSubject(namespace, serviceAccount)],
    },
  });

  const identityCa = createCA({ commonName: 'chaperone-test-identity-ca' });
  const servingCa = createCA({ commonName: 'chaperone-test-serving-ca' });
  const servingCert = issueCertificate(servingCa, { commonName: 'chaperone', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const token = await mintServiceAccountToken(clients, namespace, serviceAccount);
  await Promise.all([
    writeFile(file('tls.crt'), servingCert.certPem),
    writeFile(file('tls.key'), servingCert.keyPem, { mode: 0o600 }),
    writeFile(file('identity-ca.crt'), identityCa.certPem),
    writeFile(file('upstream-ca.crt'), cp.ca.certPem),
    writeFile(file('token'), token, { mode: 0o600 }),
  ]);

  const config = loadSidecarConfig(
    [
      '--listen=127.0.0.1:0',
      `--tls-cert-file=${file('tls.crt')}`,
      `--tls-key-file=${file('tls.key')}`,
      `--client-ca-file=${file('identity-ca.crt')}`,
      `--upstream=${cp.url}`,
      `--upstream-ca-file=${file('upstream-ca.crt')}`,
      `--token-file=${file('token')}`,
      '--log-level=warn',
      ...(options.flags ?? []),
    ],
    {},
  );
  const running: RunningSidecar = await startSidecar(config, createLogger('sidecar', 'warn'));
  const port = running.listening[0]!.port;
  const url = `https://127.0.0.1:${port}`;

  const clientCert: TestSidecar['clientCert'] = (username, groups = [], overrides = {}, ca = identityCa) =>
    issueCertificate(ca, { commonName: username, organizations: groups, usage: 'client', validitySeconds: 3600, ...overrides });

  return {
    url,
    port,
    dir,
    namespace,
    serviceAccount,
    serviceAccountUsername: `system:serviceaccount:${namespace}:${serviceAccount}`,
    bindingName,
    identityCa,
    servingCa,
    servingCert,
    tokenFile: file('token'),
    clientCert,
    kubeconfigFor: async (username, groups = []) => {
      const kubeconfig = file(`${username}.kubeconfig`);
      await writeFile(kubeconfig, kubeconfigYaml(url, servingCa.certPem, username, clientCert(username, groups)), { mode: 0o600 });
      return kubeconfig;
    },
    stop: () => running.stop(),
  };
}
