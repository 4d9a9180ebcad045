// A node for the local cluster, so that pods run for real: the kubelet of the same release as the
// API server, Debian's containerd and runc, and a bridge of its own. Everything it makes on the host
// is named after the run or lives in its temp dir, is recorded before it is made, and is undone by
// stop() or, when the run died first, by the next run (reapNodeOrphans).
//
// Pods get their own network namespace on the bridge (the containerd CNI bridge plugin): an injected
// pod cannot be hostNetwork (policy chaperone-scoped-token refuses it, as Pod Security baseline does),
// and the sidecar's 127.0.0.1:6443 must be the pod's own loopback. The API server listens on the
// bridge's address, port 443, and that address is the first of the service range, so the kubernetes
// Service's ClusterIP, which the kubelet hands every pod as KUBERNETES_SERVICE_HOST, is the API
// server itself: there is no kube-proxy. The API server reaches webhooks behind Services at their
// pods' addresses (--enable-aggregator-routing). There is no scheduler: pods name the node.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api } from '@kubernetes/client-node';
import { isNotFound } from '../injector/provision/kube.js';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { createCA, issueCertificate } from '../lib/pki.js';
import { cacheRoot, ensureKubelet, ensureNodePause, isExecutable, onPath } from './binaries.js';
import { startControlPlane, freePort, type ControlPlane, type ControlPlaneOptions } from './control-plane.js';
import { adminClients } from './kube.js';
import { buildBinaryImage } from './oci.js';
import { isAlive } from './pids.js';
import { logTail, startProcess, stopProcess, type ManagedProcess } from './processes.js';

const execFileAsync = promisify(execFile);

/** The image containerd runs as each pod's sandbox; built here, never pulled. */
const PAUSE_IMAGE = 'chaperone.local/pause:1';
const CNI_BIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];
const CNI_PLUGINS = ['bridge', 'host-local', 'loopback'];
const INSTALL = 'apt-get install -y containerd runc containernetworking-plugins';
/** What the kubelet sets on the host when it starts (protectKernelDefaults: false); put back at stop. */
const KERNEL_TUNABLES = ['vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys', 'kernel/keys/root_maxbytes'];
const CGROUP_ROOT = '/sys/fs/cgroup';
/**
 * Directories the kubelet, containerd and the CNI library use at fixed paths whatever their
 * configuration: the kubelet's container log links and device-plugin socket, containerd's shim
 * sockets, the CNI results cache. Removed at the last node's stop if no node existed before they did.
 */
const FIXED_HOST_DIRS = ['/var/log/containers', '/var/lib/kubelet', '/run/containerd', '/var/lib/cni'];
const CNI_RESULTS = '/var/lib/cni/results';
const SHIM_SOCKETS = '/run/containerd/s';
/**
 * How long stop() lets the kubelet stop the pods before the teardown kills what is left: an API
 * server whose etcd went after it said ready answers only after its 60s timeout.
 */
const DRAIN_TIMEOUT_MS = 30_000;

export interface NodeOptions {
  log?: (line: string) => void;
}

export interface LocalNode {
  name: string;
  /** The bridge's address: the node's InternalIP, the API server's address and the kubernetes Service's ClusterIP. */
  address: string;
  /** The node's control plane: an API server that pods on the bridge can reach. */
  controlPlane: ControlPlane;
  dir: string;
  bridge: string;
  /** Imports an OCI image archive into the node's containerd (where the kubelet finds it). */
  importImage(archive: string): Promise<void>;
  /** The host pid of a running container, from its status' containerID (containerd://<id>). */
  containerPid(containerID: string): Promise<number>;
  stop(): Promise<void>;
}

/** What the node made on the host: enough to undo it from another process. */
interface NodeState {
  runner: number;
  id: string;
  dir: string;
  bridge: string;
  /** The cgroup (under each hierarchy) that holds every pod of the node. */
  cgroup: string;
  /** The kernel tunables as they were before any node of this machine started. */
  tunables: Record<string, string>;
  /** Which of FIXED_HOST_DIRS did not exist before any node of this machine started. */
  hostDirs: string[];
}

