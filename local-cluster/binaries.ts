// Builds the real kube-apiserver and etcd from the Go module proxy, once per version, into a cache
// outside the repository. Tests, benchmarks and the demo all run against these binaries.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive } from './pids.js';

/** The Kubernetes release the fixtures are built from. The etcd version follows from its go.mod. */
export const KUBERNETES_VERSION = 'v1.37.2';
/**
 * The oldest minor the docs claim (docs/compatibility.md), built by the same recipe for
 * test/e2e/older-kubernetes.test.ts: its own go.mod names its etcd and Go language version.
 */
export const OLDEST_KUBERNETES_VERSION = 'v1.30.14';
/** Bump when the recipe changes in a way that needs the cached binaries rebuilt. */
const RECIPE_REVISION = 3;

export interface ControlPlaneBinaries {
  kubeApiserver: string;
  /** For the controllers the tests rely on: RBAC role aggregation, namespace deletion, garbage collection. */
  kubeControllerManager: string;
  etcd: string;
  /** Where they came from, for the log line that says what the suite ran against. */
  source: 'environment' | 'cache' | 'built';
}

const HOW_TO_PROVIDE = `Either install Go (https://go.dev/doc/install; the tests build kube-apiserver and kube-controller-manager ${KUBERNETES_VERSION} and etcd from the Go module proxy on first use, and ${OLDEST_KUBERNETES_VERSION}'s for the older-Kubernetes suite), or point CHAPERONE_KUBE_APISERVER, CHAPERONE_KUBE_CONTROLLER_MANAGER and CHAPERONE_ETCD at existing binaries of ${KUBERNETES_VERSION}.`;

export function cacheRoot(): string {
  if (process.env.CHAPERONE_CACHE_DIR) return process.env.CHAPERONE_CACHE_DIR;
  const xdg = process.env.XDG_CACHE_HOME || path.join(homedir(), '.cache');
  return path.join(xdg, 'chaperone');
}

function versionDir(version = KUBERNETES_VERSION): string {
  return path.join(cacheRoot(), `kubernetes-${version}`);
}

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Each binary: its file name in the cache and the environment variable that overrides it. */
const BINARIES = {
  kubeApiserver: { file: 'kube-apiserver', env: 'CHAPERONE_KUBE_APISERVER' },
  kubeControllerManager: { file: 'kube-controller-manager', env: 'CHAPERONE_KUBE_CONTROLLER_MANAGER' },
  etcd: { file: 'etcd', env: 'CHAPERONE_ETCD' },
} as const;
type BinaryName = keyof typeof BINARIES;
const BINARY_NAMES = Object.keys(BINARIES) as BinaryName[];

function fromEnvironment(): ControlPlaneBinaries | undefined {
  const given = BINARY_NAMES.filter((name) => process.env[BINARIES[name].env]);
  if (given.length === 0) return undefined;
  const paths = {} as Record<BinaryName, string>;
  for (const name of BINARY_NAMES) {
    const { env } = BINARIES[name];
    const value = process.env[env];
    if (!value) throw new Error(`${env} is not set, but ${given.map((n) => BINARIES[n].env).join(' and ')} is: set all of ${BINARY_NAMES.map((n) => BINARIES[n].env).join(', ')}, or none. ${HOW_TO_PROVIDE}`);
    if (!isExecutable(value)) throw new Error(`${env}=${value} is not an executable file.`);
    paths[name] = value;
  }
  return { ...paths, source: 'environment' };
}

function cached(version: string): ControlPlaneBinaries | undefined {
  const dir = path.join(versionDir(version), 'bin');
  const paths = Object.fromEntries(BINARY_NAMES.map((name) => [name, path.join(dir, BINARIES[name].file)])) as Record<BinaryName, string>;
  if (!Object.values(paths).every(isExecutable)) return undefined;
  try {
    const stamp = JSON.parse(readFileSync(path.join(dir, 'versions.json'), 'utf8')) as { recipe?: number };
    if (stamp.recipe !== RECIPE_REVISION) return undefined;
  } catch {
    return undefined;
  }
  return { ...paths, source: 'cache' };
}

