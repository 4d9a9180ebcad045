// What a local node may leave on the host, looked at before it starts, while it runs and after it
// stopped: mounts, network links and namespaces, cgroups, firewall rules, kernel settings, the
// kubelet's and containerd's fixed directories, and processes. Another run's node, if one runs at
// the same time, has things of its own on the host: they are not held against this one.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { otherRunningNodes } from '../../local-cluster/node.js';

const run = promisify(execFile);

export interface HostSnapshot {
  mounts: string[];
  links: string[];
  netns: string[];
  cgroups: string[];
  firewall: string;
  tunables: Record<string, string>;
  paths: Record<string, boolean>;
}

/** What identifies a node's things on the host. */
export interface NodeTraces {
  name: string;
  dir: string;
  bridge: string;
}

const TUNABLES = ['vm/overcommit_memory', 'vm/panic_on_oom', 'kernel/panic', 'kernel/panic_on_oops', 'kernel/keys/root_maxkeys', 'kernel/keys/root_maxbytes', 'net/ipv4/ip_forward'];
const NODE_PATHS = ['/var/lib/kubelet', '/var/lib/containerd', '/run/containerd', '/var/log/pods', '/var/log/containers', '/var/lib/cni', '/etc/cni', '/opt/containerd', '/var/run/netns'];

async function commandOutput(command: string, args: string[]): Promise<string | undefined> {
  try {
    return (await run(command, args)).stdout;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function cgroupDirs(): string[] {
  const root = '/sys/fs/cgroup';
  return readdirSync(root).flatMap((hierarchy) => {
    try {
      return readdirSync(path.join(root, hierarchy), { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => `${hierarchy}/${entry.name}`);
    } catch {
      return [];
    }
  });
}

export async function hostSnapshot(): Promise<HostSnapshot> {
  const iptables = await commandOutput('iptables-save', []);
  const nft = await commandOutput('nft', ['list', 'ruleset']);
  return {
    mounts: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => line.split(' ').slice(3, 5).join(' ')),
    links: (await run('ip', ['-o', 'link'])).stdout.split('\n').filter(Boolean).map((line) => line.split(':')[1]!.trim().replace(/@.*$/, '')),
    netns: existsSync('/var/run/netns') ? readdirSync('/var/run/netns') : [],
    cgroups: cgroupDirs(),
    firewall: `iptables: ${iptables ?? '(not installed)'}\nnft: ${nft ?? '(not installed)'}`,
    tunables: Object.fromEntries(TUNABLES.map((name) => [name, readFileSync(`/proc/sys/${name}`, 'utf8').trim()])),
    paths: Object.fromEntries(NODE_PATHS.map((p) => [p, existsSync(p)])),
  };
}

const added = (before: string[], after: string[]) => after.filter((item) => !before.includes(item));

/** The pods' veth pairs on the node's bridge. */
export async function bridgeVeths(bridge: string): Promise<string[]> {
  return (await run('ip', ['-o', 'link', 'show', 'master', bridge])).stdout.split('\n').filter(Boolean).map((line) => line.split(':')[1]!.trim().replace(/@.*$/, ''));
}

/** The processes whose command line names `dir`. */
export function processesNaming(dir: string): string[] {
  return readdirSync('/proc').filter((pid) => {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) return false;
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
    } catch {
      return false;
    }
  });
}

/** What the check looks for is there while the node runs, or the check would prove nothing. */
export function assertNodeOnHost(before: HostSnapshot, running: HostSnapshot, node: NodeTraces, veths: string[]): void {
  assert.ok(added(before.mounts, running.mounts).some((mount) => mount.includes(node.dir)), 'the node has mounts under its dir');
  assert.ok(running.links.includes(node.bridge), 'the node has its bridge');
  assert.ok(added(before.links, running.links).some((link) => link.startsWith('veth')), "the pods' veth pairs are on the host");
  assert.ok(veths.length > 0, `the pods' veths on ${node.bridge}: none`);
  assert.ok(added(before.cgroups, running.cgroups).some((cgroup) => cgroup.endsWith(`/${node.name}`)), 'the node has its cgroups');
  assert.ok(processesNaming(node.dir).length > 0, 'processes name the node dir');
}

/** Nothing of the node's is left: compared with the host before it started, and its pods' veths gone. */
export function assertNothingLeft(before: HostSnapshot, after: HostSnapshot, node: NodeTraces, veths: string[]): void {
  const others = otherRunningNodes(node.name);
  const notOthers = (item: string) => !others.some((other) => item.includes(other.dir) || item.includes(other.bridge) || item.includes(other.name));
  const othersVeth = (link: string) => others.length > 0 && link.startsWith('veth') && !veths.includes(link);
  assert.deepEqual(added(before.mounts, after.mounts).filter(notOthers), []);
  assert.deepEqual(added(before.links, after.links).filter(notOthers).filter((link) => !othersVeth(link)), []);
  for (const veth of veths) assert.ok(!after.links.includes(veth), veth);
  assert.deepEqual(added(before.netns, after.netns).filter(() => others.length === 0), []);
  assert.deepEqual(added(before.cgroups, after.cgroups).filter(notOthers), []);
  assert.equal(after.firewall, before.firewall);
  if (others.length === 0) {
    assert.deepEqual(after.tunables, before.tunables);
    assert.deepEqual(after.paths, before.paths);
  } else {
    // The last node to stop puts them back, from what they were before any node started.
    process.stderr.write(`      (the kernel settings and the kubelet's fixed directories are left to ${others.map((other) => other.name).join(', ')}, still running, to put back)\n`);
  }
  assert.deepEqual(processesNaming(node.dir), []);
  assert.equal(existsSync(node.dir), false);
}