function registryDir(): string {
  return path.join(cacheRoot(), 'running-nodes');
}

function registrations(): { file: string; state: NodeState }[] {
  if (!existsSync(registryDir())) return [];
  const found: { file: string; state: NodeState }[] = [];
  for (const name of readdirSync(registryDir())) {
    const file = path.join(registryDir(), name);
    try {
      found.push({ file, state: JSON.parse(readFileSync(file, 'utf8')) as NodeState });
    } catch {
      // a half-written registration: its writer is still writing or died before it made anything
    }
  }
  return found;
}

function cniBinDir(): string | undefined {
  return [process.env.CHAPERONE_CNI_BIN_DIR, ...CNI_BIN_DIRS].find((dir) => dir && CNI_PLUGINS.every((plugin) => isExecutable(path.join(dir, plugin))));
}

/** Throws, naming what to install, unless this machine can run the node. Never a silent skip. */
export function checkNodePrerequisites(): void {
  const problems: string[] = [];
  if (process.platform !== 'linux') problems.push('it runs on Linux only');
  if (process.getuid?.() !== 0) problems.push('it runs as root (it makes a bridge, cgroups and mounts, as a node does)');
  const missing = ['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc', 'ip', 'tar', 'umount'].filter((command) => !onPath(command));
  if (missing.length > 0) problems.push(`${missing.join(', ')} not on PATH`);
  if (!cniBinDir()) problems.push(`the CNI plugins ${CNI_PLUGINS.join(', ')} are in none of ${CNI_BIN_DIRS.join(', ')} (or CHAPERONE_CNI_BIN_DIR)`);
  if (!existsSync(path.join(CGROUP_ROOT, 'memory')) && !existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers'))) problems.push(`no cgroup hierarchy is mounted at ${CGROUP_ROOT}`);
  if (problems.length > 0) throw new Error(`The local node cannot start: ${problems.join('; ')}. On Debian or Ubuntu, as root: apt-get update && ${INSTALL}`);
}

function readTunables(): Record<string, string> {
  return Object.fromEntries(KERNEL_TUNABLES.map((name) => [name, readFileSync(`/proc/sys/${name}`, 'utf8').trim()]));
}

/** The cgroup hierarchies mounted here (v1 controllers, named ones, and the v2 unified one). */
function cgroupHierarchies(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.includes('-') && /^cgroup2?$/.test(fields[fields.indexOf('-') + 1] ?? ''))
    .map((fields) => fields[4]!)
    .filter((mountPoint) => mountPoint.startsWith(`${CGROUP_ROOT}/`) || mountPoint === CGROUP_ROOT);
}

/** The node's cgroup in each hierarchy, with cpuset's cpus and mems copied from the parent (a new cpuset is empty). */
function makeCgroups(name: string): void {
  for (const hierarchy of cgroupHierarchies()) {
    const dir = path.join(hierarchy, name);
    mkdirSync(dir, { recursive: true });
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if (existsSync(path.join(hierarchy, file)) && readFileSync(path.join(dir, file), 'utf8').trim() === '') writeFileSync(path.join(dir, file), readFileSync(path.join(hierarchy, file), 'utf8'));
    }
  }
}

function cgroupDirsDeepestFirst(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const children = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory());
  return [...children.flatMap((child) => cgroupDirsDeepestFirst(path.join(dir, child.name))), dir];
}

function cgroupPids(name: string): number[] {
  const pids = new Set<number>();
  for (const hierarchy of cgroupHierarchies()) {
    for (const dir of cgroupDirsDeepestFirst(path.join(hierarchy, name))) {
      for (const pid of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) pids.add(Number(pid));
    }
  }
  return [...pids];
}

/** Processes whose command line names the node's dir: containerd, the kubelet and containerd's shims. */
function processesNaming(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Mount points under the node's dir, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((mountPoint): mountPoint is string => mountPoint !== undefined && mountPoint.startsWith(`${dir}/`))
    .map((mountPoint) => mountPoint.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length);
}

