// chaperone's production bundles (dist/, from `npm run build:artefacts`) run as their own processes,
// as the images run them, so that the load generator never shares an event loop with what it
// measures; their resident memory read from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { copies, environment, execForm, instructions, readDockerfile } from '../local-cluster/images.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export type Bundle = 'sidecar' | 'injector';

const chosen = new Map<Bundle, string>();

/** Runs this file instead of dist/<name>.mjs (to compare two builds). */
export function useBundle(name: Bundle, file: string): void {
  chosen.set(name, path.resolve(file));
}

export function bundlePath(name: Bundle): string {
  const file = chosen.get(name) ?? path.join(REPO, 'dist', `${name}.mjs`);
  if (!existsSync(file)) throw new Error(`${path.relative(REPO, file)} is missing: the benchmarks run the production bundles; build them with npm run build:artefacts`);
  return file;
}

const nodeFlags = new Map<Bundle, string[]>();
const imageEnv = new Map<Bundle, Record<string, string>>();

/** How Dockerfile.<name> runs the bundle: node's flags (its ENTRYPOINT between node and the bundle) and its ENV. */
export async function imageRuntime(name: Bundle): Promise<{ nodeFlags: string[]; env: Record<string, string> }> {
  const { runtime } = await readDockerfile(`Dockerfile.${name}`);
  const entrypoint = execForm(instructions(runtime, 'ENTRYPOINT').at(-1)!);
  // A file the image copies from dist/ (the sidecar's LD_PRELOAD) is that file in dist/ here.
  const fromDist = new Map(copies(runtime).flatMap((copy) => copy.sources.map((source) => [path.posix.join(copy.dest, path.posix.basename(source)), path.join(REPO, 'dist', path.posix.basename(source))])));
  const env = Object.fromEntries(Object.entries(environment(runtime)).map(([key, value]) => [key, fromDist.get(value) ?? value]));
  return { nodeFlags: entrypoint.slice(1, -1), env };
}

/** Runs the bundle with these flags instead of its image's (to measure a lever before the image takes it). */
export function useNodeFlags(name: Bundle, flags: string[]): void {
  nodeFlags.set(name, flags);
}

/** Reads the images' flags (unless useNodeFlags chose others) and environment; before any startBundle. */
export async function loadNodeFlags(): Promise<void> {
  for (const name of ['sidecar', 'injector'] as const) {
    const image = await imageRuntime(name);
    if (!nodeFlags.has(name)) nodeFlags.set(name, image.nodeFlags);
    imageEnv.set(name, image.env);
  }
}

/** The flags startBundle gives node for this bundle, unless told others. */
export function bundleNodeFlags(name: Bundle): string[] {
  const flags = nodeFlags.get(name);
  if (!flags) throw new Error('loadNodeFlags() was not called');
  return flags;
}

/** The environment the image sets for this bundle (its ENV), which startBundle adds. */
export function bundleImageEnv(name: Bundle): Record<string, string> {
  const env = imageEnv.get(name);
  if (!env) throw new Error('loadNodeFlags() was not called');
  return env;
}

export interface StartOptions {
  /** Where its standard error (the operational log) goes; standard output (audit events) is discarded. */
  stderrFile: string;
  /** Write a V8 CPU profile into this directory when the process exits. */
  cpuProfileDir?: string;
  /** Node's flags; the image's own (or those of useNodeFlags) unless given. */
  nodeFlags?: string[];
  /** Runs this script of the bench's own (through tsx) in the bundle's place, as the image would run the bundle. */
  script?: string;
  /** Runs it in this memory cgroup (bench/cgroup.ts), from its first allocation. */
  cgroup?: { wrap(command: string[]): string[] };
}

export interface BundleProcess {
  child: ChildProcess;
  /** Resident set size now, in bytes. */
  rss(): number;
  /** SIGTERM, and wait until it has exited. */
  stop(): Promise<void>;
}

export function startBundle(name: Bundle, args: string[], options: StartOptions): BundleProcess {
  const node = [...(options.nodeFlags ?? bundleNodeFlags(name)), ...(options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`] : [])];
  // As in a pod: none of the harness's own CHAPERONE_* variables, which chaperone would refuse as unknown configuration.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('CHAPERONE_'))), ...imageEnv.get(name) };
  const stderr = openSync(options.stderrFile, 'a');
  const program = options.script ? ['--import', 'tsx', path.join(REPO, options.script)] : [bundlePath(name)];
  const command = [process.execPath, ...node, ...program, ...args];
  const [executable, ...rest] = options.cgroup ? options.cgroup.wrap(command) : command;
  const child = spawn(executable!, rest, { env, stdio: ['ignore', 'ignore', stderr] });
  closeSync(stderr);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    rss: () => residentBytes(child.pid!),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** VmRSS of a process, from /proc (Linux). */
export function residentBytes(pid: number): number {
  return resident(pid).totalBytes;
}

/** A process's resident memory: its own (anonymous: heaps, stacks) and pages of files (the node binary, mostly). */
export interface Resident {
  totalBytes: number;
  anonymousBytes: number;
  fileBytes: number;
}

export function resident(pid: number): Resident {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!match) throw new Error(`no ${name} for pid ${pid}`);
    return Number(match[1]) * 1024;
  };
  return { totalBytes: kib('VmRSS'), anonymousBytes: kib('RssAnon'), fileBytes: kib('RssFile') + kib('RssShmem') };
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ, the unit of /proc/<pid>/stat on Linux

/**
 * The fields of /proc/<pid>/stat after "(command)", from the state on: utime (the line's 14th field)
 * is [11], stime [12], cutime and cstime (its children's, once waited for) [13] and [14].
 */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU time a process has used so far, user and system, every thread, in seconds. */
export function cpuSeconds(pid: number): number {
  const fields = statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU time, user and system, of this process's children that have ended and been waited for, in
 * seconds: a child's whole run, counted once it exits.
 */
export function childrenCpuSeconds(): number {
  const fields = statFields(readFileSync('/proc/self/stat', 'utf8'));
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_SECOND;
}

/** The process whose command line holds this text (one of the harness's, by its temp dir). */
export function findProcess(name: string, text: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== name) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no ${name} process with ${text} in its command line`);
}

/** Samples a process's resident memory until stopped; keeps the peak. */
export class PeakMemory {
  peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly process: BundleProcess,
    intervalMs = 100,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    if (this.process.child.exitCode !== null) return;
    this.peak = Math.max(this.peak, this.process.rss());
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

/** The status of one GET, 0 when there was no answer; https is not verified (a probe, as the kubelet's). */
export function probe(url: string): Promise<number> {
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolve) => {
    const req = get(url, { timeout: 2000, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

/** Polls the URL until it answers 200; fails when the process exits or the time is up. */
export async function waitUntilOk(url: string, proc: BundleProcess, what: string, timeoutMs = 60_000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`${what} exited with code ${proc.child.exitCode} before ${url} answered`);
    if ((await probe(url)) === 200) return;
    if (Date.now() > deadline) throw new Error(`${what}: ${url} did not answer 200 within ${timeoutMs / 1000}s`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