/** What `kubectl version` and /version report, as the release's own build stamps it. */
export function versionLdflags(kubernetesVersion: string): string {
  const [major, minor] = kubernetesVersion.replace(/^v/, '').split('.');
  const stamp = { gitVersion: kubernetesVersion, gitMajor: major!, gitMinor: minor!, gitTreeState: 'clean' };
  return Object.entries(stamp)
    .flatMap(([name, value]) => ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].map((pkg) => `-X ${pkg}.${name}=${value}`))
    .join(' ');
}

/**
 * Returns usable binaries of a release (KUBERNETES_VERSION unless given): from the environment (for
 * KUBERNETES_VERSION only: the variables name one set), the cache, or a fresh build. Never skips.
 */
export async function ensureControlPlaneBinaries(log: (line: string) => void = stderrLine, version = KUBERNETES_VERSION): Promise<ControlPlaneBinaries> {
  const found = (version === KUBERNETES_VERSION ? fromEnvironment() : undefined) ?? cached(version);
  if (found) return found;
  await withBuildLock(version, log, async () => {
    if (!cached(version)) await buildControlPlaneBinaries(log, version);
  });
  const built = cached(version);
  if (!built) throw new Error(`The build finished but the binaries are missing from ${versionDir(version)}/bin.`);
  return { ...built, source: 'built' };
}

