// Time from starting the production bundle to the sidecar answering /healthz (listening) and
// /readyz (it can serve a person: token read, API server reached, every authenticator ready), as a
// kubelet would see it, polled every few milliseconds; then its resident memory, idle; then what its
// first seconds of requests cost against later ones (bench/warmup.ts).
import { freePort } from '../local-cluster/control-plane.js';
import { bundleNodeFlags, probe, startBundle } from './processes.js';
import type { StartupResult, StartupVariant } from './results.js';
import type { SidecarLauncher } from './sidecar.js';
import { summarise } from './stats.js';
import { measureWarmup, type WarmupPlan } from './warmup.js';

const POLL_MS = 5;
const TIMEOUT_MS = 30_000;
const SETTLE_MS = 2000;

async function until(url: string, started: bigint, exited: () => boolean): Promise<number> {
  for (;;) {
    if ((await probe(url)) === 200) return Number(process.hrtime.bigint() - started) / 1e6;
    if (exited()) throw new Error(`the sidecar exited before ${url} answered 200`);
    if (Number(process.hrtime.bigint() - started) / 1e6 > TIMEOUT_MS) throw new Error(`${url} did not answer 200 within ${TIMEOUT_MS / 1000}s`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function variant(launcher: SidecarLauncher, runs: number, nodeFlags: string[], stderrFile: string): Promise<StartupVariant> {
  const healthz: number[] = [];
  const readyz: number[] = [];
  let idleRssBytes = 0;
  for (let i = 0; i < runs; i++) {
    const [port, opsPort] = [await freePort(), await freePort()];
    const started = process.hrtime.bigint();
    const proc = startBundle('sidecar', launcher.args(port, opsPort), { stderrFile, nodeFlags });
    const exited = () => proc.child.exitCode !== null;
    try {
      healthz.push(await until(`http://127.0.0.1:${opsPort}/healthz`, started, exited));
      readyz.push(await until(`http://127.0.0.1:${opsPort}/readyz`, started, exited));
      if (i === runs - 1) {
        await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
        idleRssBytes = proc.rss();
      }
    } finally {
      await proc.stop();
    }
  }
  return { nodeFlags, healthzMs: summarise(healthz), readyzMs: summarise(readyz), idleRssBytes };
}

const SOURCE_MAPS = '--enable-source-maps';

/**
 * As the image runs it, and with Node's source maps the other way (on, Node reads the map whole at
 * start), for comparison; then the warm-up of one more, as the image runs it.
 */
export async function measureStartup(launcher: SidecarLauncher, runs: number, warmup: WarmupPlan, stderrFile: string): Promise<StartupResult> {
  const flags = bundleNodeFlags('sidecar');
  const asImage = await variant(launcher, runs, flags, stderrFile);
  const toggled = flags.includes(SOURCE_MAPS) ? flags.filter((flag) => flag !== SOURCE_MAPS) : [SOURCE_MAPS, ...flags];
  const sourceMapsToggled = await variant(launcher, runs, toggled, stderrFile);
  return { runs, asImage, sourceMapsToggled, warmup: await measureWarmup(launcher, warmup, stderrFile) };
}
