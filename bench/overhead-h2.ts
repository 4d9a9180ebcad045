// What the sidecar (and a peer) add for HTTP/2 clients, as client-go and Go dashboards are: the same
// h2load runs straight to the API server and through each proxy that chose h2 in ALPN, back to back,
// in alternating order, pair by pair, as the HTTP/1.1 runs of bench/overhead.ts.
import { NothingSucceeded, type LoadStats, type Workload } from './load.js';
import { negotiatedProtocol, runH2Load, type H2Shape } from './load-h2.js';
import { backToBack, recordingCpu, type LoadPlan, type Watched } from './overhead.js';
import type { Http2Pair, Http2Result } from './results.js';
import { compare } from './stats.js';

export interface H2Endpoint {
  /** kube-apiserver, sidecar, or a peer's name: the key of Http2Result.alpn. */
  name: string;
  /** Set for a peer proxy (--peer). */
  peer?: boolean;
  base: string;
  /** Processes whose CPU time to record (the proxy, the API server). */
  watched: Watched;
}

export interface H2Method {
  method: string;
  bearer: string;
  /** The proxies that take this token. */
  proxies: H2Endpoint[];
}

export interface H2Workload {
  workload: Workload;
  /** The length of its body, when every answer is the same object: checked for every run. */
  bodyBytes?: number;
}

export interface H2Plan extends LoadPlan {
  shapes: H2Shape[];
}

/** A warm-up run (discarded), then the measured one, with the CPU time of the watched processes and of h2load. */
async function measureH2(endpoint: H2Endpoint, bearer: string, target: H2Workload, shape: H2Shape, plan: LoadPlan): Promise<LoadStats> {
  const run = { base: endpoint.base, bearer, workload: target.workload, ...shape, ...(target.bodyBytes === undefined ? {} : { bodyBytes: target.bodyBytes }) };
  if (plan.warmupSeconds > 0) {
    await runH2Load({ ...run, seconds: plan.warmupSeconds }).catch((err: unknown) => {
      if (!(err instanceof NothingSucceeded)) throw err;
    });
  }
  return recordingCpu(endpoint.watched, () => runH2Load({ ...run, seconds: plan.seconds }));
}

export async function measureHttp2(
  targets: H2Workload[],
  direct: { endpoint: H2Endpoint; bearer: string },
  methods: H2Method[],
  plan: H2Plan,
  log: (line: string) => void,
): Promise<Http2Result> {
  const endpoints = [direct.endpoint, ...new Set(methods.flatMap((m) => m.proxies))];
  const alpn: Record<string, string> = Object.fromEntries(await Promise.all(endpoints.map(async (e) => [e.name, await negotiatedProtocol(e.base)] as const)));
  log(`HTTP/2: offered h2 and http/1.1 in ALPN, ${Object.entries(alpn).map(([name, protocol]) => `${name} chose ${protocol}`).join(', ')}`);
  if (alpn[direct.endpoint.name] !== 'h2') throw new Error(`${direct.endpoint.name} did not choose h2 in ALPN (${alpn[direct.endpoint.name]}): nothing to compare HTTP/2 runs with`);
  const pairs: Http2Pair[] = [];
  let round = 0;
  for (const target of targets) {
    for (const shape of plan.shapes) {
      for (const { method, bearer, proxies } of methods) {
        const speaking = proxies.filter((p) => alpn[p.name] === 'h2');
        if (speaking.length === 0) continue;
        const runs = [direct, ...speaking.map((endpoint) => ({ endpoint, bearer }))].map(({ endpoint, bearer }) => () => measureH2(endpoint, bearer, target, shape, plan));
        const [directStats, ...throughs] = (await backToBack(runs, round++ % 2 === 0)) as [LoadStats, ...LoadStats[]];
        for (const [i, proxy] of speaking.entries()) {
          const through = throughs[i]!;
          const comparison = compare(directStats, through);
          pairs.push({ workload: target.workload.name, concurrency: shape.connections, streams: shape.streams, ...(proxy.peer ? { proxy: proxy.name } : {}), method, caches: 'warm', direct: directStats, through, comparison });
          log(`HTTP/2 ${target.workload.name} ${shape.connections}×${shape.streams} ${proxy.name} ${method}: ${directStats.rps.toFixed(0)} vs ${through.rps.toFixed(0)}/s, p50 ${comparison.addedP50 >= 0 ? '+' : ''}${comparison.addedP50.toFixed(2)}ms`);
        }
      }
    }
  }
  return { alpn, pairs };
}
