// The sidecar's warm-up: its CPU time per request second by second, from the moment a freshly
// started production bundle answers /readyz 200, under small GETs at one connection, until it has
// served long enough to be steady. While the first requests run, V8 compiles the hot paths and the
// caches fill; the last seconds of the run are the steady cost the first ones are set against.
import { freePort } from '../local-cluster/control-plane.js';
import { runLoad, type Credentials, type Workload } from './load.js';
import { bundleNodeFlags, cpuSeconds, startBundle, waitUntilOk } from './processes.js';
import type { WarmupResult, WarmupSlice } from './results.js';
import type { SidecarLauncher } from './sidecar.js';
import { summarise } from './stats.js';

const SLICE_MS = 1000;
const READY_POLL_MS = 5;
const READY_TIMEOUT_MS = 30_000;

/** Cuts a run into slices: the answers since the last boundary, and the CPU time the process spent meanwhile. */
export class SliceRecorder {
  readonly slices: WarmupSlice[] = [];
  private latencies: number[] = [];
  private failed = 0;
  private last: { atMs: number; cpuSeconds: number };

  constructor(atMs: number, processCpuSeconds: number) {
    this.last = { atMs, cpuSeconds: processCpuSeconds };
  }

  response(ok: boolean, latencyMs: number): void {
    if (ok) this.latencies.push(latencyMs);
    else this.failed++;
  }

  boundary(atMs: number, processCpuSeconds: number): void {
    this.slices.push({
      seconds: (atMs - this.last.atMs) / 1000,
      requests: this.latencies.length + this.failed,
      failed: this.failed,
      cpuSeconds: processCpuSeconds - this.last.cpuSeconds,
      ...(this.latencies.length > 0 ? { latencyP50Ms: summarise(this.latencies).p50 } : {}),
    });
    this.latencies = [];
    this.failed = 0;
    this.last = { atMs, cpuSeconds: processCpuSeconds };
  }
}

/** CPU microseconds per request over these slices together (undefined when they had no answer). */
export function cpuMicrosPerRequest(slices: readonly WarmupSlice[]): number | undefined {
  const requests = slices.reduce((sum, s) => sum + s.requests, 0);
  if (requests === 0) return undefined;
  return (slices.reduce((sum, s) => sum + s.cpuSeconds, 0) * 1e6) / requests;
}

/** The first and the last `compared` seconds of the run, and the first second's and the first seconds' CPU per request over the steady seconds'. */
export function warmupSummary(result: WarmupResult): { fresh: WarmupSlice[]; steady: WarmupSlice[]; firstSecondRatio?: number; freshRatio?: number } {
  const { perSecond, compared } = result;
  const fresh = perSecond.slice(0, compared);
  const steady = perSecond.slice(Math.max(compared, perSecond.length - compared));
  const steadyCost = cpuMicrosPerRequest(steady);
  const over = (slices: WarmupSlice[]) => {
    const cost = cpuMicrosPerRequest(slices);
    return cost !== undefined && steadyCost ? cost / steadyCost : undefined;
  };
  const [firstSecondRatio, freshRatio] = [over(fresh.slice(0, 1)), over(fresh)];
  return { fresh, steady, ...(firstSecondRatio !== undefined ? { firstSecondRatio } : {}), ...(freshRatio !== undefined ? { freshRatio } : {}) };
}

const sleepUntil = (deadline: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - performance.now())));

/** One run of `seconds` at the load's connections, with the process's CPU time read at every second's end. */
async function slicedLoad(pid: number, load: { base: string; workload: Workload; credentials: Credentials; connections: number }, seconds: number) {
  const started = performance.now();
  const recorder = new SliceRecorder(0, cpuSeconds(pid));
  let firstResponseMs: number | undefined;
  const run = runLoad({
    ...load,
    // A second more than sliced, so that the load is still running at the last boundary.
    seconds: seconds + 1,
    onResponse: (status, latencyMs) => {
      firstResponseMs ??= latencyMs;
      recorder.response(status >= 200 && status < 300, latencyMs);
    },
  });
  run.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
  for (let slice = 1; slice <= seconds; slice++) {
    await sleepUntil(started + slice * SLICE_MS);
    recorder.boundary(performance.now() - started, cpuSeconds(pid));
  }
  await run;
  return { perSecond: recorder.slices, firstResponseMs: firstResponseMs ?? Number.NaN };
}

export interface WarmupPlan {
  workload: Workload;
  method: string;
  credentials: Credentials;
  seconds: number;
  compared: number;
}

/** Starts the production bundle as the image runs it and loads it from the moment /readyz answers 200. */
export async function measureWarmup(launcher: SidecarLauncher, plan: WarmupPlan, stderrFile: string): Promise<WarmupResult> {
  const [port, opsPort] = [await freePort(), await freePort()];
  const nodeFlags = bundleNodeFlags('sidecar');
  const proc = startBundle('sidecar', launcher.args(port, opsPort), { stderrFile, nodeFlags });
  try {
    await waitUntilOk(`http://127.0.0.1:${opsPort}/readyz`, proc, 'the warm-up sidecar', READY_TIMEOUT_MS, READY_POLL_MS);
    const connections = 1;
    const load = { base: `https://127.0.0.1:${port}`, workload: plan.workload, credentials: plan.credentials, connections };
    const run = await slicedLoad(proc.child.pid!, load, plan.seconds);
    return { workload: plan.workload.name, method: plan.method, connections, nodeFlags, ...run, compared: plan.compared };
  } finally {
    await proc.stop();
  }
}
