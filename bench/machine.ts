// The machine a run is measured on, and how busy it was: on a shared machine the absolute numbers
// move with whatever else runs, and the report must say so.
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

export interface Busy {
  /** 1, 5 and 15 minute load averages. */
  load: number[];
  /** How many processes of the kinds that compete for the CPU in this project's work ran (this run's own included). */
  processes: Record<string, number>;
}

/** Command names (/proc/<pid>/comm, at most 15 characters) and what to call them. */
const WATCHED: [string, string][] = [
  ['kube-apiserver', 'kube-apiserver'],
  ['etcd', 'etcd'],
  ['kube-controller', 'kube-controller-manager'],
  ['MainThread', 'node'], // Node.js names its main thread so
  ['node', 'node'],
  ['go', 'go'],
  ['esbuild', 'esbuild'],
];

export function busy(): Busy {
  const processes: Record<string, number> = {};
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
    } catch {
      continue; // gone meanwhile
    }
    const label = WATCHED.find(([name]) => comm === name)?.[1];
    if (label) processes[label] = (processes[label] ?? 0) + 1;
  }
  return { load: os.loadavg().map((value) => Math.round(value * 100) / 100), processes };
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  os: string;
  node: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}
