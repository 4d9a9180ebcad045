// A sidecar set up as an injected pod would have it, against the local control plane: a scoped
// service account bound to the shipped impersonator role, a TokenRequest token, an identity CA and a
// serving CA of its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { accessPolicyFor } from '../injector/provision/access.js';
import { servedResources } from '../injector/provision/cluster-support.js';
import { impersonatorRules } from '../injector/provision/impersonator-role.js';
import { serialisePolicy, type AccessPolicy, type ImpersonationMode } from '../lib/access-policy.js';
import { createCA, issueCertificate, type CertificateAndKey, type CertificateRequest } from '../lib/pki.js';
import { createLogger } from '../lib/log.js';
import { loadSidecarConfig } from '../lib/sidecar-config/options.js';
import { startSidecar, type RunningSidecar } from '../sidecar/sidecar.js';
import { freePort, type ControlPlane } from './control-plane.js';
import { preserveSidecarAuditLog, registerSidecarAuditLog } from './audit-join.js';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { createNamespace, createServiceAccount, mintServiceAccountToken, serviceAccountSubject, type AdminClients } from './kube.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A sidecar with its own identity CA, serving CA and files, pointed at some upstream. */
export interface LocalSidecar {
  url: string;
  port: number;
  /** The ops listener: /healthz, /readyz, /metrics. */
  opsUrl: string;
  dir: string;
  identityCa: CertificateAndKey;
  servingCa: CertificateAndKey;
  servingCert: CertificateAndKey;
  tokenFile: string;
  /** The audit file sink's file: every sidecar started here writes its events there (not to stdout). */
  auditLog: string;
  /** Audit events written and dropped, per sink; only when it runs inside the test process. */
  auditStats?: RunningSidecar['auditStats'];
  /** Set when it runs as its own process (sidecar/main.ts), as in a pod. */
  process?: ChildProcess;
  /** A client certificate from the identity CA (or another CA, to test refusal). */
  clientCert(username: string, groups?: string[], overrides?: Partial<CertificateRequest>, ca?: CertificateAndKey): CertificateAndKey;
  /** A kubeconfig that reaches the upstream through this sidecar as that person. */
  kubeconfigFor(username: string, groups?: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** A sidecar set up against the local control plane, with a scoped service account of its own. */
export interface TestSidecar extends LocalSidecar {
  /** The namespace of the scoped service account. */
  namespace: string;
  serviceAccount: string;
  /** system:serviceaccount:<namespace>:<name>, as the API server's audit log names it. */
  serviceAccountUsername: string;
  bindingName: string;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTPS request with full control over headers (repeated, any letter case). */
export function rawRequest(
  url: string,
  options: { method?: string; headers?: OutgoingHttpHeaders; ca: string; cert?: CertificateAndKey; body?: string; servername?: string },
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
    // The name sent as SNI and verified in the certificate, when it is not the host connected to.
    ...(options.servername ? { servername: options.servername } : {}),
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

/** The dashboard policy (the one the suites install with, --default-access=dashboard) on this cluster, in this impersonation mode. */
export async function dashboardPolicy(clients: AdminClients, mode: ImpersonationMode): Promise<AccessPolicy> {
  return accessPolicyFor(undefined, { mode, access: 'dashboard', groups: [], extras: [] }, await servedResources(clients.api));
}

/** The impersonator role provisioning would generate for the dashboard policy in this mode (shared by the suites). */
export async function ensureImpersonatorRole(clients: AdminClients, mode: ImpersonationMode = 'classic'): Promise<string> {
  const name = `chaperone-test-impersonator-${mode}`;
  try {
    await clients.rbac.readClusterRole({ name });
  } catch {
    await clients.rbac.createClusterRole({ body: { metadata: { name }, rules: impersonatorRules(await dashboardPolicy(clients, mode)) } });
  }
  return name;
}

export interface LaunchOptions {
  upstream: string;
  upstreamCaPem: string;
  token: string;
  /** Extra sidecar flags, e.g. ['--anonymous']. */
  flags?: string[];
  /** Run sidecar/main.ts as its own process instead of inside the test process. */
  asProcess?: boolean;
  /** The namespace access policy, written where --access-policy-file reads it. */
  accessPolicy?: AccessPolicy;
  /** With asProcess: files for the process's standard output and error, instead of the test's own. */
  output?: ProcessOutput;
  /**
   * For the audit join (local-cluster/audit-join.ts): the control plane the token belongs to (whatever
   * --upstream it goes through) and the scoped account's username. Without it (a stand-in upstream)
   * the log is still registered, only never joined with an API server's.
   */
  auditJoin?: { controlPlane: ControlPlane; serviceAccount: string };
}

export interface ProcessOutput {
  stdout: string;
  stderr: string;
}

const MAIN = path.join(REPO, 'sidecar/main.ts');

export async function launchSidecar(options: LaunchOptions): Promise<LocalSidecar> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-sidecar-'));
  const file = (name: string) => path.join(dir, name);
  const identityCa = createCA({ commonName: 'chaperone-test-identity-ca' });
  const servingCa = createCA({ commonName: 'chaperone-test-serving-ca' });
  const servingCert = issueCertificate(servingCa, { commonName: 'chaperone', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await Promise.all([
    writeFile(file('tls.crt'), servingCert.certPem),
    writeFile(file('tls.key'), servingCert.keyPem, { mode: 0o600 }),
    writeFile(file('identity-ca.crt'), identityCa.certPem),
    writeFile(file('upstream-ca.crt'), options.upstreamCaPem),
    writeFile(file('token'), options.token, { mode: 0o600 }),
    ...(options.accessPolicy ? [writeFile(file('access-policy.json'), serialisePolicy(options.accessPolicy))] : []),
  ]);
  const [port, opsPort] = options.asProcess ? [await freePort(), await freePort()] : [0, 0];
  const args = [
    `--listen=127.0.0.1:${port}`,
    `--ops-listen=127.0.0.1:${opsPort}`,
    `--tls-cert-file=${file('tls.crt')}`,
    `--tls-key-file=${file('tls.key')}`,
    `--client-ca-file=${file('identity-ca.crt')}`,
    `--upstream=${options.upstream}`,
    `--upstream-ca-file=${file('upstream-ca.crt')}`,
    `--token-file=${file('token')}`,
    '--log-level=warn',
    '--audit-sinks=file',
    `--audit-file-path=${file('audit.jsonl')}`,
    ...(options.accessPolicy ? [`--access-policy-file=${file('access-policy.json')}`] : []),
    ...(options.flags ?? []),
  ];
  const started = options.asProcess ? await startProcessSidecar(args, port, opsPort, options.output) : await startInProcess(args);
  // The file sink is always on (lists of sinks add up); a test may move its file with a later flag.
  const auditFile = args.filter((arg) => arg.startsWith('--audit-file-path=')).at(-1)!.slice('--audit-file-path='.length);
  const joined = registerSidecarAuditLog({
    file: auditFile,
    ...(options.auditJoin ? { controlPlane: options.auditJoin.controlPlane, serviceAccount: options.auditJoin.serviceAccount } : {}),
    what: options.asProcess ? 'sidecar process' : 'sidecar',
  });
  const url = `https://127.0.0.1:${started.port}`;
  const clientCert: LocalSidecar['clientCert'] = (username, groups = [], overrides = {}, ca = identityCa) =>
    issueCertificate(ca, { commonName: username, organizations: groups, usage: 'client', validitySeconds: 3600, ...overrides });
  return {
    url,
    port: started.port,
    opsUrl: `http://127.0.0.1:${started.opsPort}`,
    dir,
    identityCa,
    servingCa,
    servingCert,
    tokenFile: file('token'),
    auditLog: file('audit.jsonl'),
    ...(started.auditStats ? { auditStats: started.auditStats } : {}),
    ...(started.process ? { process: started.process } : {}),
    clientCert,
    kubeconfigFor: async (username, groups = []) => {
      const kubeconfig = file(`${username}.kubeconfig`);
      await writeFile(kubeconfig, kubeconfigYaml(url, servingCa.certPem, username, clientCert(username, groups)), { mode: 0o600 });
      return kubeconfig;
    },
    stop: async () => {
      try {
        await started.stop();
      } finally {
        await preserveSidecarAuditLog(joined);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

interface Started {
  port: number;
  opsPort: number;
  process?: ChildProcess;
  auditStats?: RunningSidecar['auditStats'];
  stop: () => Promise<void>;
}

async function startInProcess(args: string[]): Promise<Started> {
  const running: RunningSidecar = await startSidecar(loadSidecarConfig(args, {}), createLogger('sidecar', 'warn'));
  return { port: running.listening[0]!.port, opsPort: running.opsPort, auditStats: () => running.auditStats(), stop: () => running.stop() };
}

async function startProcessSidecar(args: string[], port: number, opsPort: number, output?: ProcessOutput): Promise<Started> {
  const files = output ? [openSync(output.stdout, 'w'), openSync(output.stderr, 'w')] : undefined;
  // As in a pod: none of the test harness's own CHAPERONE_* variables (CHAPERONE_CACHE_DIR…), which
  // the sidecar would rightly refuse as unknown configuration.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('CHAPERONE_')));
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env, stdio: files ? ['ignore', ...files] : ['ignore', 'inherit', 'inherit'] });
  files?.forEach((fd) => closeSync(fd));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the sidecar exited with code ${child.exitCode} before it was ready`);
    const ok = await fetch(`http://127.0.0.1:${opsPort}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error('the sidecar did not come up within 30s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    port,
    opsPort,
    process: child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface TestSidecarOptions {
  /** Extra sidecar flags, e.g. ['--anonymous']. */
  flags?: string[];
  asProcess?: boolean;
  output?: ProcessOutput;
  /**
   * How the scoped account impersonates (the role it is bound to). Constrained also gives the sidecar
   * the dashboard policy file, as provisioning would; classic (the default) runs it without one.
   */
  mode?: ImpersonationMode;
}

export async function startTestSidecar(cp: ControlPlane, clients: AdminClients, options: TestSidecarOptions = {}): Promise<TestSidecar> {
  const namespace = await createNamespace(clients, 'chaperone');
  const serviceAccount = 'chaperone-impersonator';
  await createServiceAccount(clients, namespace, serviceAccount);
  const mode = options.mode ?? 'classic';
  const role = await ensureImpersonatorRole(clients, mode);
  const bindingName = `chaperone-impersonator-${namespace}`;
  await clients.rbac.createClusterRoleBinding({
    body: {
      metadata: { name: bindingName },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [serviceAccountSubject(namespace, serviceAccount)],
    },
  });
  const token = await mintServiceAccountToken(clients, namespace, serviceAccount);
  const serviceAccountUsername = `system:serviceaccount:${namespace}:${serviceAccount}`;
  const sidecar = await launchSidecar({
    upstream: cp.url,
    upstreamCaPem: cp.ca.certPem,
    token,
    ...options,
    auditJoin: { controlPlane: cp, serviceAccount: serviceAccountUsername },
    ...(mode === 'constrained' ? { accessPolicy: await dashboardPolicy(clients, 'constrained') } : {}),
  });
  return {
    ...sidecar,
    namespace,
    serviceAccount,
    serviceAccountUsername,
    bindingName,
  };
}
