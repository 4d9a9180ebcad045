// chaperone kubeconfig: a short-lived client certificate from the identity CA, in a kubeconfig that
// reaches the API server through a sidecar. The CAs come from files when given, else from the
// cluster, read with the person's own kubeconfig: the identity CA from the injector's Secret, the
// serving CA bundle from the dashboard namespace's CA ConfigMap.
import { readFile, writeFile } from 'node:fs/promises';
import { ApiException, CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { certificateInfo, issueCertificate, keyMatchesCertificate, splitPemCertificates, type CertificateAndKey } from '../lib/pki.js';
import { caSetFromSecret } from '../injector/certs/ca-secret.js';
import { INJECT_LABEL } from '../injector/names.js';
import { IDENTITY_CA_KEY, SECRETS, SERVING_CA_KEY } from '../injector/provision/names.js';
import { apiErrorMessage, injectorConfigFrom, loadKubeconfig, namespaceOf, unreachable, type ClusterOptions, type InjectorOptions } from './cluster.js';

export interface PersonKubeconfig {
  user: string;
  groups: string[];
  ttlSeconds: number;
  identityCa: CertificateAndKey;
  /** The sidecar's address, as the person reaches it. */
  server: string;
  /** The CA that signed the sidecar's serving certificate. */
  servingCaPem: string;
}

const MAX_TTL_SECONDS = 7 * 24 * 3600;

/** Refuses what the API server's x509 mapping could not carry faithfully, or a lifetime that is not short. */
export function validatePerson(user: string, groups: string[], ttlSeconds: number): void {
  if (!user.trim()) throw new Error('--user must name a person');
  if (user.startsWith('system:') || groups.some((g) => g.startsWith('system:'))) {
    throw new Error('system: names belong to the cluster; the sidecar refuses them from a certificate (see --guard-allow)');
  }
  if (!(ttlSeconds > 0 && ttlSeconds <= MAX_TTL_SECONDS)) throw new Error(`--ttl must be between 1s and ${MAX_TTL_SECONDS / 3600}h`);
}

/** Refuses an identity CA that could not sign a certificate the sidecar accepts. */
export function checkIdentityCa(ca: CertificateAndKey, now = new Date()): void {
  let info;
  try {
    info = certificateInfo(ca.certPem);
  } catch {
    throw new Error('the identity CA certificate is not a PEM certificate');
  }
  if (!info.isCA) throw new Error('the identity CA certificate is not a CA certificate');
  if (!keyMatchesCertificate(ca.certPem, ca.keyPem)) throw new Error('the identity CA key does not belong to the identity CA certificate');
  if (info.notAfter <= now) throw new Error(`the identity CA expired at ${info.notAfter.toISOString()}`);
}

export function personKubeconfig(request: PersonKubeconfig): string {
  validatePerson(request.user, request.groups, request.ttlSeconds);
  checkIdentityCa(request.identityCa);
  const cert = issueCertificate(request.identityCa, {
    commonName: request.user,
    organizations: request.groups,
    usage: 'client',
    validitySeconds: request.ttlSeconds,
  });
  return kubeconfigYaml(request.server, request.servingCaPem, request.user, cert);
}

export interface KubeconfigCommandOptions extends ClusterOptions, InjectorOptions {
  user: string;
  group: string[];
  ttlSeconds: number;
  server: string;
  identityCaCert?: string;
  identityCaKey?: string;
  servingCa?: string;
  /** The dashboard's namespace, whose CA ConfigMap holds the serving CA bundle. */
  namespace?: string;
  output?: string;
}

/** The identity CA files, when given; both or neither. */
export function identityCaFiles(options: Pick<KubeconfigCommandOptions, 'identityCaCert' | 'identityCaKey'>): { cert: string; key: string } | undefined {
  const { identityCaCert: cert, identityCaKey: key } = options;
  if ((cert === undefined) !== (key === undefined)) {
    throw new Error('--identity-ca-cert and --identity-ca-key go together: give both, or neither to read the identity CA from the cluster');
  }
  return cert !== undefined && key !== undefined ? { cert, key } : undefined;
}

interface Cluster {
  kubeconfig: KubeConfig;
  core: CoreV1Api;
}

/** A read whose failure says what it means to the person: not there, not allowed, or no cluster at all. */
async function read<T>(cluster: Cluster, what: string, request: () => Promise<T>, whenAbsent: string, need: string, instead: string): Promise<T> {
  try {
    return await request();
  } catch (err) {
    if (!(err instanceof ApiException)) throw unreachable(cluster.kubeconfig, err);
    if (err.code === 404) throw new Error(`${what} does not exist: ${whenAbsent}; or ${instead}`);
    throw new Error(`cannot read ${what}: ${apiErrorMessage(err, need)}; or ${instead}`);
  }
}

async function identityCaFromCluster(cluster: Cluster, namespace: string): Promise<CertificateAndKey> {
  const name = SECRETS.identityCa;
  const secret = await read(
    cluster,
    `Secret ${namespace}/${name}`,
    () => cluster.core.readNamespacedSecret({ name, namespace }),
    `is the injector installed in ${namespace} (--injector-namespace)? It creates the identity CA when it first starts`,
    `get on secrets/${name} in ${namespace}`,
    'pass --identity-ca-cert and --identity-ca-key',
  );
  return caSetFromSecret(secret).active;
}

async function caConfigMapFromCluster(cluster: Cluster, namespace: string, name: string): Promise<V1ConfigMap> {
  return read(
    cluster,
    `ConfigMap ${namespace}/${name}`,
    () => cluster.core.readNamespacedConfigMap({ name, namespace }),
    `is namespace ${namespace} labelled ${INJECT_LABEL}=enabled and provisioned? (chaperone doctor --namespace ${namespace} says)`,
    `get on configmaps/${name} in ${namespace}`,
    'pass --serving-ca',
  );
}

function trusts(bundle: string | undefined, caPem: string): boolean {
  const fingerprint = (pem: string) => {
    try {
      return certificateInfo(pem).sha256;
    } catch {
      return undefined;
    }
  };
  const wanted = fingerprint(caPem);
  return wanted !== undefined && splitPemCertificates(bundle ?? '').some((pem) => fingerprint(pem) === wanted);
}

interface Cas {
  identityCa: CertificateAndKey;
  servingCaPem: string;
  /** Said on standard error: nothing wrong with the command, but the kubeconfig may not work yet. */
  warnings: string[];
}

export async function resolveCas(options: KubeconfigCommandOptions): Promise<Cas> {
  const files = identityCaFiles(options);
  const injector = injectorConfigFrom(options);
  let cluster: Cluster | undefined;
  const connect = (): Cluster => {
    if (!cluster) {
      const kubeconfig = loadKubeconfig(options);
      cluster = { kubeconfig, core: kubeconfig.makeApiClient(CoreV1Api) };
    }
    return cluster;
  };
  const identityCa = files
    ? { certPem: await readFile(files.cert, 'utf8'), keyPem: await readFile(files.key, 'utf8') }
    : await identityCaFromCluster(connect(), injector.namespace);
  if (options.servingCa !== undefined) return { identityCa, servingCaPem: await readFile(options.servingCa, 'utf8'), warnings: [] };

  const namespace = namespaceOf(options.namespace, connect().kubeconfig);
  const configMap = await caConfigMapFromCluster(connect(), namespace, injector.caConfigMap);
  const where = `ConfigMap ${namespace}/${injector.caConfigMap}`;
  const servingCaPem = configMap.data?.[SERVING_CA_KEY];
  if (!servingCaPem) throw new Error(`${where} has no ${SERVING_CA_KEY}: the injector has not provisioned ${namespace} yet (chaperone doctor --namespace ${namespace} says why)`);
  const warnings = trusts(configMap.data?.[IDENTITY_CA_KEY], identityCa.certPem)
    ? []
    : [`the sidecars in ${namespace} do not trust this identity CA (${where}, ${IDENTITY_CA_KEY}): they will refuse this certificate until they do`];
  return { identityCa, servingCaPem, warnings };
}

export async function runKubeconfig(options: KubeconfigCommandOptions): Promise<void> {
  const { identityCa, servingCaPem, warnings } = await resolveCas(options);
  const yaml = personKubeconfig({ user: options.user, groups: options.group, ttlSeconds: options.ttlSeconds, identityCa, server: options.server, servingCaPem });
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  if (options.output) {
    await writeFile(options.output, yaml, { mode: 0o600 });
    process.stderr.write(`wrote ${options.output}: ${options.user} (${options.group.join(', ') || 'no groups'}), valid for ${options.ttlSeconds}s\n`);
  } else {
    process.stdout.write(yaml);
  }
}