/** One build at a time per cache and version: a second test run waits for the first one's build. */
async function withBuildLock(version: string, log: (line: string) => void, build: () => Promise<void>): Promise<void> {
  const lock = path.join(versionDir(version), 'build.lock');
  await mkdir(versionDir(version), { recursive: true });
  let waitingSince: number | undefined;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSyncOr(path.join(lock, 'pid'), '0'));
    if (holder > 0 && !isAlive(holder)) {
      rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (waitingSince === undefined || Date.now() - waitingSince > 30_000) {
      log(`waiting for another process (pid ${holder || 'unknown'}) that is building the binaries`);
      waitingSince = Date.now();
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  try {
    await writeFile(path.join(lock, 'pid'), String(process.pid));
    await build();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function readFileSyncOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}


function stderrLine(line: string): void {
  process.stderr.write(`[control-plane] ${line}\n`);
}

interface GoRun {
  cwd: string;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

async function runGo(run: GoRun, args: string[], label: string): Promise<string> {
  const started = Date.now();
  const heartbeat = setInterval(
    () => run.log(`  … still ${label} (${Math.round((Date.now() - started) / 1000)}s)`),
    30_000,
  );
  try {
    return await new Promise<string>((resolve, reject) => {
      const child = spawn('go', args, { cwd: run.cwd, env: run.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new Error(`The Go toolchain (go) is not on PATH. ${HOW_TO_PROVIDE}`) : err),
      );
      child.on('close', (code) => {
        if (code === 0) resolve(stdout);
        else reject(new GoError(`go ${args.join(' ')} failed (exit ${code}) in ${run.cwd}:\n${stderr.slice(-4000)}`, stderr));
      });
    });
  } finally {
    clearInterval(heartbeat);
  }
}

class GoError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

function isChecksumDatabaseFailure(err: unknown): boolean {
  return err instanceof GoError && /sum\.golang\.org|checksum database|verifying .*: .*(dial|lookup|connect)/i.test(err.stderr);
}

/**
 * Runs go; if the checksum database is out of reach (the one part of the module proxy set-up that
 * may be missing here), says so and goes on with GOSUMDB=off for these test fixtures only.
 */
async function go(run: GoRun, args: string[], label: string): Promise<string> {
  try {
    return await runGo(run, args, label);
  } catch (err) {
    if (run.env.GOSUMDB === 'off' || !isChecksumDatabaseFailure(err)) throw err;
    run.log('the Go checksum database is out of reach: building these test fixtures with GOSUMDB=off');
    run.env.GOSUMDB = 'off';
    return runGo(run, args, label);
  }
}

interface ModuleInfo {
  Dir: string;
  GoMod: string;
}

/** Staging modules are replaced by ./staging paths in the release's go.mod; each is published as v0.<minor>.<patch>. */
export function stagingModules(kubernetesGoMod: string): string[] {
  return [...kubernetesGoMod.matchAll(/^\s*(k8s\.io\/[\w.-]+)\s+=>\s+\.\/staging\//gm)].map((m) => m[1]!);
}

export function requiredVersion(goMod: string, modulePath: string): string {
  const escaped = modulePath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const match = new RegExp(`^\\s*${escaped}\\s+(v\\S+)`, 'm').exec(goMod);
  if (!match) throw new Error(`${modulePath} is not required by this go.mod`);
  return match[1]!;
}

export function stagingVersion(kubernetesVersion: string): string {
  const match = /^v1\.(\d+)\.(\d+)$/.exec(kubernetesVersion);
  if (!match) throw new Error(`not a release version: ${kubernetesVersion}`);
  return `v0.${match[1]}.${match[2]}`;
}

export function scratchGoMod(module: string, goVersion: string, requires: Record<string, string>, replaces: Record<string, string> = {}): string {
  const lines = [`module ${module}`, '', `go ${goVersion}`, '', 'require ('];
  for (const [mod, version] of Object.entries(requires)) lines.push(`\t${mod} ${version}`);
  lines.push(')', '');
  for (const [mod, version] of Object.entries(replaces)) lines.push(`replace ${mod} => ${mod} ${version}`);
  return `${lines.join('\n')}\n`;
}

function toolsFile(packages: string[]): string {
  return `//go:build tools\n\npackage tools\n\n${packages.map((pkg) => `import _ "${pkg}"`).join('\n')}\n`;
}

/** Builds main packages of one scratch module: [package, output file] pairs. */
async function buildModule(run: GoRun, name: string, goMod: string, targets: [string, string][], ldflags = ''): Promise<void> {
  const dir = path.join(run.cwd, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'go.mod'), goMod);
  await writeFile(path.join(dir, 'tools.go'), toolsFile(targets.map(([pkg]) => pkg)));
  const inDir = { ...run, cwd: dir };
  run.log(`resolving modules for ${name}`);
  await go(inDir, ['mod', 'tidy'], `resolving ${name}'s modules`);
  for (const [pkg, output] of targets) {
    const binary = path.basename(output);
    run.log(`compiling ${binary} (the first build takes several minutes on 2 cores)`);
    const started = Date.now();
    await go(inDir, ['build', '-trimpath', ...(ldflags ? ['-ldflags', ldflags] : []), '-o', output, pkg], `compiling ${binary}`);
    run.log(`compiled ${binary} in ${Math.round((Date.now() - started) / 1000)}s`);
  }
}

function fixtureBuildEnv(): NodeJS.ProcessEnv {
  return { ...process.env, GOFLAGS: '-mod=mod', CGO_ENABLED: '0' };
}

export function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, command);
    if (dir && isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * kubectl for the tests: CHAPERONE_KUBECTL, else the one on PATH, else built from the same release
 * as the API server (a machine without kubectl still runs the suite).
 */
export async function ensureKubectl(log: (line: string) => void = stderrLine): Promise<string> {
  const fromEnv = process.env.CHAPERONE_KUBECTL;
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`CHAPERONE_KUBECTL=${fromEnv} is not an executable file.`);
    return fromEnv;
  }
  const found = onPath('kubectl') ?? path.join(versionDir(), 'bin', 'kubectl');
  if (isExecutable(found)) return found;
  log(`kubectl is not on PATH: building it from k8s.io/kubernetes ${KUBERNETES_VERSION}`);
  await buildFromRelease('kubectl', found, log);
  return found;
}

/** A command of k8s.io/kubernetes, compiled in the control plane's scratch module (sharing its Go build cache). */
async function buildFromRelease(command: string, output: string, log: (line: string) => void): Promise<void> {
  await ensureControlPlaneBinaries(log);
  const moduleDir = path.join(versionDir(), 'build', 'kubernetes');
  const started = Date.now();
  const partial = `${output}.partial-${process.pid}`;
  await go({ cwd: moduleDir, env: fixtureBuildEnv(), log }, ['build', '-trimpath', '-ldflags', versionLdflags(KUBERNETES_VERSION), '-o', partial, `k8s.io/kubernetes/cmd/${command}`], `compiling ${command}`);
  await rename(partial, output);
  log(`compiled ${command} in ${Math.round((Date.now() - started) / 1000)}s`);
}

/**
 * The kubelet of the same release, for the local cluster's node (local-cluster/node.ts):
 * CHAPERONE_KUBELET, else the cache, else built beside kube-apiserver.
 */
export async function ensureKubelet(log: (line: string) => void = stderrLine): Promise<string> {
  const fromEnv = process.env.CHAPERONE_KUBELET;
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`CHAPERONE_KUBELET=${fromEnv} is not an executable file.`);
    return fromEnv;
  }
  const cachedKubelet = path.join(versionDir(), 'bin', 'kubelet');
  if (isExecutable(cachedKubelet)) return cachedKubelet;
  log(`building the kubelet ${KUBERNETES_VERSION} into ${path.dirname(cachedKubelet)} (once per version; about a minute and a half after kube-apiserver's build, on 2 cores)`);
  await buildFromRelease('kubelet', cachedKubelet, log);
  return cachedKubelet;
}

