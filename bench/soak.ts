// The soak: one sidecar inside a memory cgroup of exactly the limit the injector gives it, under
// sustained load for minutes (the overhead section's workloads in turn, at several concurrencies and
// with each credential, while watches stay open and their object keeps changing), its resident
// memory sampled all along and compared with that limit.
import type { AdminClients } from '../local-cluster/kube.js';
import { v8HeapLimit, type MemoryCgroup } from './cgroup.js';
import { NothingSucceeded, runLoad, type Credentials, type Workload } from './load.js';
import { heapBreakdown, type HeapBreakdown } from './metrics.js';
import { bundleNodeFlags, cpuSeconds, resident, type Resident } from './processes.js';
import type { SoakResult } from './results.js';
import type { BenchSidecar, SidecarLauncher } from './sidecar.js';
import { Http1Watches } from './watch-connections.js';
import { WatchFleet } from './watches.js';

export interface SoakPhase {
  workload: Workload;
  connections: number;
  credentials: Credentials;
  method: string;
}

export interface SoakPlan {
  seconds: number;
  phaseSeconds: number;
  watches: number;
  /** Where the watched object is (bench/data.ts). */
  watchNamespace: string;
  /** The credentials the watches are opened with. */
  watchCredentials: Credentials;
}

const SAMPLE_MS = 250;
const HEAP_SAMPLE_MS = 5000;
/** The sidecar collects the garbage of a busy spell 30 to 60 s after its last request (lib/idle-collection.ts). */
const SETTLE_MS = 65_000;
/** Watch updates start far above the watches section's, so the two never share a value. */
const FIRST_SEQ = 1_000_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class Sampler {
  peak: Resident = { totalBytes: 0, anonymousBytes: 0, fileBytes: 0 };
  cgroupPeakBytes = 0;
  cyclePeakBytes = 0;
  heapPeak: HeapBreakdown = { heapUsedBytes: 0, heapTotalBytes: 0, externalBytes: 0 };
  private readonly timers: NodeJS.Timeout[];

  constructor(
    private readonly sidecar: BenchSidecar,
    private readonly cgroup: MemoryCgroup,
  ) {
    this.timers = [setInterval(() => this.sample(), SAMPLE_MS), setInterval(() => void this.sampleHeap(), HEAP_SAMPLE_MS)];
  }

  private sample(): void {
    if (this.sidecar.child.exitCode !== null || this.sidecar.child.signalCode !== null) return;
    const now = resident(this.sidecar.child.pid!);
    if (now.totalBytes > this.peak.totalBytes) this.peak = now;
    this.cyclePeakBytes = Math.max(this.cyclePeakBytes, now.totalBytes);
    this.cgroupPeakBytes = Math.max(this.cgroupPeakBytes, this.cgroup.usageBytes());
  }

  private async sampleHeap(): Promise<void> {
    const heap = await heapBreakdown(this.sidecar.opsUrl).catch(() => undefined);
    if (!heap) return;
    this.heapPeak = {
      heapUsedBytes: Math.max(this.heapPeak.heapUsedBytes, heap.heapUsedBytes),
      heapTotalBytes: Math.max(this.heapPeak.heapTotalBytes, heap.heapTotalBytes),
      externalBytes: Math.max(this.heapPeak.externalBytes, heap.externalBytes),
    };
  }

  /** The peak since the last call. */
  takeCyclePeak(): number {
    this.sample();
    const peak = this.cyclePeakBytes;
    this.cyclePeakBytes = 0;
    return peak;
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.sample();
  }
}