/** Whether a process accepts connections on this unix socket. */
function listening(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const connection = connect(socket);
    connection.once('connect', () => {
      connection.destroy();
      resolve(true);
    });
    connection.once('error', () => resolve(false));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function run(command: string, args: string[]): Promise<string> {
  try {
    return (await execFileAsync(command, args, { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const failure = err as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')}: ${failure.stderr?.trim() || failure.message}`, { cause: err });
  }
}

/**
 * Undoes everything a node made on the host, whether it stopped cleanly or not: its processes
 * (containerd's shims and the containers included), mounts, bridge, cgroups, log links and temp dir,
 * and the kernel tunables when no other node is running.
 */
async function teardown(state: NodeState, log: (line: string) => void): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const pids = [...new Set([...processesNaming(state.dir), ...cgroupPids(state.cgroup)])].filter((pid) => pid !== process.pid);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(250);
  }
  for (const mountPoint of mountsUnder(state.dir)) await run('umount', ['--lazy', mountPoint]).catch((err: Error) => log(`could not unmount ${mountPoint}: ${err.message}`));
  await run('ip', ['link', 'delete', state.bridge]).catch(() => undefined);
  for (let attempt = 0; attempt < 20; attempt++) {
    const left = cgroupHierarchies().flatMap((hierarchy) => cgroupDirsDeepestFirst(path.join(hierarchy, state.cgroup)));
    if (left.length === 0) break;
    for (const dir of left) {
      try {
        rmdirSync(dir);
      } catch {
        // busy a little longer: the kernel frees a cgroup after its last process is reaped
      }
    }
    await sleep(250);
  }
  // What the node's pods left at fixed paths: log links and CNI results naming its dir, sockets of shims that are gone.
  for (const [dir, ours] of [
    ['/var/log/containers', (file: string) => readlinkSync(file).startsWith(`${state.dir}/`)],
    [CNI_RESULTS, (file: string) => readFileSync(file, 'utf8').includes(state.dir)],
  ] as const) {
    for (const name of existsSync(dir) ? readdirSync(dir) : []) {
      try {
        if (ours(path.join(dir, name))) unlinkSync(path.join(dir, name));
      } catch {
        // not a link, or gone
      }
    }
  }
  for (const name of existsSync(SHIM_SOCKETS) ? readdirSync(SHIM_SOCKETS) : []) {
    if (!(await listening(path.join(SHIM_SOCKETS, name)))) rmSync(path.join(SHIM_SOCKETS, name), { force: true });
  }
  const others = registrations().filter(({ state: other }) => other.id !== state.id && isAlive(other.runner));
  if (others.length === 0) {
    for (const [name, value] of Object.entries(state.tunables)) {
      if (readFileSync(`/proc/sys/${name}`, 'utf8').trim() !== value) writeFileSync(`/proc/sys/${name}`, value);
    }
    for (const dir of state.hostDirs) rmSync(dir, { recursive: true, force: true });
  }
  rmSync(state.dir, { recursive: true, force: true });
}

/** The nodes running on this machine (of any run), but the one named: what they made on the host is theirs. */
export function otherRunningNodes(exceptName: string): { name: string; dir: string; bridge: string; tunables: Record<string, string> }[] {
  return registrations()
    .map(({ state }) => state)
    .filter((state) => state.cgroup !== exceptName && isAlive(state.runner))
    .map((state) => ({ name: state.cgroup, dir: state.dir, bridge: state.bridge, tunables: state.tunables }));
}

/** Undoes what the nodes of runs that died left on the host. */
export async function reapNodeOrphans(log: (line: string) => void): Promise<void> {
  for (const { file, state } of registrations()) {
    if (isAlive(state.runner)) continue;
    log(`removing node ${state.id} left behind by a run that died (pid ${state.runner})`);
    await teardown(state, log);
    rmSync(file, { force: true });
  }
}

/** A /24 of 10.200.0.0–10.249.255.0 that no address or route of this host touches. */
async function freeSubnet(): Promise<string> {
  const used = `${await run('ip', ['-4', '-o', 'address'])}\n${await run('ip', ['-4', 'route'])}`;
  for (let attempt = 0; attempt < 100; attempt++) {
    const prefix = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`${prefix}.`)) return prefix;
  }
  throw new Error('no free 10.x.y.0/24 for the node bridge');
}