/** The whole recipe: read the release's own go.mod, then build each binary in a scratch module. */
export async function buildControlPlaneBinaries(log: (line: string) => void = stderrLine, version = KUBERNETES_VERSION): Promise<void> {
  const root = versionDir(version);
  const work = path.join(root, 'build');
  const staging = path.join(root, `bin.partial-${process.pid}`);
  await mkdir(work, { recursive: true });
  await mkdir(staging, { recursive: true });
  const run: GoRun = { cwd: work, env: fixtureBuildEnv(), log };
  log(`building kube-apiserver, kube-controller-manager ${version} and etcd into ${root} (once per version)`);

  const info = JSON.parse(await go(run, ['mod', 'download', '-json', `k8s.io/kubernetes@${version}`], 'downloading k8s.io/kubernetes')) as ModuleInfo;
  const kubernetesGoMod = await readFile(info.GoMod, 'utf8');
  const goVersion = /^go (\S+)/m.exec(kubernetesGoMod)?.[1] ?? '1.26.0';
  const stagingReplaces = Object.fromEntries(stagingModules(kubernetesGoMod).map((m) => [m, stagingVersion(version)]));
  const etcdVersion = requiredVersion(kubernetesGoMod, 'go.etcd.io/etcd/server/v3');

  await buildModule(
    run,
    'kubernetes',
    scratchGoMod('chaperone.dev/fixtures/kubernetes', goVersion, { 'k8s.io/kubernetes': version }, stagingReplaces),
    [
      ['k8s.io/kubernetes/cmd/kube-apiserver', path.join(staging, BINARIES.kubeApiserver.file)],
      ['k8s.io/kubernetes/cmd/kube-controller-manager', path.join(staging, BINARIES.kubeControllerManager.file)],
    ],
    versionLdflags(version),
  );
  await buildModule(run, 'etcd', scratchGoMod('chaperone.dev/fixtures/etcd', goVersion, { 'go.etcd.io/etcd/server/v3': etcdVersion }), [
    ['go.etcd.io/etcd/server/v3', path.join(staging, BINARIES.etcd.file)],
  ]);
  await writeFile(
    path.join(staging, 'versions.json'),
    `${JSON.stringify({ kubernetes: version, etcd: etcdVersion, recipe: RECIPE_REVISION, builtAt: new Date().toISOString() }, null, 2)}\n`,
  );
  const bin = path.join(root, 'bin');
  if (existsSync(bin)) await rm(bin, { recursive: true, force: true });
  await rename(staging, bin);
  log(`Kubernetes ${version} and etcd ${etcdVersion} are ready in ${bin}`);
}