export async function measureSoak(
  start: SidecarLauncher['start'],
  clients: AdminClients,
  cgroup: MemoryCgroup,
  phases: SoakPhase[],
  plan: SoakPlan,
  log: (line: string) => void,
): Promise<SoakResult> {
  const nodeFlags = bundleNodeFlags('sidecar');
  const heapLimitBytes = await v8HeapLimit(cgroup, nodeFlags);
  const sidecar = await start('soak', [], { cgroup });
  const exited = () => sidecar.child.exitCode !== null || sidecar.child.signalCode !== null;
  await sleep(2000);
  const idle = resident(sidecar.child.pid!);
  const idleHeap = await heapBreakdown(sidecar.opsUrl);
  log(`soak: limit ${cgroup.limitBytes / 2 ** 20} MiB, V8 heap limit ${(heapLimitBytes / 2 ** 20).toFixed(0)} MiB (node ${nodeFlags.join(' ')}), idle ${(idle.totalBytes / 2 ** 20).toFixed(1)} MiB`);

  const sampler = new Sampler(sidecar, cgroup);
  const fleet = new WatchFleet(new Http1Watches(sidecar.url, plan.watchCredentials), { namespace: plan.watchNamespace, watches: plan.watches, updates: 1, openConcurrency: 50 });
  let watchEvents = 0;
  let watchError: string | undefined;
  let stopping = false;
  const cyclePeaksBytes: number[] = [];
  let requests = 0;
  let failures = 0;
  const started = Date.now();
  const cpuBefore = cpuSeconds(sidecar.child.pid!);
  try {
    const watched = await clients.core.readNamespacedConfigMap({ name: 'watched', namespace: plan.watchNamespace });
    await fleet.open(watched.metadata!.resourceVersion!);
    const changes = (async () => {
      for (let seq = FIRST_SEQ; !stopping && !exited(); seq++) {
        try {
          watchEvents = (await fleet.run(clients, seq)).delay.count; // every event so far
        } catch (err) {
          watchError = (err as Error).message;
          return;
        }
        await sleep(1000);
      }
    })();
    while (Date.now() - started < plan.seconds * 1000 && !exited()) {
      for (const phase of phases) {
        if (exited()) break;
        try {
          const stats = await runLoad({ base: sidecar.url, workload: phase.workload, credentials: phase.credentials, connections: phase.connections, seconds: plan.phaseSeconds });
          requests += stats.requests;
          failures += stats.errors + Object.values(stats.non2xx).reduce((a, b) => a + b, 0);
        } catch (err) {
          if (!(err instanceof NothingSucceeded)) throw err;
          failures++;
        }
      }
      cyclePeaksBytes.push(sampler.takeCyclePeak());
      log(`soak: ${((Date.now() - started) / 1000).toFixed(0)}s, ${requests} requests, ${watchEvents} watch events, RSS peak this cycle ${(cyclePeaksBytes.at(-1)! / 2 ** 20).toFixed(1)} MiB`);
    }
    stopping = true;
    await changes;
  } finally {
    stopping = true;
    sampler.stop();
    fleet.close();
  }
  const seconds = (Date.now() - started) / 1000;
  const cpuMicrosPerRequest = exited() ? undefined : ((cpuSeconds(sidecar.child.pid!) - cpuBefore) * 1e6) / requests;
  const killed = exited() ? `the sidecar exited (code ${sidecar.child.exitCode}, signal ${sidecar.child.signalCode}) after ${seconds.toFixed(0)}s` : undefined;
  let afterLoad: Resident | undefined;
  let afterLoadHeap: HeapBreakdown | undefined;
  if (!killed) {
    await sleep(SETTLE_MS);
    afterLoad = resident(sidecar.child.pid!);
    afterLoadHeap = await heapBreakdown(sidecar.opsUrl);
  }
  return {
    limitBytes: cgroup.limitBytes,
    cgroupVersion: cgroup.version,
    nodeFlags,
    heapLimitBytes,
    seconds,
    phases: phases.map((p) => `${p.workload.name}, ${p.connections} connections, ${p.method}`),
    watches: plan.watches,
    requests,
    failures,
    ...(cpuMicrosPerRequest === undefined ? {} : { cpuMicrosPerRequest }),
    watchEvents,
    ...(watchError && !killed ? { watchError } : {}),
    rss: { idle, peak: sampler.peak, ...(afterLoad ? { afterLoad } : {}) },
    cyclePeaksBytes,
    cgroupPeakBytes: Math.max(cgroup.peakBytes() ?? 0, sampler.cgroupPeakBytes),
    heap: { idle: idleHeap, peak: sampler.heapPeak, ...(afterLoadHeap ? { afterLoad: afterLoadHeap } : {}) },
    oomKills: cgroup.oomKills(),
    ...(killed ? { killed } : {}),
  };
}
