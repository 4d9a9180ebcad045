// A real etcd and kube-apiserver on 127.0.0.1, with free ports and a temp dir of their own.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent, get } from 'node:https';
import { get as httpGet } from 'node:http';
import { createCA, issueCertificate, type CertificateAndKey } from '../lib/pki.js';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { ensureControlPlaneBinaries, KUBERNETES_VERSION } from './binaries.js';
import { logTail, reapOrphans, register, startProcess, stopProcess, unregister, type ManagedProcess } from './processes.js';
import { preserveControlPlaneLog, registerControlPlane } from './audit-join.js';

export interface ControlPlaneOptions {
  /** The Kubernetes release (KUBERNETES_VERSION unless given; OLDEST_KUBERNETES_VERSION is the other one built ahead). */
  version?: string;
  /** Extra kube-apiserver flags, e.g. --authentication-config=... or --feature-gates=... */
  extraApiserverFlags?: string[];
  /** Where the API server listens and what it advertises (127.0.0.1 unless a node's pods must reach it: local-cluster/node.ts). */
  address?: string;
  /** Its port; a free one unless given. */
  port?: number;
  /** Controllers beyond CONTROLLERS, e.g. those a node's Deployments need. */
  extraControllers?: string[];
  log?: (line: string) => void;
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  url: string;
  host: string;
  port: number;
  /** The CA that signed the API server's serving certificate and that it trusts for client certificates. */
  ca: CertificateAndKey;
  /** A client certificate with O=system:masters. */
  admin: CertificateAndKey;
  adminKubeconfig: string;
  auditLog: string;
  /** The service-account issuer, also the default audience of its tokens. */
  serviceAccountIssuer: string;
  dir: string;
  version: string;
  /**
   * Stops the kube-apiserver alone (etcd and the controller manager keep running): SIGTERM, its
   * graceful shutdown, or with kill a SIGKILL, as a crash. For fault-injection tests on a control
   * plane of their own.
   */
  stopApiserver(options?: { kill?: boolean }): Promise<void>;
  /** Starts the kube-apiserver again on the same port with the same flags; resolves once it is ready. */
  startApiserver(): Promise<void>;
  /** Whether the API server's /readyz says ready now (not once it is shutting down, or its etcd is gone). */
  ready(): Promise<boolean>;
  stop(): Promise<void>;
}

export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}


