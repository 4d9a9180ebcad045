// chaperone kubeconfig: a short-lived client certificate from the identity CA, in a kubeconfig that
// reaches the API server through a sidecar. The certificate is signed here with the identity CA's
// key (from files, or from the injector's Secret, read with the person's own kubeconfig), or, with
// --request, by the injector's signer chaperone.dev/identity once a CertificateSigningRequest is
// approved: the key is made here and never leaves the machine, and nobody needs the CA's key. The
// serving CA bundle comes from the dashboard namespace's CA ConfigMap unless given.
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiException, CertificatesV1Api, CoreV1Api, type KubeConfig, type V1CertificateSigningRequest, type V1ConfigMap } from '@kubernetes/client-node';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { certificateInfo, createCertificateRequest, isIssuedBy, issueCertificate, keyMatchesCertificate, splitPemCertificates, type CertificateAndKey } from '../lib/pki.js';
import { caSetFromSecret } from '../injector/certs/ca-secret.js';
import { clusterNameProblem, IDENTITY_SIGNER, MAX_CERTIFICATE_SECONDS } from '../injector/certs/signer.js';
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

/** The shortest lifetime the API server lets a CertificateSigningRequest ask for. */
const MIN_REQUEST_TTL_SECONDS = 600;

/** Refuses what the API server's x509 mapping could not carry faithfully, or a lifetime that is not short. */
export function validatePerson(user: string, groups: string[], ttlSeconds: number, minTtlSeconds = 1): void {
  if (!user.trim()) throw new Error('--user must name a person');
  const refused = clusterNameProblem(user, groups);
  if (refused) throw new Error(refused);
  if (!(ttlSeconds >= minTtlSeconds && ttlSeconds <= MAX_CERTIFICATE_SECONDS)) throw new Error(`--ttl must be between ${minTtlSeconds}s and ${MAX_CERTIFICATE_SECONDS / 3600}h`);
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

export function personCertificate(request: Pick<PersonKubeconfig, 'user' | 'groups' | 'ttlSeconds' | 'identityCa'>): CertificateAndKey {
  validatePerson(request.user, request.groups, request.ttlSeconds);
  checkIdentityCa(request.identityCa);
  return issueCertificate(request.identityCa, {
    commonName: request.user,
    organizations: request.groups,
    usage: 'client',
    validitySeconds: request.ttlSeconds,
  });
}

export function personKubeconfig(request: PersonKubeconfig): string {
  return kubeconfigYaml(request.server, request.servingCaPem, request.user, personCertificate(request));
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
  /** Ask the signer chaperone.dev/identity through a CertificateSigningRequest instead of signing here. */
  request?: boolean;
  /** With request: approve it too (needs approve on signers/chaperone.dev/identity). */
  approve?: boolean;
  /** With request: how long to wait for approval and signing. */
  waitSeconds?: number;
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

interface ExplainedRead<T> {
  /** The object, for messages: `Secret ns/name`. */
  what: string;
  request: () => Promise<T>;
  /** Why it may not exist, and what would make it. */
  whenAbsent: string;
  /** The permission reading it takes. */
  need: string;
  /** What the person can do instead of reading it. */
  instead: string;
}

/** A read whose failure says what it means to the person: not there, not allowed, or no cluster at all. */
async function read<T>(cluster: Cluster, { what, request, whenAbsent, need, instead }: ExplainedRead<T>): Promise<T> {
  try {
    return await request();
  } catch (err) {
    if (!(err instanceof ApiException)) throw unreachable(cluster.kubeconfig, err);
    if (err.code === 404) throw new Error(`${what} does not exist: ${whenAbsent}; or ${instead}`, { cause: err });
    throw new Error(`cannot read ${what}: ${apiErrorMessage(err, need)}; or ${instead}`, { cause: err });
  }
}

async function identityCaFromCluster(cluster: Cluster, namespace: string): Promise<CertificateAndKey> {
  const name = SECRETS.identityCa;
  const secret = await read(cluster, {
    what: `Secret ${namespace}/${name}`,
    request: () => cluster.core.readNamespacedSecret({ name, namespace }),
    whenAbsent: `is the injector installed in ${namespace} (--injector-namespace)? It creates the identity CA when it first starts`,
    need: `get on secrets/${name} in ${namespace}`,
    instead: 'pass --identity-ca-cert and --identity-ca-key',
  });
  return caSetFromSecret(secret).active;
}

async function caConfigMapFromCluster(cluster: Cluster, namespace: string, name: string): Promise<V1ConfigMap> {
  return read(cluster, {
    what: `ConfigMap ${namespace}/${name}`,
    request: () => cluster.core.readNamespacedConfigMap({ name, namespace }),
    whenAbsent: `is namespace ${namespace} labelled ${INJECT_LABEL}=enabled and provisioned? (chaperone doctor --namespace ${namespace} says)`,
    need: `get on configmaps/${name} in ${namespace}`,
    instead: 'pass --serving-ca',
  });
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

interface ServingCa {
  servingCaPem: string;
  /** The identity CAs the namespace's sidecars trust (the CA ConfigMap's); undefined when --serving-ca was given. */
  trusted?: { where: string; bundle: string };
}

function connection(options: ClusterOptions): () => Cluster {
  let cluster: Cluster | undefined;
  return () => {
    if (!cluster) {
      const kubeconfig = loadKubeconfig(options);
      cluster = { kubeconfig, core: kubeconfig.makeApiClient(CoreV1Api) };
    }
    return cluster;
  };
}

async function servingCa(options: KubeconfigCommandOptions, connect: () => Cluster): Promise<ServingCa> {
  if (options.servingCa !== undefined) return { servingCaPem: await readFile(options.servingCa, 'utf8') };
  const injector = injectorConfigFrom(options);
  const namespace = namespaceOf(options.namespace, connect().kubeconfig);
  const configMap = await caConfigMapFromCluster(connect(), namespace, injector.caConfigMap);
  const where = `ConfigMap ${namespace}/${injector.caConfigMap}`;
  const servingCaPem = configMap.data?.[SERVING_CA_KEY];
  if (!servingCaPem) throw new Error(`${where} has no ${SERVING_CA_KEY}: the injector has not provisioned ${namespace} yet (chaperone doctor --namespace ${namespace} says why)`);
  return { servingCaPem, trusted: { where, bundle: configMap.data?.[IDENTITY_CA_KEY] ?? '' } };
}

/** Said on standard error when the namespace's sidecars would refuse the certificate (nothing wrong with the command). */
function trustWarnings(serving: ServingCa, trustedBy: (bundle: string) => boolean): string[] {
  if (!serving.trusted || trustedBy(serving.trusted.bundle)) return [];
  return [`the sidecars in this namespace do not trust this identity CA (${serving.trusted.where}, ${IDENTITY_CA_KEY}): they will refuse this certificate until they do`];
}

interface Cas {
  identityCa: CertificateAndKey;
  servingCaPem: string;
  /** Said on standard error: nothing wrong with the command, but the kubeconfig may not work yet. */
  warnings: string[];
}

export async function resolveCas(options: KubeconfigCommandOptions): Promise<Cas> {
  const files = identityCaFiles(options);
  const connect = connection(options);
  const identityCa = files
    ? { certPem: await readFile(files.cert, 'utf8'), keyPem: await readFile(files.key, 'utf8') }
    : await identityCaFromCluster(connect(), injectorConfigFrom(options).namespace);
  const serving = await servingCa(options, connect);
  return { identityCa, servingCaPem: serving.servingCaPem, warnings: trustWarnings(serving, (bundle) => trusts(bundle, identityCa.certPem)) };
}

function condition(request: V1CertificateSigningRequest, type: string) {
  return request.status?.conditions?.find((c) => c.type === type && c.status === 'True');
}

export interface CertificateRequestOptions {
  user: string;
  groups: string[];
  ttlSeconds: number;
  approve: boolean;
  waitSeconds: number;
  /** Progress, for standard error. */
  say: (line: string) => void;
}

/**
 * A certificate from the signer chaperone.dev/identity: a key made here, a CertificateSigningRequest
 * for it, approved here when asked to, and the certificate once the injector has signed it.
 */
export async function requestCertificate(kubeconfig: KubeConfig, options: CertificateRequestOptions): Promise<CertificateAndKey & { name: string }> {
  validatePerson(options.user, options.groups, options.ttlSeconds, MIN_REQUEST_TTL_SECONDS);
  const signing: Signing = { api: kubeconfig.makeApiClient(CertificatesV1Api), call: explainedCall(kubeconfig) };
  const { requestPem, keyPem } = createCertificateRequest(options.user, options.groups);
  const created = await signing.call('create the CertificateSigningRequest', 'create on certificatesigningrequests (ClusterRole chaperone-kubeconfig-requester)', () =>
    signing.api.createCertificateSigningRequest({
      body: {
        metadata: { generateName: 'chaperone-kubeconfig-' },
        spec: {
          request: Buffer.from(requestPem).toString('base64'),
          signerName: IDENTITY_SIGNER,
          usages: ['client auth', 'digital signature', 'key encipherment'],
          expirationSeconds: options.ttlSeconds,
        },
      },
    }),
  );
  const name = created.metadata!.name!;
  if (options.approve) await approve(signing, created);
  else options.say(`CertificateSigningRequest ${name} waits for approval: kubectl certificate approve ${name}`);
  const certPem = await signedCertificate(signing, name, options.waitSeconds);
  if (!keyMatchesCertificate(certPem, keyPem)) throw new Error(`CertificateSigningRequest ${name} holds a certificate for another key`);
  return { name, certPem, keyPem };
}

type ExplainedCall = <T>(what: string, need: string, request: () => Promise<T>) => Promise<T>;

interface Signing {
  api: CertificatesV1Api;
  /** A call whose failure says what could not be done and which permission it takes. */
  call: ExplainedCall;
}

function explainedCall(kubeconfig: KubeConfig): ExplainedCall {
  return async (what, need, request) => {
    try {
      return await request();
    } catch (err) {
      if (!(err instanceof ApiException)) throw unreachable(kubeconfig, err);
      throw new Error(`cannot ${what}: ${apiErrorMessage(err, need)}`, { cause: err });
    }
  };
}

async function approve({ api, call }: Signing, created: V1CertificateSigningRequest): Promise<void> {
  const name = created.metadata!.name!;
  const approved = { type: 'Approved', status: 'True', reason: 'ChaperoneKubeconfig', message: 'approved with chaperone kubeconfig --approve', lastUpdateTime: new Date() };
  await call(`approve CertificateSigningRequest ${name}`, `update on certificatesigningrequests/approval and approve on signers/${IDENTITY_SIGNER} (ClusterRole chaperone-kubeconfig-approver)`, () =>
    api.replaceCertificateSigningRequestApproval({ name, body: { ...created, status: { conditions: [approved] } } }),
  );
}

function refuseIfDeniedOrFailed(current: V1CertificateSigningRequest, name: string): void {
  const refused = condition(current, 'Denied') ?? condition(current, 'Failed');
  if (refused) throw new Error(`CertificateSigningRequest ${name} ${refused.type === 'Denied' ? 'was denied' : 'failed'}: ${refused.reason ?? ''}${refused.message ? ` (${refused.message})` : ''}`);
}

/** The certificate once signed (PEM); throws when the request is denied, fails, or waits too long. */
async function signedCertificate({ api, call }: Signing, name: string, waitSeconds: number): Promise<string> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const current = await call(`read CertificateSigningRequest ${name}`, 'get on certificatesigningrequests', () => api.readCertificateSigningRequest({ name }));
    refuseIfDeniedOrFailed(current, name);
    if (current.status?.certificate) return Buffer.from(current.status.certificate, 'base64').toString('utf8');
    if (Date.now() >= deadline) {
      const approved = condition(current, 'Approved') !== undefined;
      throw new Error(`CertificateSigningRequest ${name} was not ${approved ? 'signed' : 'approved'} within ${waitSeconds}s${approved ? ': is the injector running?' : ''}`);
    }
    await sleep(1000);
  }
}

export async function runKubeconfig(options: KubeconfigCommandOptions): Promise<void> {
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const { yaml, warnings, serial } = options.request ? await requestedKubeconfig(options, say) : await signedHereKubeconfig(options);
  for (const warning of warnings) say(`warning: ${warning}`);
  if (options.output) {
    await writeFile(options.output, yaml, { mode: 0o600 });
    say(`wrote ${options.output}: ${options.user} (${options.group.join(', ') || 'no groups'}), valid for ${options.ttlSeconds}s, serial ${serial.toLowerCase()}`);
  } else {
    process.stdout.write(yaml);
  }
}

interface WrittenKubeconfig {
  yaml: string;
  warnings: string[];
  serial: string;
}

/** --request: the certificate from the signer, through a CertificateSigningRequest. */
async function requestedKubeconfig(options: KubeconfigCommandOptions, say: (line: string) => void): Promise<WrittenKubeconfig> {
  if (identityCaFiles(options)) throw new Error('--request asks the signer: not together with --identity-ca-cert and --identity-ca-key');
  validatePerson(options.user, options.group, options.ttlSeconds, MIN_REQUEST_TTL_SECONDS);
  const connect = connection(options);
  const serving = await servingCa(options, connect);
  const issued = await requestCertificate(connect().kubeconfig, { user: options.user, groups: options.group, ttlSeconds: options.ttlSeconds, approve: options.approve ?? false, waitSeconds: options.waitSeconds ?? 600, say });
  return {
    yaml: kubeconfigYaml(options.server, serving.servingCaPem, options.user, issued),
    warnings: trustWarnings(serving, (bundle) => splitPemCertificates(bundle).some((ca) => isIssuedBy(issued.certPem, ca))),
    serial: new X509Certificate(issued.certPem).serialNumber,
  };
}

/** The certificate signed here, with the identity CA's key. */
async function signedHereKubeconfig(options: KubeconfigCommandOptions): Promise<WrittenKubeconfig> {
  if (options.approve) throw new Error('--approve goes with --request');
  const cas = await resolveCas(options);
  const cert = personCertificate({ user: options.user, groups: options.group, ttlSeconds: options.ttlSeconds, identityCa: cas.identityCa });
  return { yaml: kubeconfigYaml(options.server, cas.servingCaPem, options.user, cert), warnings: cas.warnings, serial: new X509Certificate(cert.certPem).serialNumber };
}
