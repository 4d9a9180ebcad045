// What one AdmissionReview costs the injector step by step, without HTTPS, API server or load
// generator: the bench's dashboard pod, reviewed in a loop, each step timed on its own and the whole
// review (answerReview, its log line included) last. Rounds alternate and the lowest of them is
// reported, the figure least disturbed by whatever else the machine runs.
//   npx tsx bench/review-steps.ts [--rounds N] [--reviews N]
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { createLogger } from '../lib/log.js';
import { loadInjectorConfig } from '../injector/config.js';
import { injectPod } from '../injector/mutate.js';
import { jsonPatch, patchJson } from '../injector/patch.js';
import { answerReview, parseReview, reviewText, type ReviewContext } from '../injector/review.js';
import { resolveSettings, resolveSettingsOnce } from '../injector/settings.js';
import { dashboardPod, reviewOf } from './admission-review.js';
import { markdownTable } from './markdown.js';
import { positiveInteger } from './settings.js';

const NAMESPACE = 'bench-inject';

function reviewContext(): ReviewContext {
  const config = loadInjectorConfig(['--tls-cert-file=/unused', '--tls-key-file=/unused', '--sidecar-upstream=https://10.96.0.1:443'], {});
  // One object until the namespace changes, as the injector's watch keeps it.
  const namespace = { labels: { 'chaperone.dev/inject': 'enabled' }, annotations: {} };
  return {
    config,
    namespaceLabels: () => Promise.resolve(namespace),
    provisioning: () => Promise.resolve({ ready: true, missing: [] }),
    installationConfigs: () => Promise.resolve(undefined),
    csiTokens: () => Promise.resolve({ drivers: [], apiAudiences: undefined }),
    // As the injector logs: pino, at info, synchronously to a file.
    log: createLogger('injector', 'info', '/dev/null'),
  };
}

type Step = [name: string, run: () => unknown];

async function steps(ctx: ReviewContext): Promise<Step[]> {
  const text = reviewOf(dashboardPod(), NAMESPACE);
  // What is measured is an injection, not a refusal.
  const { response } = await answerReview(JSON.parse(text), ctx);
  if (!response.patch) throw new Error(`the review's pod is not injected: ${response.status?.message ?? 'no patch'}`);
  const pod = dashboardPod();
  const namespace = { name: NAMESPACE, annotations: {} };
  const settings = resolveSettingsOnce(ctx.config, {}, namespace);
  const injected = injectPod(pod, settings);
  const patch = jsonPatch(pod as Record<string, unknown>, injected as Record<string, unknown>);
  const uid = randomUUID();
  return [
    ['JSON.parse of the body', () => JSON.parse(text) as unknown],
    ['parseReview', () => parseReview(JSON.parse(text))],
    ['resolveSettings', () => resolveSettings(ctx.config, {}, namespace)],
    ['resolveSettingsOnce', () => resolveSettingsOnce(ctx.config, {}, namespace)],
    ['injectPod', () => injectPod(pod, settings)],
    ['jsonPatch', () => jsonPatch(pod as Record<string, unknown>, injected as Record<string, unknown>)],
    ['the patch as JSON, then base64', () => Buffer.from(patchJson(patch)).toString('base64')],
    ['the log line', () => ctx.log.info({ uid, namespace: NAMESPACE, pod: 'dashboard-*', dryRun: false, mode: 'native', operations: patch.length }, 'injected')],
    ['answerReview, parse to answer text', () => answerReview(JSON.parse(text), ctx).then(reviewText)],
  ];
}

async function timeStep(run: () => unknown, reviews: number): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < reviews; i++) await run();
  return ((performance.now() - started) * 1000) / reviews;
}

async function main(options: { rounds: number; reviews: number }): Promise<void> {
  const measured = await steps(reviewContext());
  const lowest = new Map<string, number>();
  for (let round = 0; round <= options.rounds; round++) {
    for (const [name, run] of round % 2 === 0 ? measured : [...measured].reverse()) {
      const micros = await timeStep(run, options.reviews);
      // Round 0 warms up.
      if (round > 0) lowest.set(name, Math.min(lowest.get(name) ?? Infinity, micros));
    }
  }
  console.log(markdownTable([{ title: 'step' }, { title: 'µs a review (lowest round)', align: 'right' }], measured.map(([name]) => [name, lowest.get(name)!.toFixed(1)])));
}

await new Command()
  .description("the injector's CPU per AdmissionReview, step by step, in one process")
  .option('--rounds <n>', 'rounds of every step', positiveInteger, 5)
  .option('--reviews <n>', 'reviews a step runs per round', positiveInteger, 20_000)
  .action(main)
  .parseAsync(process.argv);