function containerdConfig(dir: string, cniBin: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "${dir}/containerd/root"
state = "${dir}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "${dir}/containerd.sock"
[ttrpc]
  address = "${dir}/containerd-ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/containerd/opt"
[${cri}]
  sandbox_image = "${PAUSE_IMAGE}"
  # runc cannot set a negative oom_score_adj without CAP_SYS_RESOURCE ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[${cri}.containerd.runtimes.runc.options]
  BinaryName = "runc"
  Root = "${dir}/runc"
  SystemdCgroup = false
[${cri}.cni]
  bin_dir = "${cniBin}"
  conf_dir = "${dir}/cni"
  max_conf_num = 1
`;
}

function kubeletConfig(options: { dir: string; address: string; port: number; cgroup: string }): string {
  const { dir } = options;
  return JSON.stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: options.address,
    port: options.port,
    readOnlyPort: 0,
    healthzPort: 0,
    tlsCertFile: `${dir}/kubelet.crt`,
    tlsPrivateKeyFile: `${dir}/kubelet.key`,
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: `${dir}/node-ca.crt` } },
    authorization: { mode: 'Webhook' },
    containerRuntimeEndpoint: `unix://${dir}/containerd.sock`,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: `/${options.cgroup}`,
    // This machine's cgroups are v1 (hybrid); the kubelet refuses v1 unless told.
    failCgroupV1: false,
    failSwapOn: false,
    // Never the host's iptables (KUBE-FIREWALL would drop non-loopback traffic to 127/8).
    makeIPTablesUtilChains: false,
    podLogsDir: `${dir}/pod-logs`,
    enableControllerAttachDetach: false,
    // A shared test machine: no eviction or image garbage collection because its disk is busy.
    evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'nodefs.inodesFree': '1%', 'imagefs.available': '1%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    // ConfigMap and Secret volumes follow their objects within seconds, not the default minute.
    syncFrequency: '5s',
    resolvConf: '/etc/resolv.conf',
  });
}

/**
 * Starts a control plane whose API server pods can reach, and a node registered with it, Ready.
 * Throws (saying what to install) when this machine cannot run one.
 */
