// The images without a Docker engine: what a Dockerfile says (stages, what the runtime stage copies,
// its user and entrypoint), what .dockerignore leaves out of the build context, and the runtime
// stage's filesystem laid out in a directory, so a test runs exactly the command the image runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DIST, REPO } from '../scripts/build-artefacts.js';

export interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  args: string;
  line: number;
}

export interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** The stages of a Dockerfile, in order, with their instructions (comments and blank lines dropped). */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    let joined = lines[i]!.trim();
    if (joined === '' || joined.startsWith('#')) continue;
    while (joined.endsWith('\\') && i + 1 < lines.length) {
      i++;
      const next = lines[i]!.trim();
      if (next.startsWith('#')) continue;
      joined = `${joined.slice(0, -1).trimEnd()} ${next}`;
    }
    const match = /^(\S+)\s*(.*)$/.exec(joined)!;
    const instruction = { keyword: match[1]!.toUpperCase(), args: match[2]!, line };
    if (instruction.keyword === 'FROM') {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (!from) throw new Error(`line ${line}: cannot read FROM ${instruction.args}`);
      stages.push({ from: from[1]!, ...(from[2] ? { name: from[2] } : {}), instructions: [] });
    } else {
      if (stages.length === 0) {
        if (instruction.keyword === 'ARG') continue;
        throw new Error(`line ${line}: ${instruction.keyword} before the first FROM`);
      }
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return stages;
}

export function instructions(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** The exec (JSON) form of ENTRYPOINT, CMD or RUN; throws on the shell form, which needs a shell. */
export function execForm(instruction: Instruction): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(instruction.args);
  } catch {
    throw new Error(`line ${instruction.line}: ${instruction.keyword} is in shell form (${instruction.args}), which runs /bin/sh -c`);
  }
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) throw new Error(`line ${instruction.line}: ${instruction.keyword} is not a list of strings`);
  return parsed;
}

export interface Copy {
  /** --from=<stage>, when it copies from another stage. */
  from?: string;
  flags: string[];
  sources: string[];
  dest: string;
}

export function copies(stage: Stage): Copy[] {
  return instructions(stage, 'COPY').map((instruction) => {
    const words = instruction.args.startsWith('[') ? execForm(instruction) : instruction.args.split(/\s+/);
    const flags = words.filter((word) => word.startsWith('--'));
    const paths = words.filter((word) => !word.startsWith('--'));
    const from = flags.find((flag) => flag.startsWith('--from='))?.slice('--from='.length);
    if (paths.length < 2) throw new Error(`line ${instruction.line}: COPY needs a source and a destination`);
    return { ...(from ? { from } : {}), flags, sources: paths.slice(0, -1), dest: paths.at(-1)! };
  });
}

/** The stage's ARG defaults. */
function argDefaults(stage: Stage): Record<string, string> {
  const defaults: Record<string, string> = {};
  for (const { args } of instructions(stage, 'ARG')) {
    const [name, value] = args.split('=', 2) as [string, string | undefined];
    if (value !== undefined) defaults[name] = value;
  }
  return defaults;
}

/** LABEL key="value" pairs, with ${ARG} replaced by the stage's ARG defaults. */
export function labels(stage: Stage): Record<string, string> {
  const defaults = argDefaults(stage);
  const result: Record<string, string> = {};
  for (const { args, line } of instructions(stage, 'LABEL')) {
    const pair = /\s*([^\s=]+)="((?:[^"\\]|\\.)*)"/y;
    let match;
    let end = 0;
    while ((match = pair.exec(args))) {
      result[match[1]!] = match[2]!.replace(/\$\{(\w+)\}/g, (whole, name: string) => defaults[name] ?? whole);
      end = pair.lastIndex;
    }
    if (args.slice(end).trim() !== '') throw new Error(`line ${line}: cannot read LABEL ${args.slice(end)} (write key="value")`);
  }
  return result;
}

