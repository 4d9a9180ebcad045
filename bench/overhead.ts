// What the sidecar adds to a request: the same load straight to the API server and through the
// sidecar, back to back, pair by pair, with the order alternated so that drift in the machine's
// load does not always favour one side.
import { NothingSucceeded, runLoad, type Credentials, type LoadStats, type Workload } from './load.js';
import type { OverheadPair } from './results.js';
import { cpuSeconds } from './processes.js';
import { compare } from './stats.js';

export interface Route {
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
}

export interface LoadPlan {
  seconds: number;
  warmupSeconds: number;
}

/** Processes whose CPU time a run records, per request, by name. */
export type Watched = Record<string, number>;

/** Completed lists a paged run waits for, so that its latencies are more than one or two lists. */
const MIN_LISTS = 10;

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
  const before = Object.entries(watched).map(([name, pid]) => [name, pid, cpuSeconds(pid)] as const);
  const stats = await runLoad({ ...run, seconds: plan.seconds, ...(workload.maxPages ? { minOperations: MIN_LISTS, maxSeconds: plan.seconds * 8 } : {}) });
  stats.cpuMicrosPerRequest = Object.fromEntries(before.map(([name, pid, seconds]) => [name, ((cpuSeconds(pid) - seconds) * 1e6) / stats.requests]));
  return stats;
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
  for (const workload of workloads) {
    for (const concurrency of concurrencies) {
      for (const route of routes.filter((r) => !r.workloads || r.workloads.includes(workload.name))) {
        const straight = () => measure(direct.base, workload, direct.credentials, concurrency, plan, direct.watched);
        const proxied = async () => {
          const before = await route.cacheLookups?.();
          const stats = await measure(route.base, workload, route.credentials, concurrency, plan, route.watched);
          const after = await route.cacheLookups?.();
          return { stats, cache: before && after ? { hits: after.hits - before.hits, misses: after.misses - before.misses } : undefined };
        };
        let directStats: LoadStats;
        let through: Awaited<ReturnType<typeof proxied>>;
        if (pairs.length % 2 === 0) {
          directStats = await straight();
          through = await proxied();
        } else {
          through = await proxied();
          directStats = await straight();
        }
        const comparison = compare(directStats, through.stats);
        pairs.push({
          workload: workload.name,
          concurrency,
          method: route.method,
          caches: route.caches,
          direct: directStats,
          through: through.stats,
          comparison,
          ...(through.cache ? { authorizationCache: through.cache } : {}),
        });
        log(
          `${workload.name} c=${concurrency} ${route.method} (${route.caches}): ${directStats.rps.toFixed(0)} vs ${through.stats.rps.toFixed(0)}/s, ` +
            `ratio ${comparison.throughputRatio.toFixed(2)}, p50 +${comparison.addedP50.toFixed(2)}ms`,
        );
      }
    }
  }
  return pairs;
}
