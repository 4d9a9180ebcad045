// What a process holds, from /proc: resident memory, open file descriptors, and its TCP sockets by
// state (a socket left in CLOSE_WAIT is one the peer closed and the process never did: stuck).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

const TCP_STATES: Readonly<Record<string, string>> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

export interface ProcessStats {
  rssBytes: number;
  fds: number;
  /** The process's TCP sockets, counted by state. */
  tcp: Record<string, number>;
}

function socketInodes(pid: number): { fds: number; inodes: Set<string> } {
  const inodes = new Set<string>();
  const fds = readdirSync(`/proc/${pid}/fd`);
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]!);
    } catch {
      // closed while we looked
    }
  }
  return { fds: fds.length, inodes };
}

export function processStats(pid: number): ProcessStats {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  const { fds, inodes } = socketInodes(pid);
  const tcp: Record<string, number> = {};
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      if (columns.length < 10 || !inodes.has(columns[9]!)) continue;
      const state = TCP_STATES[columns[3]!] ?? columns[3]!;
      tcp[state] = (tcp[state] ?? 0) + 1;
    }
  }
  return { rssBytes: Number(rss?.[1] ?? 0) * 1024, fds, tcp };
}

export function describeStats(stats: ProcessStats): string {
  return `RSS ${(stats.rssBytes / 2 ** 20).toFixed(1)} MiB, ${stats.fds} fds, TCP ${JSON.stringify(stats.tcp)}`;
}
