// A memory cgroup of the run's own, limited as the kubelet limits an injected sidecar's container, so
// that the soak runs the sidecar under exactly that limit: Node.js reads it (libuv's constrained
// memory) as it would in the pod, and the kernel kills the process if it goes over. Made under the
// bench's own cgroup, with cgroup v1's memory controller or cgroup v2 with memory enabled; removed
// when the run ends.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';

export interface MemoryCgroup {
  dir: string;
  version: 1 | 2;
  limitBytes: number;
  /** Memory charged to the cgroup now (its processes' memory and the page cache they caused). */
  usageBytes(): number;
  /** The most that was ever charged to it (cgroup v2 before Linux 5.19 has no record: the samples' peak). */
  peakBytes(): number | undefined;
  /** How many times the kernel killed a process of it for going over the limit. */
  oomKills(): number;
  /** A command that joins the cgroup and then runs this one (the same process: `exec`). */
  wrap(command: string[]): string[];
  remove(): Promise<void>;
}

const ROOT = '/sys/fs/cgroup';

function ownCgroup(): { version: 1 | 2; parent: string } {
  const lines = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
  const v1 = lines.map((line) => line.split(':')).find(([, controllers]) => (controllers ?? '').split(',').includes('memory'));
  if (v1 && existsSync(path.join(ROOT, 'memory'))) return { version: 1, parent: path.join(ROOT, 'memory', v1[2] ?? '/') };
  const v2 = lines.find((line) => line.startsWith('0::'));
  if (v2 && existsSync(path.join(ROOT, 'cgroup.controllers')) && readFileSync(path.join(ROOT, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory')) {
    return { version: 2, parent: path.join(ROOT, v2.slice(3)) };
  }
  throw new Error(`the soak needs a memory cgroup it can make (cgroup v1's memory controller at ${ROOT}/memory, or cgroup v2 with the memory controller at ${ROOT}); this machine has neither`);
}

const read = (file: string) => readFileSync(file, 'utf8').trim();
const field = (text: string, name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);

export async function createMemoryCgroup(name: string, limitBytes: number): Promise<MemoryCgroup> {
  const { version, parent } = ownCgroup();
  const dir = path.join(parent, name);
  const file = (base: string) => path.join(dir, base);
  try {
    if (version === 2 && !read(path.join(parent, 'cgroup.subtree_control')).split(/\s+/).includes('memory')) {
      writeFileSync(path.join(parent, 'cgroup.subtree_control'), '+memory');
    }
    await mkdir(dir);
    if (version === 1) {
      writeFileSync(file('memory.limit_in_bytes'), String(limitBytes));
      // Kubernetes nodes run without swap for such pods: over the limit is a kill, not a slowdown.
      if (existsSync(file('memory.memsw.limit_in_bytes'))) writeFileSync(file('memory.memsw.limit_in_bytes'), String(limitBytes));
    } else {
      writeFileSync(file('memory.max'), String(limitBytes));
      if (existsSync(file('memory.swap.max'))) writeFileSync(file('memory.swap.max'), '0');
    }
  } catch (err) {
    await rmdir(dir).catch(() => undefined);
    throw new Error(`cannot make the memory cgroup ${dir} (the soak needs to run as root, or with a delegated cgroup): ${(err as Error).message}`, { cause: err });
  }
  const procs = file('cgroup.procs');
  return {
    dir,
    version,
    limitBytes,
    usageBytes: () => Number(read(file(version === 1 ? 'memory.usage_in_bytes' : 'memory.current'))),
    peakBytes: () => {
      const peak = file(version === 1 ? 'memory.max_usage_in_bytes' : 'memory.peak');
      return existsSync(peak) ? Number(read(peak)) : undefined;
    },
    oomKills: () => field(read(file(version === 1 ? 'memory.oom_control' : 'memory.events')), 'oom_kill'),
    wrap: (command) => ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', procs, ...command],
    remove: async () => {
      // The last process may take a moment to leave after it exited.
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
          if (attempt >= 50) throw new Error(`cannot remove the memory cgroup ${dir}: ${(err as Error).message}`, { cause: err });
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    },
  };
}

/** V8's heap limit for node with these flags inside the cgroup: what Node.js made of its memory limit. */
export function v8HeapLimit(cgroup: MemoryCgroup, flags: string[]): Promise<number> {
  const [program, ...args] = cgroup.wrap([process.execPath, ...flags, '-e', "process.stdout.write(String(require('node:v8').getHeapStatistics().heap_size_limit))"]);
  return new Promise((resolve, reject) => {
    execFile(program!, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`node ${flags.join(' ')} did not start in the memory cgroup: ${stderr.trim() || err.message}`));
      else resolve(Number(stdout));
    });
  });
}
