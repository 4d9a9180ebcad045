// The warm-up's arithmetic (bench/warmup.ts) and its table in the report, from fixed slices: what
// turns CPU times read at each second's end and autocannon's answers into CPU per request.
import assert from 'node:assert/strict';
import { renderReport, warmupTable } from '../../../bench/report.js';
import type { StartupVariant, WarmupResult, WarmupSlice } from '../../../bench/results.js';
import { cpuMicrosPerRequest, SliceRecorder, warmupSummary } from '../../../bench/warmup.js';
import { benchResults } from './fixtures.js';

const near = (actual: number | undefined, expected: number) => assert.ok(actual !== undefined && Math.abs(actual - expected) < 1e-9, `${actual} is not ${expected}`);
const slice = (requests: number, cpuSeconds: number, latencyP50Ms = 1): WarmupSlice => ({ seconds: 1, requests, failed: 0, cpuSeconds, latencyP50Ms });

/** Ten seconds: the first dear (4 ms of CPU per request), then cheaper, the last five at 1 ms per request. */
function run(): WarmupResult {
  const perSecond = [slice(100, 0.4, 6), slice(200, 0.4), slice(250, 0.375), slice(300, 0.3), slice(300, 0.3), slice(400, 0.4), slice(400, 0.4), slice(400, 0.4), slice(400, 0.4), slice(400, 0.4, 0.9)];
  return { workload: 'GET one small object', method: 'client certificate', connections: 1, nodeFlags: ['--max-semi-space-size=4'], firstResponseMs: 42.5, perSecond, compared: 3 };
}

describe('bench/warmup: CPU per request second by second', function () {
  it('cuts the answers and the CPU time at each boundary, failures counted as requests but not as latencies', function () {
    const recorder = new SliceRecorder(0, 10);
    recorder.response(true, 5);
    recorder.response(true, 1);
    recorder.response(true, 3);
    recorder.response(false, 100);
    recorder.boundary(1002, 10.04);
    recorder.boundary(2000, 10.05);
    recorder.response(true, 2);
    recorder.boundary(3000, 10.06);
    const [first, empty, third] = recorder.slices;
    assert.equal(recorder.slices.length, 3);
    assert.deepEqual({ ...first, cpuSeconds: 0 }, { seconds: 1.002, requests: 4, failed: 1, cpuSeconds: 0, latencyP50Ms: 3 });
    near(first!.cpuSeconds, 0.04);
    assert.deepEqual({ requests: empty!.requests, failed: empty!.failed, p50: empty!.latencyP50Ms }, { requests: 0, failed: 0, p50: undefined });
    assert.equal(third!.requests, 1);
    assert.equal(third!.latencyP50Ms, 2);
    assert.equal(third!.seconds, 1);
  });

  it('weighs CPU per request by requests over several seconds, and has none for seconds without answers', function () {
    near(cpuMicrosPerRequest([slice(100, 0.4), slice(300, 0.4)]), 2000);
    assert.equal(cpuMicrosPerRequest([slice(0, 0.1)]), undefined);
    assert.equal(cpuMicrosPerRequest([]), undefined);
  });

  it('sets the first second, and the first seconds, against the last ones', function () {
    const summary = warmupSummary(run());
    assert.equal(summary.fresh.length, 3);
    assert.deepEqual(summary.steady, run().perSecond.slice(7));
    near(summary.firstSecondRatio, 4);
    near(summary.freshRatio, 1.175 / 0.55); // 1175 ms over 550 requests against 1 ms each
  });

  it('never counts a second as both first and steady when the run is shorter than twice the compared seconds', function () {
    const short = { ...run(), perSecond: run().perSecond.slice(0, 4), compared: 3 };
    const summary = warmupSummary(short);
    assert.equal(summary.fresh.length, 3);
    assert.deepEqual(summary.steady, [short.perSecond[3]]);
  });

  it('has no ratio when the steady seconds had no answer', function () {
    const idle = { ...run(), perSecond: [...run().perSecond.slice(0, 3), slice(0, 0.01), slice(0, 0.01), slice(0, 0.01)] };
    const summary = warmupSummary(idle);
    assert.equal(summary.firstSecondRatio, undefined);
    assert.equal(summary.freshRatio, undefined);
    assert.match(warmupTable(idle), /First second ÷ steady: \*\*n\/a\*\*/);
  });
});

describe('bench/report: the warm-up table', function () {
  it('lays the first seconds beside the steady ones with their CPU per request and the ratios', function () {
    const table = warmupTable(run());
    const lines = table.split('\n');
    assert.match(lines[0]!, /^GET one small object, 1 connection, client certificate, from the moment `node --max-semi-space-size=4 dist\/sidecar.mjs` answered \/readyz 200, for 10 s; the first answer took 42.5 ms\.$/);
    const cells = (line: string) => line.split('|').slice(1, -1).map((cell) => cell.trim());
    const rows = lines.filter((line) => line.startsWith('|')).slice(2).map(cells);
    assert.deepEqual(rows[0], ['1', '100', '4000', '6.00', '8', '400', '1000', '1.00']);
    assert.deepEqual(rows[2], ['3', '250', '1500', '1.00', '10', '400', '1000', '0.90']);
    assert.deepEqual(rows[3], ['all', '', '2136', '', 'all', '', '1000', '']);
    assert.equal(lines.at(-1), 'First second ÷ steady: **4.00**; first 3 seconds ÷ steady: 2.14.');
  });

  it('shows failed answers in a second, and puts the table under the start-up section', function () {
    const withFailures = run();
    withFailures.perSecond[0] = { ...withFailures.perSecond[0]!, failed: 2 };
    assert.match(warmupTable(withFailures), /\| +100 \(2 failed\) \|/);
    const variant: StartupVariant = { nodeFlags: [], healthzMs: { count: 1, mean: 1, p50: 1, p90: 1, p99: 1, max: 1 }, readyzMs: { count: 1, mean: 2, p50: 2, p90: 2, p99: 2, max: 2 }, idleRssBytes: 0 };
    const report = renderReport(benchResults({ startup: { runs: 1, asImage: variant, sourceMapsToggled: variant, warmup: run() } }));
    assert.ok(report.indexOf('### Warm-up') > report.indexOf('## Start to ready'));
    assert.ok(!renderReport(benchResults({ startup: { runs: 1, asImage: variant, sourceMapsToggled: variant } })).includes('Warm-up'));
  });
});
