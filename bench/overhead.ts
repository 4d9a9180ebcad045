// What the sidecar adds to a request: the same load straight to the API server and through the
// sidecar, back to back, pair by pair, with the order alternated so that drift in the machine's
// load does not always favour one side.
import { NothingSucceeded, runLoad, type Credentials, type LoadStats, type Workload } from './load.js';
import type { OverheadPair } from './results.js';
import { cpuSeconds } from './processes.js';
import { compare } from './stats.js';

export interface Route {
  /** The proxy the requests go through: chaperone's sidecar unless set (a --peer's name). */
  proxy?: string;
  method: string;
  caches: 'warm' | 'cold';
  base: string;
  credentials: Credentials;
  /** Only these workloads, by name; all when unset. */
  workloads?: string[];
  /** The sidecar's authorization cache lookups so far (from its /metrics). */
  cacheLookups?: () => Promise<{ hits: number; misses: number }>;
  /** Processes whose CPU time to record (the sidecar, the API server). */
  watched?: Watched;
  /** A peer proxy measured with the same load back to back with this route, sharing its direct run. */
  alongside?: Route;
}

export interface LoadPlan {
  seconds: number;
  warmupSeconds: number;
}

/** Processes whose CPU time a run records, per request, by name. */
export type Watched = Record<string, number>;

/** Completed lists a paged run waits for, so that its latencies are more than one or two lists. */
const MIN_LISTS = 10;

/** Adds to what a run recorded the CPU time each watched process spent during it, per HTTP request. */
export async function recordingCpu(watched: Watched, run: () => Promise<LoadStats>): Promise<LoadStats> {
  const before = Object.entries(watched).map(([name, pid]) => [name, pid, cpuSeconds(pid)] as const);
  const stats = await run();
  stats.cpuMicrosPerRequest = { ...stats.cpuMicrosPerRequest, ...Object.fromEntries(before.map(([name, pid, seconds]) => [name, ((cpuSeconds(pid) - seconds) * 1e6) / stats.requests])) };
  return stats;
}

/** Runs these one after the other, in their order or the reverse; the results in their order. */
export async function backToBack<T>(runs: readonly (() => Promise<T>)[], forward: boolean): Promise<T[]> {
  const results: T[] = new Array<T>(runs.length);
  const order = runs.map((_, i) => i);
  for (const i of forward ? order : order.reverse()) results[i] = await runs[i]!();
  return results;
}

/**
 * A warm-up run (discarded: it may even be too short for a whole paged list), then the measured
 * one, with the CPU time each watched process spent on it, per HTTP request.
 */
export async function measure(base: string, workload: Workload, credentials: Credentials, connections: number, plan: LoadPlan, watched: Watched = {}): Promise<LoadStats> {
  const run = { base, workload, credentials, connections };
  if (plan.warmupSeconds > 0) {
    await runLoad({ ...run, seconds: plan.warmupSeconds }).catch((err: unknown) => {
      if (!(err instanceof NothingSucceeded)) throw err;
    });
  }
  return recordingCpu(watched, () => runLoad({ ...run, seconds: plan.seconds, ...(workload.maxPages ? { minOperations: MIN_LISTS, maxSeconds: plan.seconds * 8 } : {}) }));
}

export async function measureOverhead(
  workloads: Workload[],
  concurrencies: number[],
  direct: { base: string; credentials: Credentials; watched?: Watched },
  routes: Route[],
  plan: LoadPlan,
  log: (line: string) => void,
): Promise<OverheadPair[]> {
  const pairs: OverheadPair[] = [];
  let round = 0;
  for (const workload of workloads) {
    for (const concurrency of concurrencies) {
      for (const route of routes.filter((r) => !r.workloads || r.workloads.includes(workload.name))) {
        const straight = async () => ({ stats: await measure(direct.base, workload, direct.credentials, concurrency, plan, direct.watched), cache: undefined });
        const proxied = async (through: Route) => {
          const before = await through.cacheLookups?.();
          const stats = await measure(through.base, workload, through.credentials, concurrency, plan, through.watched);
          const after = await through.cacheLookups?.();
          return { stats, cache: before && after ? { hits: after.hits - before.hits, misses: after.misses - before.misses } : undefined };
        };
        // Alternated: direct, sidecar, peer, then peer, sidecar, direct; the sidecar and its peer always side by side.
        const throughs = [route, ...(route.alongside ? [route.alongside] : [])];
        const [first, ...measured] = await backToBack([straight, ...throughs.map((through) => () => proxied(through))], round++ % 2 === 0);
        const directStats = first!.stats;
        for (const [i, through] of throughs.entries()) {
          const { stats, cache } = measured[i]!;
          const comparison = compare(directStats, stats);
          pairs.push({
            workload: workload.name,
            concurrency,
            ...(through.proxy ? { proxy: through.proxy } : {}),
            method: through.method,
            caches: through.caches,
            direct: directStats,
            through: stats,
            comparison,
            ...(cache ? { authorizationCache: cache } : {}),
          });
          log(
            `${workload.name} c=${concurrency} ${through.proxy ? `${through.proxy} ` : ''}${through.method} (${through.caches}): ${directStats.rps.toFixed(0)} vs ${stats.rps.toFixed(0)}/s, ` +
              `ratio ${comparison.throughputRatio.toFixed(2)}, p50 +${comparison.addedP50.toFixed(2)}ms`,
          );
        }
      }
    }
  }
  return pairs;
}