const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
`;

/**
 * The controllers tests rely on: the aggregated roles (view, edit, admin) get their rules, deleted
 * namespaces and owned objects go away, namespaces get their default service account and CA bundle.
 * Nothing that would run pods: there is no scheduler and no kubelet.
 */
const CONTROLLERS = [
  'clusterrole-aggregation-controller',
  'garbage-collector-controller',
  'namespace-controller',
  'serviceaccount-controller',
  'root-ca-certificate-publisher-controller',
];

function hasRules(response: { status: number; body: string }): boolean {
  if (response.status !== 200) return false;
  const role = JSON.parse(response.body) as { rules?: unknown[] };
  return (role.rules ?? []).length > 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function httpGetStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpGet(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

function httpsGet(url: string, agent: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = get(url, { agent, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (err) => resolve({ status: 0, body: err.message }));
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

async function waitUntil(what: string, proc: ManagedProcess, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) {
      throw new Error(`${proc.name} exited with code ${proc.child.exitCode} while waiting for ${what}:\n${await logTail(proc.logFile)}`);
    }
    if (await check()) return;
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}:\n${await logTail(proc.logFile)}`);
}

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = options.log ?? ((line: string) => process.stderr.write(`[control-plane] ${line}\n`));
  reapOrphans(log);
  const binaries = await ensureControlPlaneBinaries(log, options.version ?? KUBERNETES_VERSION);
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-cp-'));
  const file = (name: string) => path.join(dir, name);

  const address = options.address ?? '127.0.0.1';
  const ca = createCA({ commonName: 'chaperone-test-cluster-ca' });
  const serving = issueCertificate(ca, {
    commonName: 'kube-apiserver',
    usage: 'server',
    dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
    ipAddresses: [...new Set(['127.0.0.1', address])],
  });
  const admin = issueCertificate(ca, { commonName: 'chaperone-test-admin', organizations: ['system:masters'], usage: 'client' });
  const serviceAccountKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await Promise.all([
    writeFile(file('ca.crt'), ca.certPem),
    writeFile(file('apiserver.crt'), serving.certPem),
    writeFile(file('apiserver.key'), serving.keyPem, { mode: 0o600 }),
    writeFile(file('sa.key'), serviceAccountKey.privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 }),
    writeFile(file('sa.pub'), serviceAccountKey.publicKey.export({ type: 'spki', format: 'pem' })),
    writeFile(file('audit-policy.yaml'), AUDIT_POLICY),
  ]);

  const [etcdClientPort, etcdPeerPort, apiserverPort] = [await freePort(), await freePort(), options.port ?? (await freePort())];
  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
  const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  const etcd = startProcess(
    'etcd',
    binaries.etcd,
    [
      '--name=chaperone-test',
      `--data-dir=${file('etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=chaperone-test=${peerUrl}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ],
    file('etcd.log'),
  );
  const registration = register(dir, [etcd.child.pid!]);
  const processes: ManagedProcess[] = [etcd];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', killOnExit);
    for (const proc of [...processes].reverse()) await stopProcess(proc);
    unregister(registration);
    // For the audit join at the end of the run (local-cluster/audit-join.ts); a copy that fails is reported there.
    await preserveControlPlaneLog({ dir }).catch(() => undefined);
    if (!process.env.CHAPERONE_KEEP_CONTROL_PLANE) await rm(dir, { recursive: true, force: true });
  };
  // Last resort when the runner exits without calling stop(): exit handlers cannot wait.
  const killOnExit = () => processes.forEach((p) => p.child.kill('SIGKILL'));
  process.on('exit', killOnExit);

  try {
    await waitUntil('etcd /health', etcd, async () => (await httpGetStatus(`${etcdUrl}/health`)) === 200, 30_000);

    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${address}`,
      `--advertise-address=${address}`,
      `--secure-port=${apiserverPort}`,
      `--cert-dir=${file('certs')}`,
      `--tls-cert-file=${file('apiserver.crt')}`,
      `--tls-private-key-file=${file('apiserver.key')}`,
      `--client-ca-file=${file('ca.crt')}`,
      '--authorization-mode=RBAC',
      `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
      `--service-account-key-file=${file('sa.pub')}`,
      `--service-account-signing-key-file=${file('sa.key')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--enable-admission-plugins=ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook',
      '--allow-privileged=true',
      '--endpoint-reconciler-type=none',
      `--audit-policy-file=${file('audit-policy.yaml')}`,
      `--audit-log-path=${file('audit.log')}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
      '--profiling=false',
      ...(options.extraApiserverFlags ?? []),
    ];
    const url = `https://${address}:${apiserverPort}`;
    const agent = new Agent({ ca: ca.certPem, cert: admin.certPem, key: admin.keyPem });
    let apiserver: ManagedProcess | undefined;
    const startApiserver = async () => {
      const started = startProcess('kube-apiserver', binaries.kubeApiserver, apiserverArgs, file('kube-apiserver.log'));
      const index = apiserver ? processes.indexOf(apiserver) : -1;
      if (index === -1) processes.push(started);
      else processes[index] = started;
      apiserver = started;
      register(dir, processes.map((p) => p.child.pid!));
      const probe = new Agent({ ca: ca.certPem, cert: admin.certPem, key: admin.keyPem });
      try {
        await waitUntil('kube-apiserver /readyz', started, async () => (await httpsGet(`${url}/readyz`, probe)).status === 200, 90_000);
      } finally {
        probe.destroy();
      }
    };
    const stopApiserver = async ({ kill = false }: { kill?: boolean } = {}) => {
      if (!apiserver) return;
      if (kill) apiserver.child.kill('SIGKILL');
      await stopProcess(apiserver);
    };
    await startApiserver();
    registerControlPlane({ dir, url });
    const version = JSON.parse((await httpsGet(`${url}/version`, agent)).body) as { gitVersion: string };

    const adminKubeconfig = file('admin.kubeconfig');
    await writeFile(adminKubeconfig, kubeconfigYaml(url, ca.certPem, 'chaperone-test-admin', admin), { mode: 0o600 });

    const controllerManager = startProcess(
      'kube-controller-manager',
      binaries.kubeControllerManager,
      [
        `--kubeconfig=${adminKubeconfig}`,
        `--authentication-kubeconfig=${adminKubeconfig}`,
        `--authorization-kubeconfig=${adminKubeconfig}`,
        `--controllers=${[...CONTROLLERS, ...(options.extraControllers ?? [])].join(',')}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${await freePort()}`,
        `--cert-dir=${file('kcm-certs')}`,
        `--root-ca-file=${file('ca.crt')}`,
        // Each controller as its own service account in kube-system, as kubeadm and most managed clusters
        // run them: chaperone's policies name the namespace controller and the garbage collector.
        '--use-service-account-credentials=true',
        '--profiling=false',
      ],
      file('kube-controller-manager.log'),
    );
    processes.push(controllerManager);
    register(dir, processes.map((p) => p.child.pid!));
    await waitUntil('RBAC role aggregation (the view ClusterRole has rules)', controllerManager, async () => hasRules(await httpsGet(`${url}/apis/rbac.authorization.k8s.io/v1/clusterroles/view`, agent)), 60_000);
    agent.destroy();
    log(`kube-apiserver ${version.gitVersion} (built as ${options.version ?? KUBERNETES_VERSION}, binaries from ${binaries.source}) ready at ${url}; admin kubeconfig ${adminKubeconfig}`);
    return {
      url,
      host: address,
      port: apiserverPort,
      ca,
      admin,
      adminKubeconfig,
      auditLog: file('audit.log'),
      serviceAccountIssuer: SERVICE_ACCOUNT_ISSUER,
      dir,
      version: version.gitVersion,
      stopApiserver,
      startApiserver,
      ready: async () => {
        const probe = new Agent({ ca: ca.certPem, cert: admin.certPem, key: admin.keyPem });
        try {
          return (await httpsGet(`${url}/readyz`, probe)).status === 200;
        } finally {
          probe.destroy();
        }
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
