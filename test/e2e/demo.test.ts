// `npm run demo` as a person runs it: its entry point as a process of its own, with a control plane
// and a node of its own, the injector and the dashboard pod running on the node for real. It must get
// ready, show kubectl through the pod's sidecar allowed and refused in the API server's words and the
// audit events naming each person, print commands that work when pasted, and on Ctrl-C leave nothing
// behind: no process, no directory, nothing on the host (the real-pods suite's before/after check).
// Without containerd, runc or the CNI plugins, or without Go, it says so and stops.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { registerSidecarAuditLog, serviceAccountUsername } from '../../local-cluster/audit-join.js';
import { onPath } from '../../local-cluster/binaries.js';
import { kubectl } from '../../local-cluster/kube.js';
import { isAlive } from '../../local-cluster/pids.js';
import { waitFor } from '../../local-cluster/wait.js';
import { assertNodeOnHost, assertNothingLeft, bridgeVeths, hostSnapshot, type HostSnapshot, type NodeTraces } from '../support/host-snapshot.js';
import { runMain } from '../support/run-main.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const READY = 'Audit events as they happen';
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

/** The processes whose parent is `pid`, with the name of the program each runs. */
function childrenOf(pid: number): { pid: number; program: string }[] {
  const children: { pid: number; program: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent !== pid) continue;
      const program = path.basename(readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] ?? '');
      children.push({ pid: Number(entry), program });
    } catch {
      // it exited while we looked
    }
  }
  return children;
}

function temporaryDirectories(output: string, kinds: string): string[] {
  const temporary = tmpdir().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return [...new Set(output.match(new RegExp(`${temporary}/chaperone-(${kinds})-\\w+`, 'g')) ?? [])];
}

function shell(command: string, timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', command], { cwd: REPO, timeout: timeoutMs }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** The lines of the demo's output that follow the one containing `marker`, up to the next command. */
function sectionAfter(output: string, marker: string): string {
  const start = output.indexOf(marker);
  assert.ok(start >= 0, `the demo did not print ${marker}`);
  const rest = output.slice(start + marker.length);
  const next = rest.indexOf('$ KUBECONFIG=');
  return next >= 0 ? rest.slice(0, next) : rest;
}

/** The node the demo started, as its output names it. */
function nodeIn(output: string): NodeTraces {
  const name = /node (chaperone-node-[0-9a-f]+): pods get addresses on bridge (chap-[0-9a-f]+)/.exec(output);
  const dir = /its state, sockets and logs: (\S+)/.exec(output);
  assert.ok(name && dir, 'the demo names its node, bridge and dir');
  return { name: name[1]!, bridge: name[2]!, dir: dir[1]! };
}

/** The lines of the "Try it by hand" section that are commands, as printed (the comments, in dim, left out). */
function printedCommands(output: string): string[] {
  const section = output.slice(output.indexOf('Try it by hand'), output.indexOf(READY));
  return section
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^(KUBECONFIG=|npx )/.test(line));
}

/** Runs a command that does not end by itself until it printed `until`, then stops it. */
function runUntil(command: string, until: RegExp): Promise<string> {
  // A process group of its own, so that stopping it stops the command the shell runs too.
  const child = spawn('/bin/sh', ['-c', command], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let said = '';
  let done = false;
  const stop = () => {
    done = true;
    process.kill(-child.pid!, 'SIGKILL');
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`\`${command}\` did not print ${until} within 30s:\n${said}`));
    }, 30_000);
    const hear = (chunk: Buffer) => {
      said += chunk.toString();
      if (done || !until.test(said)) return;
      clearTimeout(timer);
      stop();
      resolve(said);
    };
    child.stdout.on('data', hear);
    child.stderr.on('data', hear);
  });
}