export async function startNode(options: NodeOptions = {}): Promise<LocalNode> {
  const log = options.log ?? ((line: string) => process.stderr.write(`[node] ${line}\n`));
  checkNodePrerequisites();
  await reapNodeOrphans(log);
  const started = Date.now();
  const [kubelet, pause] = [await ensureKubelet(log), await ensureNodePause(log)];
  const id = randomBytes(4).toString('hex');
  const name = `chaperone-node-${id}`;
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-node-'));
  const file = (relative: string) => path.join(dir, relative);
  const others = registrations().filter(({ state }) => isAlive(state.runner));
  const state: NodeState = {
    runner: process.pid,
    id,
    dir,
    bridge: `chap-${id}`,
    cgroup: name,
    tunables: others[0]?.state.tunables ?? readTunables(),
    hostDirs: others[0]?.state.hostDirs ?? FIXED_HOST_DIRS.filter((hostDir) => !existsSync(hostDir)),
  };
  await mkdir(registryDir(), { recursive: true });
  const registration = path.join(registryDir(), `${process.pid}-${id}.json`);
  writeFileSync(registration, JSON.stringify(state));

  const processes: ManagedProcess[] = [];
  let controlPlane: ControlPlane | undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', killOnExit);
    // Only the kubelet stops pods, told by the API server: when either is going (a terminal's Ctrl-C
    // reaches them too), the teardown kills the pods.
    const running = processes.length === 2 && processes.every((proc) => proc.child.exitCode === null && proc.child.signalCode === null);
    if (controlPlane && running && (await controlPlane.ready())) await drainWithin(DRAIN_TIMEOUT_MS, drain(controlPlane, name, ctr, log)).catch((err: Error) => log(`draining the node: ${err.message}`));
    for (const proc of [...processes].reverse()) await stopProcess(proc);
    // Before the teardown, which kills whatever names the node's dir: the API server names its kubelet client certificate.
    await controlPlane?.stop();
    await teardown(state, log);
    rmSync(registration, { force: true });
  };
  const killOnExit = () => processes.forEach((p) => p.child.kill('SIGKILL'));
  process.on('exit', killOnExit);
  const socket = file('containerd.sock');
  const ctr = (args: string[]) => run('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args]);

  try {
    const prefix = await freeSubnet();
    const address = `${prefix}.1`;
    await run('ip', ['link', 'add', state.bridge, 'type', 'bridge']);
    await run('ip', ['address', 'add', `${address}/24`, 'dev', state.bridge]);
    await run('ip', ['link', 'set', state.bridge, 'up']);
    makeCgroups(state.cgroup);

    // The kubelet's serving certificate and the API server's client certificate for it, from a CA of the node's.
    const nodeCa = createCA({ commonName: `${name}-ca` });
    const serving = issueCertificate(nodeCa, { commonName: name, usage: 'server', dnsNames: [name], ipAddresses: [address] });
    const apiserverClient = issueCertificate(nodeCa, { commonName: 'kube-apiserver-kubelet-client', organizations: ['system:masters'], usage: 'client' });
    await Promise.all([
      writeFile(file('node-ca.crt'), nodeCa.certPem),
      writeFile(file('kubelet.crt'), serving.certPem),
      writeFile(file('kubelet.key'), serving.keyPem, { mode: 0o600 }),
      writeFile(file('apiserver-kubelet-client.crt'), apiserverClient.certPem),
      writeFile(file('apiserver-kubelet-client.key'), apiserverClient.keyPem, { mode: 0o600 }),
    ]);
    const controlPlaneOptions: ControlPlaneOptions = {
      address,
      port: 443,
      extraApiserverFlags: [
        // Both lists: these add to the control plane's RBAC and admission plugins.
        '--authorization-mode=Node',
        '--enable-admission-plugins=NodeRestriction',
        // The kubernetes Service's ClusterIP is the first address of the range: the bridge's.
        `--service-cluster-ip-range=${prefix}.0/26`,
        '--enable-aggregator-routing=true',
        `--kubelet-client-certificate=${file('apiserver-kubelet-client.crt')}`,
        `--kubelet-client-key=${file('apiserver-kubelet-client.key')}`,
        `--kubelet-certificate-authority=${file('node-ca.crt')}`,
        '--kubelet-preferred-address-types=InternalIP,Hostname',
      ],
      extraControllers: ['deployment-controller', 'replicaset-controller', 'endpointslice-controller'],
      log,
    };
    controlPlane = await startControlPlane(controlPlaneOptions);

    const cniBin = cniBinDir()!;
    await mkdir(file('cni'));
    await writeFile(
      file('cni/10-chaperone.conflist'),
      JSON.stringify({
        cniVersion: '0.4.0',
        name: `chaperone-${id}`,
        plugins: [
          {
            type: 'bridge',
            bridge: state.bridge,
            // The bridge has its address already: no gateway, no forwarding or masquerading on the host.
            isGateway: false,
            ipMasq: false,
            hairpinMode: true,
            ipam: { type: 'host-local', ranges: [[{ subnet: `${prefix}.0/24`, rangeStart: `${prefix}.64`, rangeEnd: `${prefix}.250` }]], dataDir: file('cni-ipam') },
          },
        ],
      }),
    );
    await writeFile(file('containerd.toml'), containerdConfig(dir, cniBin));
    const containerd = startProcess('containerd', 'containerd', ['--config', file('containerd.toml'), '--log-level', 'warn'], file('containerd.log'));
    processes.push(containerd);
    await waitUntil('containerd', containerd, async () => existsSync(socket) && (await ctr(['version']).then(() => true, () => false)), 60_000);
    await importImage((await buildBinaryImage(pause, 'pause', PAUSE_IMAGE, file('pause.tar'), '65535:65535')).file);

    const kubeletClient = issueCertificate(controlPlane.ca, { commonName: `system:node:${name}`, organizations: ['system:nodes'], usage: 'client' });
    await writeFile(file('kubelet.kubeconfig'), kubeconfigYaml(controlPlane.url, controlPlane.ca.certPem, `system:node:${name}`, kubeletClient), { mode: 0o600 });
    await writeFile(file('kubelet.json'), kubeletConfig({ dir, address, port: await freePort(), cgroup: state.cgroup }));
    const kubeletProcess = startProcess(
      'kubelet',
      kubelet,
      [`--config=${file('kubelet.json')}`, `--kubeconfig=${file('kubelet.kubeconfig')}`, `--root-dir=${file('kubelet')}`, `--cert-dir=${file('kubelet/pki')}`, `--hostname-override=${name}`, `--node-ip=${address}`, '--v=1'],
      file('kubelet.log'),
    );
    processes.push(kubeletProcess);
    const clients = adminClients(controlPlane);
    await waitUntil(`node ${name} Ready`, kubeletProcess, async () => {
      const node = await clients.core.readNode({ name }).catch(() => undefined);
      return node?.status?.conditions?.some((condition) => condition.type === 'Ready' && condition.status === 'True') ?? false;
    }, 120_000);
    log(`node ${name} Ready at ${address} in ${Math.round((Date.now() - started) / 1000)}s (API server ${controlPlane.url}; logs in ${dir})`);
    const cp = controlPlane;
    return {
      name,
      address,
      controlPlane: cp,
      dir,
      bridge: state.bridge,
      importImage,
      containerPid: async (containerID) => {
        const task = containerID.replace(/^containerd:\/\//, '');
        // TASK  PID  STATUS
        const row = (await ctr(['tasks', 'ls'])).split('\n').map((line) => line.split(/\s+/)).find(([taskId]) => taskId === task);
        if (!row || row[2] !== 'RUNNING') throw new Error(`container ${task} has no running task on ${name}`);
        return Number(row[1]);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }

  async function importImage(archive: string): Promise<void> {
    await ctr(['images', 'import', '--no-unpack=false', archive]);
  }

  async function waitUntil(what: string, proc: ManagedProcess, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited with code ${proc.child.exitCode} while waiting for ${what}:\n${await logTail(proc.logFile)}`);
      if (await check()) return;
      await sleep(250);
    }
    throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}:\n${await logTail(proc.logFile)}`);
  }
}

function drainWithin(ms: number, draining: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not done within ${ms / 1000}s: the teardown stops what is left`)), ms);
  });
  return Promise.race([draining, late]).finally(() => clearTimeout(timer));
}

/** Deletes the node's pods and waits until the kubelet has stopped their containers and sandboxes. */
async function drain(controlPlane: ControlPlane, name: string, ctr: (args: string[]) => Promise<string>, log: (line: string) => void): Promise<void> {
  const clients = adminClients(controlPlane);
  // First what would recreate the pods.
  const apps = clients.kubeconfig.makeApiClient(AppsV1Api);
  // The garbage collector may delete a ReplicaSet of a deleted Deployment first: gone is as good.
  const unlessGone = (err: unknown) => {
    if (!isNotFound(err)) throw err;
  };
  for (const deployment of (await apps.listDeploymentForAllNamespaces()).items) await apps.deleteNamespacedDeployment({ name: deployment.metadata!.name!, namespace: deployment.metadata!.namespace! }).catch(unlessGone);
  for (const replicaSet of (await apps.listReplicaSetForAllNamespaces()).items) await apps.deleteNamespacedReplicaSet({ name: replicaSet.metadata!.name!, namespace: replicaSet.metadata!.namespace! }).catch(unlessGone);
  const pods = await clients.core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${name}` });
  for (const pod of pods.items) {
    await clients.core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace: pod.metadata!.namespace!, gracePeriodSeconds: 0 }).catch(() => undefined);
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    // TASK  PID  STATUS, under a header: each sandbox's task goes once the kubelet has stopped it (and its network).
    const tasks = (await ctr(['tasks', 'ls'])).split('\n').slice(1).filter(Boolean);
    if (tasks.length === 0) return;
    await sleep(500);
  }
  log('the kubelet had not stopped every container within 60s: stopping them by their cgroups');
}
