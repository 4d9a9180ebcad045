// `npm run demo` as a person runs it: its entry point as a process of its own, with a control plane of
// its own. It must get ready, show kubectl allowed and refused in the API server's words and the
// audit events naming each person, print commands that work when pasted, and on Ctrl-C leave
// nothing behind: no process, no directory.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { isAlive } from '../../local-cluster/pids.js';
import { waitFor } from '../../local-cluster/wait.js';
import { runMain } from '../support/run-main.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const READY = 'Audit events as they happen';

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

function shell(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', command], { timeout: 30_000 }, (error, stdout, stderr) =>
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

describe('the demo (npm run demo, with a control plane of its own)', function () {
  this.timeout(120_000);
  let demo: ChildProcess;
  let output = '';
  let exited: Promise<number | null>;

  before(async function () {
    // The first run on a machine builds Kubernetes.
    this.timeout(15 * 60_000);
    demo = spawn(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'demo'], { cwd: REPO, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    demo.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    demo.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => demo.once('exit', (code) => resolve(code)));
    await Promise.race([
      waitFor('the demo to be ready', () => Promise.resolve(output.includes(READY)), 14 * 60_000, 200),
      exited.then((code) => assert.fail(`the demo exited (${code}) before it was ready:\n${output}`)),
    ]);
  });

  after(async function () {
    this.timeout(60_000);
    if (!demo || demo.exitCode !== null || demo.signalCode !== null) return;
    demo.kill('SIGINT');
    const stopped = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 45_000))]);
    if (stopped === 'timeout') demo.kill('SIGKILL');
  });

  it('shows what the injector did to the dashboard pod', function () {
    assert.match(output, /\+ container chaperone: a native sidecar/);
    assert.match(output, /~ serviceAccountName: headlamp -> chaperone-impersonator/);
    assert.match(output, /mount \/var\/run\/secrets\/kubernetes\.io\/serviceaccount: kube-api-access-\w+ -> chaperone-api-access/);
    assert.match(output, /service-account tokens: mounted by headlamp without chaperone, by chaperone with it/);
  });

  it("allows alice's read, and refuses bob with the API server's Forbidden Status", function () {
    const alice = sectionAfter(output, 'alice.kubeconfig kubectl get pods -n demo\n');
    assert.match(alice, /^\s+headlamp\s+\S+\s+Pending/m, alice);
    assert.match(alice, /→ allowed/);
    const bob = sectionAfter(output, 'bob.kubeconfig kubectl get pods -n demo\n');
    assert.ok(bob.includes('Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "demo"'), bob);
    assert.match(bob, /→ refused/);
    assert.match(output, /each allowed or refused as it should be/);
  });

  it('lets carol in with an ID token and dave with a webhook token, each with the groups their sign-in gave them (issue 18)', function () {
    assert.match(output, /Secret chaperone-system-[0-9a-f]+\/chaperone-sidecar-config: sidecar\.yaml, an AuthenticationConfiguration/);
    for (const [person, file] of [['carol', 'carol-oidc'], ['dave', 'dave-pamhook']] as const) {
      const section = sectionAfter(output, `${file}.kubeconfig kubectl get pods -n demo\n`);
      assert.match(section, /^\s+headlamp\s+\S+\s+Pending/m, `${person}: ${section}`);
      assert.match(section, /→ allowed/);
    }
    const uuid = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  carol@example\\.com \\(oidc\\)\\s+list pods -n demo\\s+allow 200\\s+auditID=${uuid}$`, 'm'));
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  dave \\(webhook\\)\\s+list pods -n demo\\s+allow 200\\s+auditID=${uuid}$`, 'm'));
  });

  it("prints the sidecar's audit events naming each person and the decision", function () {
    const uuid = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  alice\\s+list pods -n demo\\s+allow 200\\s+auditID=${uuid}$`, 'm'));
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  bob\\s+list pods -n demo\\s+forbid 403\\s+auditID=${uuid}$`, 'm'));
    assert.match(output, new RegExp(`^\\s+\\d\\d:\\d\\d:\\d\\d  \\(nobody\\)\\s+list pods -n demo\\s+401 Unauthorized\\s+auditID=${uuid}$`, 'm'));
  });

  it('prints a command that works when pasted, and shows its audit event as it happens', async function () {
    const printed = output.slice(output.indexOf('Try it by hand'));
    const command = /^\s+(KUBECONFIG=\S+\/alice\.kubeconfig \S*kubectl get pods -n demo)$/m.exec(printed)?.[1];
    assert.ok(command, `no command for alice in:\n${printed}`);
    const before = output.length;
    const result = await shell(command);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^headlamp\s/m);
    await waitFor('the audit event of the pasted command', () => Promise.resolve(/alice\s+list pods -n demo\s+allow 200/.test(output.slice(before))), 10_000);
  });

  it('stops on Ctrl-C, exits 0, and leaves no process and no directory behind', async function () {
    this.timeout(60_000);
    const children = childrenOf(demo.pid!);
    const programs = children.map((c) => c.program);
    for (const program of ['etcd', 'kube-apiserver', 'kube-controller-manager']) assert.ok(programs.includes(program), `${program} among ${programs.join(', ')}`);
    const directories = temporaryDirectories(output, 'demo|cp|pod');
    assert.equal(directories.length, 3, directories.join(', '));
    assert.ok(directories.every((dir) => existsSync(dir)));

    demo.kill('SIGINT');
    assert.equal(await exited, 0, output.slice(-2000));
    assert.match(output, /nothing the demo started is left/);
    await waitFor('every child process to be gone', () => Promise.resolve(children.every((c) => !isAlive(c.pid))), 5000);
    for (const dir of directories) assert.equal(existsSync(dir), false, `${dir} is left`);
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
    // An empty cache and no Go on PATH: nothing to run and nothing to build with.
    const result = await runMain('cli/main.ts', ['demo'], { CHAPERONE_CACHE_DIR: cache, PATH: '/usr/bin:/bin', HOME: process.env.HOME });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /✗ the demo could not start: the build failed: The Go toolchain \(go\) is not on PATH\. Either install Go/);
    const directories = temporaryDirectories(result.stdout, 'demo');
    assert.equal(directories.length, 1, result.stdout);
    assert.equal(existsSync(directories[0]!), false);
  });
});