describe('the demo (npm run demo, with a control plane and a node of its own)', function () {
  this.timeout(120_000);
  let demo: ChildProcess;
  let output = '';
  let exited: Promise<number | null>;
  let hostBefore: HostSnapshot;
  let sidecarLog = '';

  /** The admin's kubeconfig, in the control plane's directory, as the demo prints it. */
  const adminKubeconfig = () => /admin kubeconfig (\S+\/admin\.kubeconfig)/.exec(output)![1]!;

  /** The sidecar's audit events so far, from its container's log, for the run's audit join. */
  async function collectSidecarLog(): Promise<void> {
    const logs = await kubectl(adminKubeconfig(), ['logs', '-n', 'demo', 'dashboard', '-c', 'chaperone']);
    assert.equal(logs.code, 0, logs.stderr);
    sidecarLog = logs.stdout.split('\n').filter((line) => line.includes('"apiVersion":"audit.k8s.io/v1"')).join('\n');
  }

  before(async function () {
    // The first run on a machine builds Kubernetes.
    this.timeout(15 * 60_000);
    hostBefore = await hostSnapshot();
    demo = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'demo'], { cwd: REPO, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    demo.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    demo.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => demo.once('exit', (code) => resolve(code)));
    await Promise.race([
      waitFor('the demo to be ready', () => Promise.resolve(output.includes(READY)), 14 * 60_000, 200),
      exited.then((code) => assert.fail(`the demo exited (${code}) before it was ready:\n${output}`)),
    ]);
    // Its sidecar forwards under the scoped account of the demo's control plane: the run's audit join holds it to that API server's log.
    registerSidecarAuditLog({ controlPlane: { dir: path.dirname(adminKubeconfig()) }, serviceAccount: serviceAccountUsername('demo', 'chaperone-impersonator'), read: () => sidecarLog, what: "the demo's sidecar" });
  });

  after(async function () {
    this.timeout(3 * 60_000);
    if (!demo || demo.exitCode !== null || demo.signalCode !== null) return;
    await collectSidecarLog();
    demo.kill('SIGINT');
    const stopped = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 150_000))]);
    if (stopped === 'timeout') demo.kill('SIGKILL');
  });

  it('runs the injector from its image and the dashboard pod on the node, the sidecar started before the app', function () {
    assert.match(output, /✓ every replica Ready; it will inject ghcr\.io\/chaperone-dev\/chaperone-sidecar:/);
    assert.match(output, /✓ pod demo\/dashboard Running and Ready at 10\.\d+\.\d+\.\d+ on chaperone-node-[0-9a-f]+/);
    const started = /the kubelet started the sidecar at (\S+), and the app once the sidecar's startup probe passed, at (\S+)\n/.exec(output);
    assert.ok(started, output);
    assert.ok(Date.parse(started[1]!) <= Date.parse(started[2]!), started[0]);
  });

  it('shows what the injector did to the dashboard pod, and the placeholder its app reads as its token', function () {
    assert.match(output, /\+ container chaperone: a native sidecar/);
    assert.match(output, /~ serviceAccountName: dashboard -> chaperone-impersonator/);
    assert.match(output, /mount \/var\/run\/secrets\/kubernetes\.io\/serviceaccount: kube-api-access-\w+ -> chaperone-api-access/);
    assert.match(output, /service-account tokens: mounted by dashboard without chaperone, by chaperone with it/);
    assert.match(output, /what its app reads as its service-account token: .*\n\s+chaperone-placeholder-token\.this-token-has-no-power\n/);
  });

  it("allows alice's read through the pod's sidecar, and refuses bob with the API server's Forbidden Status", function () {
    const alice = sectionAfter(output, 'alice.kubeconfig kubectl get pods -n demo\n');
    assert.match(alice, /^\s+dashboard\s+2\/2\s+Running/m, alice);
    assert.match(alice, /→ allowed/);
    const bob = sectionAfter(output, 'bob.kubeconfig kubectl get pods -n demo\n');
    assert.ok(bob.includes('Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "demo"'), bob);
    assert.match(bob, /→ refused/);
    assert.match(output, /each allowed or refused as it should be/);
  });

  it('lets carol in with an ID token and dave with a webhook token, from providers the sidecar in the pod reaches (issue 18)', function () {
    assert.match(output, /an OpenID provider at https:\/\/10\.\d+\.\d+\.1:\d+ /);
    assert.match(output, /Secret chaperone-system\/chaperone-sidecar-config: sidecar\.yaml, an AuthenticationConfiguration/);
    for (const [person, file] of [['carol', 'carol-oidc'], ['dave', 'dave-pamhook']] as const) {
      const section = sectionAfter(output, `${file}.kubeconfig kubectl get pods -n demo\n`);
      assert.match(section, /^\s+dashboard\s+2\/2\s+Running/m, `${person}: ${section}`);
      assert.match(section, /→ allowed/);
    }
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  carol@example\\.com \\(oidc\\)\\s+list pods -n demo\\s+allow 200\\s+auditID=${UUID}$`, 'm'));
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  dave \\(webhook\\)\\s+list pods -n demo\\s+allow 200\\s+auditID=${UUID}$`, 'm'));
  });

  it("prints the sidecar's audit events, from its container's log, naming each person and the decision", function () {
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  alice\\s+list pods -n demo\\s+allow 200\\s+auditID=${UUID}$`, 'm'));
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  bob\\s+list pods -n demo\\s+forbid 403\\s+auditID=${UUID}$`, 'm'));
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  \\(nobody\\)\\s+list pods -n demo\\s+401 Unauthorized\\s+auditID=${UUID}$`, 'm'));
  });

  it('prints a command that works when pasted, and shows its audit event as it happens', async function () {
    const command = printedCommands(output).find((line) => /^KUBECONFIG=\S+\/alice\.kubeconfig \S*kubectl get pods -n demo$/.test(line));
    assert.ok(command, `no command for alice in:\n${output.slice(output.indexOf('Try it by hand'))}`);
    const before = output.length;
    const result = await shell(command);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^dashboard\s+2\/2\s+Running/m);
    await waitFor('the audit event of the pasted command', () => Promise.resolve(/alice\s+list pods -n demo\s+allow 200/.test(output.slice(before))), 10_000);
  });

  it('prints commands that all work as printed: each person, the admin, a new kubeconfig, the logs, the port-forward', async function () {
    this.timeout(5 * 60_000);
    const commands = printedCommands(output);
    assert.ok(commands.length >= 9, commands.join('\n'));
    for (const command of commands) {
      if (command.endsWith('--watch')) {
        assert.match(await runUntil(command, /kube-root-ca\.crt/), /chaperone-ca/, command);
        continue;
      }
      const result = await shell(command, 120_000);
      // bob may not look until the admin's binding, which comes later; the sidecar then remembers his refusal for 10s.
      if (/bob\.kubeconfig/.test(command)) assert.match(result.stderr, /User "bob" cannot list resource "pods"/, command);
      else assert.equal(result.code, 0, `${command}\n${result.stdout}${result.stderr}`);
    }
    const whoami = await shell(commands.find((c) => c.includes('carol-oidc.kubeconfig'))!);
    assert.match(whoami.stdout, /Username\s+carol@example\.com\n\s*Groups\s+\[oidc:platform system:authenticated\]/);
    const logs = await shell(`${/^\s+the sidecar's audit events and log: (.+)$/m.exec(output)![1]!} --tail=50`);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /"apiVersion":"audit\.k8s\.io\/v1"/);
    assert.equal((await shell(/^\s+the injector's log: +(.+)$/m.exec(output)![1]!)).code, 0);
    const portForward = /^\s+\$ (KUBECONFIG=\S+ \S*kubectl port-forward .+)$/m.exec(output)![1]!;
    assert.match(await runUntil(portForward, /Forwarding from 127\.0\.0\.1:\d+ -> 6443/), /Forwarding from/);
  });

  it('stops on Ctrl-C, exits 0, and leaves nothing behind: no process, no directory, nothing of its node on the host', async function () {
    this.timeout(3 * 60_000);
    const children = childrenOf(demo.pid!);
    const programs = children.map((c) => c.program);
    for (const program of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'containerd', 'kubelet', 'kubectl']) assert.ok(programs.includes(program), `${program} among ${programs.join(', ')}`);
    const directories = temporaryDirectories(output, 'demo|cp|node');
    assert.equal(directories.length, 3, directories.join(', '));
    assert.ok(directories.every((dir) => existsSync(dir)));
    const node = nodeIn(output);
    const veths = await bridgeVeths(node.bridge);
    assertNodeOnHost(hostBefore, await hostSnapshot(), node, veths);
    await collectSidecarLog();

    const stopping = Date.now();
    demo.kill('SIGINT');
    assert.equal(await exited, 0, output.slice(-2000));
    process.stderr.write(`      (the demo stopped in ${((Date.now() - stopping) / 1000).toFixed(1)}s)\n`);
    assert.match(output, /nothing the demo started is left/);
    await waitFor('every child process to be gone', () => Promise.resolve(children.every((c) => !isAlive(c.pid))), 5000);
    for (const dir of directories) assert.equal(existsSync(dir), false, `${dir} is left`);
    assertNothingLeft(hostBefore, await hostSnapshot(), node, veths);
  });
});