/** ENV KEY=value pairs (the only form the Dockerfiles use), in order. */
export function environment(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args, line } of instructions(stage, 'ENV')) {
    for (const pair of args.split(/\s+/)) {
      const match = /^([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/.exec(pair);
      if (!match) throw new Error(`line ${line}: cannot read ENV ${args} (only KEY=value pairs)`);
      env[match[1]!] = match[2]!;
    }
  }
  return env;
}

// ---- .dockerignore ----

/** A .dockerignore's patterns, in order; a leading ! re-includes. */
export function parseDockerignore(text: string): { pattern: RegExp; include: boolean }[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const include = line.startsWith('!');
      const glob = path.posix.normalize((include ? line.slice(1) : line).trim()).replace(/^\/+|\/+$/g, '');
      if (/[[\]\\]/.test(glob)) throw new Error(`.dockerignore: this reader does not know character classes or escapes (${line})`);
      const source = glob
        .split('/')
        .map((part) => (part === '**' ? '.*' : part.replace(/[.+^${}()|]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return { pattern: new RegExp(`^${source}$`), include };
    });
}

/**
 * Whether Docker leaves a file (relative to the context) out of the build context: the last pattern
 * that matches the file or one of its parent directories decides.
 */
export function dockerignored(rules: ReturnType<typeof parseDockerignore>, file: string): boolean {
  const parts = file.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const rule of rules) if (candidates.some((candidate) => rule.pattern.test(candidate))) ignored = !rule.include;
  return ignored;
}

// ---- the runtime stage, in a directory ----

export const DISTROLESS_NODE = '/nodejs/bin/node';

/** The image's filesystem in a directory: only what the runtime stage copies is in it. */
export interface StagedImage {
  workdir: string;
  /** ENTRYPOINT + CMD, with the image's paths moved under root and its node the Node 24 running the tests. */
  command: string[];
  /** USER, as uid and gid. */
  user: { uid: number; gid: number };
  /** ENV, with the image's paths moved under root as the command's are. */
  env: Record<string, string>;
  /** An image path as it is in the directory. */
  local(imagePath: string): string;
  remove(): Promise<void>;
}

/** A Dockerfile of this repository: a named build stage, then the runtime stage. */
export async function readDockerfile(file: string): Promise<{ build: Stage; runtime: Stage }> {
  const stages = parseDockerfile(await readFile(path.join(REPO, file), 'utf8'));
  if (stages.length !== 2 || !stages[0]!.name) throw new Error(`${file}: expected a named build stage and a runtime stage`);
  return { build: stages[0]!, runtime: stages[1]! };
}

/** The numeric USER uid:gid; throws on a name, which Kubernetes' runAsNonRoot cannot verify. */
export function numericUser(stage: Stage): { uid: number; gid: number } {
  const user = instructions(stage, 'USER').at(-1)?.args;
  const match = /^(\d+):(\d+)$/.exec(user ?? '');
  if (!match) throw new Error(`USER is ${user ?? 'not set'}, not a numeric uid:gid`);
  return { uid: Number(match[1]), gid: Number(match[2]) };
}

/**
 * The runtime stage of a Dockerfile laid out in a fresh directory: the files its COPY --from=<build
 * stage> takes from the build stage's dist/ are taken from this checkout's dist/ (which the same
 * script built), world-readable as in the image, and nothing else; no node_modules anywhere above it.
 */
export async function stageImage(dockerfile: string): Promise<StagedImage> {
  const { build, runtime } = await readDockerfile(dockerfile);
  const buildWorkdir = instructions(build, 'WORKDIR').at(-1)?.args ?? '/';
  const root = await mkdtemp(path.join(tmpdir(), 'chaperone-image-'));
  const local = (imagePath: string) => path.join(root, imagePath);
  try {
    for (const ancestor of ancestors(root)) {
      if (existsSync(path.join(ancestor, 'node_modules'))) throw new Error(`${ancestor}/node_modules exists: the staged image would not prove the bundle is self-contained`);
    }
    await chmod(root, 0o755);
    for (const copy of copies(runtime)) {
      if (copy.from !== build.name) throw new Error(`${dockerfile}: COPY ${copy.sources.join(' ')} does not come from the build stage`);
      if (!copy.dest.endsWith('/')) throw new Error(`${dockerfile}: COPY into ${copy.dest} is not into a directory`);
      await mkdir(local(copy.dest), { recursive: true, mode: 0o755 });
      for (const source of copy.sources) {
        const inDist = path.posix.relative(path.posix.join(buildWorkdir, 'dist'), source);
        if (inDist.startsWith('..') || inDist.includes('/')) throw new Error(`${dockerfile}: COPY ${source} is not a file of the build stage's dist/`);
        const target = path.join(local(copy.dest), inDist);
        await copyFile(path.join(DIST, inDist), target);
        await chmod(target, 0o644);
      }
    }
    const command = [...execForm(instructions(runtime, 'ENTRYPOINT').at(-1)!), ...(instructions(runtime, 'CMD').map(execForm).at(-1) ?? [])];
    return {
      workdir: local(instructions(runtime, 'WORKDIR').at(-1)?.args ?? '/'),
      command: command.map((arg, i) => (i === 0 && arg === DISTROLESS_NODE ? process.execPath : arg.startsWith('/') ? local(arg) : arg)),
      user: numericUser(runtime),
      env: Object.fromEntries(Object.entries(environment(runtime)).map(([key, value]) => [key, value.startsWith('/') ? local(value) : value])),
      local,
      remove: () => rm(root, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

function ancestors(dir: string): string[] {
  const result = [dir];
  while (path.dirname(result.at(-1)!) !== result.at(-1)) result.push(path.dirname(result.at(-1)!));
  return result;
}

/** Whom the staged image's processes run as: its USER when the tests run as root, else the tests' own (non-root) user. */
export function runAs(image: StagedImage): { uid: number; gid: number } | undefined {
  return process.getuid?.() === 0 ? image.user : undefined;
}

/** The real uid of a running process, from /proc (the harness runs on Linux). */
export async function processUid(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const uid = /^Uid:\s+(\d+)/m.exec(status);
  if (!uid) throw new Error(`/proc/${pid}/status has no Uid line`);
  return Number(uid[1]);
}

export interface ImageProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  stop(): Promise<void>;
}

/** Runs the image's command with more arguments, as its USER, with the image's environment and the one given (a container's). */
export function runImage(image: StagedImage, args: string[], env: Record<string, string> = {}): ImageProcess {
  const [binary, ...rest] = image.command;
  const child = spawn(binary!, [...rest, ...args], { cwd: image.workdir, env: { ...image.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...runAs(image) });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
