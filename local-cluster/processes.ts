// Child processes of the harness: started with their output in files, stopped by pid, and reaped on
// the next run if this one died before it could clean up (a SIGKILLed test runner, for one).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive } from './pids.js';
import { cacheRoot } from './binaries.js';

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
}

export function startProcess(name: string, binary: string, args: string[], logFile: string): ManagedProcess {
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { name, child, logFile, exited };
}

export async function logTail(file: string, lines = 40): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function stopProcess(proc: ManagedProcess, graceMs = 10_000): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  await proc.exited;
  clearTimeout(timer);
}

// ---- the registry of running control planes, for reaping after a crash ----

interface Registration {
  runner: number;
  dir: string;
  pids: number[];
}

function registryDir(): string {
  return path.join(cacheRoot(), 'running');
}


/** A pid is ours only if its command line still names our temp dir: pids get reused. */
function belongsTo(pid: number, dir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

export function register(dir: string, pids: number[]): string {
  mkdirSync(registryDir(), { recursive: true });
  const file = path.join(registryDir(), `${process.pid}-${path.basename(dir)}.json`);
  writeFileSync(file, JSON.stringify({ runner: process.pid, dir, pids } satisfies Registration));
  return file;
}

export function unregister(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

/** Kills what a dead test run left behind and removes its temp dir. */
export function reapOrphans(log: (line: string) => void): void {
  if (!existsSync(registryDir())) return;
  for (const name of readdirSync(registryDir())) {
    const file = path.join(registryDir(), name);
    let registration: Registration;
    try {
      registration = JSON.parse(readFileSync(file, 'utf8')) as Registration;
    } catch {
      unlinkSync(file);
      continue;
    }
    if (isAlive(registration.runner)) continue;
    for (const pid of registration.pids) {
      if (isAlive(pid) && belongsTo(pid, registration.dir)) {
        log(`stopping pid ${pid} left behind by a test run that died (pid ${registration.runner})`);
        process.kill(pid, 'SIGKILL');
      }
    }
    rmSync(registration.dir, { recursive: true, force: true });
    unlinkSync(file);
  }
}