describe('the demo, when this machine cannot run a node', function () {
  let bin: string;

  before(async function () {
    // A PATH with everything the node needs but runc, as on a machine without it.
    bin = await mkdtemp(path.join(tmpdir(), 'chaperone-no-runc-'));
    for (const command of ['containerd', 'containerd-shim-runc-v2', 'ctr', 'ip', 'tar', 'umount']) await symlink(onPath(command)!, path.join(bin, command));
  });

  after(async function () {
    await rm(bin, { recursive: true, force: true });
  });

  it('says what to install, never falling back to a stand-in, and exits non-zero having removed its directory', async function () {
    const result = await runMain('cli/main.ts', ['demo'], { PATH: bin, HOME: process.env.HOME });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /✗ the demo could not start: The local node cannot start: runc not on PATH\. On Debian or Ubuntu, as root: apt-get update && apt-get install -y containerd runc containernetworking-plugins/);
    assert.doesNotMatch(result.stdout, /^\d+\. /m, 'no step started');
    const directories = temporaryDirectories(result.stdout, 'demo');
    assert.equal(directories.length, 1, result.stdout);
    assert.equal(existsSync(directories[0]!), false);
  });
});

describe('the demo, when the Kubernetes binaries cannot be built', function () {
  let cache: string;

  before(async function () {
    cache = await mkdtemp(path.join(tmpdir(), 'chaperone-empty-cache-'));
  });

  after(async function () {
    await rm(cache, { recursive: true, force: true });
  });

  it('says so plainly, removes its directory and exits non-zero', async function () {
    // An empty cache and no Go on PATH (what the node needs is): nothing to run and nothing to build with.
    const result = await runMain('cli/main.ts', ['demo'], { CHAPERONE_CACHE_DIR: cache, PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env.HOME });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /✗ the demo could not start: the build failed: The Go toolchain \(go\) is not on PATH\. Either install Go/);
    const directories = temporaryDirectories(result.stdout, 'demo');
    assert.equal(directories.length, 1, result.stdout);
    assert.equal(existsSync(directories[0]!), false);
  });
});