/** A small Go program of test/fixtures/<name> (go.mod, go.sum, main.go) that tests run as an oracle. */
interface GoFixture {
  name: string;
  /** The environment variable that names a binary to use instead. */
  envVar: string;
  /** What it is, for the build log. */
  what: string;
  /** Its source directory, relative to the repository; test/fixtures/<name> unless given. */
  source?: string;
}

const GO_FIXTURE_FILES = ['go.mod', 'go.sum', 'main.go'];

/**
 * A Go fixture, built once per version of its source into the cache beside the control plane:
 * the environment variable, else the cache, else a fresh build.
 */
async function ensureGoFixture(fixture: GoFixture, log: (line: string) => void): Promise<string> {
  const fromEnv = process.env[fixture.envVar];
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`${fixture.envVar}=${fromEnv} is not an executable file.`);
    return fromEnv;
  }
  const source = fileURLToPath(new URL(`../${fixture.source ?? `test/fixtures/${fixture.name}`}/`, import.meta.url));
  const hash = createHash('sha256');
  for (const file of GO_FIXTURE_FILES) hash.update(file).update('\0').update(await readFile(path.join(source, file)));
  const dir = path.join(cacheRoot(), fixture.name);
  const binary = path.join(dir, `${fixture.name}-${hash.digest('hex').slice(0, 16)}`);
  if (isExecutable(binary)) return binary;
  await mkdir(dir, { recursive: true });
  const partial = `${binary}.partial-${process.pid}`;
  log(`building ${fixture.what} (${fixture.source ?? `test/fixtures/${fixture.name}`}) into ${dir}`);
  const started = Date.now();
  // -mod=readonly: the committed go.mod and go.sum are the whole recipe; the build never edits them.
  const env = { ...process.env, GOFLAGS: '-mod=readonly', CGO_ENABLED: '0' };
  await go({ cwd: source, env, log }, ['build', '-trimpath', '-o', partial, '.'], `compiling ${fixture.what}`);
  await rename(partial, binary);
  log(`compiled ${fixture.what} in ${Math.round((Date.now() - started) / 1000)}s`);
  return binary;
}

/** test/fixtures/cel-oracle: a Go program that evaluates CEL as the API server's JWT authenticator does (CHAPERONE_CEL_ORACLE). */
export function ensureCelOracle(log: (line: string) => void = stderrLine): Promise<string> {
  return ensureGoFixture({ name: 'cel-oracle', envVar: 'CHAPERONE_CEL_ORACLE', what: 'the CEL oracle' }, log);
}

/** test/fixtures/audit-checker: decodes audit events strictly with the API server's Go types (CHAPERONE_AUDIT_CHECKER). */
export function ensureAuditChecker(log: (line: string) => void = stderrLine): Promise<string> {
  return ensureGoFixture({ name: 'audit-checker', envVar: 'CHAPERONE_AUDIT_CHECKER', what: 'the audit checker' }, log);
}

/** local-cluster/node-pause: the pause process of the node's pod sandboxes (CHAPERONE_NODE_PAUSE). */
export function ensureNodePause(log: (line: string) => void = stderrLine): Promise<string> {
  return ensureGoFixture({ name: 'node-pause', envVar: 'CHAPERONE_NODE_PAUSE', what: 'the pause process of the local node', source: 'local-cluster/node-pause' }, log);
}

/** test/fixtures/in-cluster-client: a dashboard stand-in whose API client is client-go's in-cluster config (CHAPERONE_IN_CLUSTER_CLIENT). */
export function ensureInClusterClient(log: (line: string) => void = stderrLine): Promise<string> {
  return ensureGoFixture({ name: 'in-cluster-client', envVar: 'CHAPERONE_IN_CLUSTER_CLIENT', what: 'the in-cluster client' }, log);
}
