// The arithmetic and formatting of the benchmarks (bench/): what turns raw timings into the figures
// the report and docs/benchmarks.md state.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { markdownTable, ms, signedMs } from '../../../bench/markdown.js';
import { between, sampleOf } from '../../../bench/injector-metrics.js';
import { sampleSum, sampleValue } from '../../../bench/metrics.js';
import { selfTimes, sourceGroup } from '../../../bench/profile.js';
import { parsePeer } from '../../../bench/peer.js';
import { peerComparisons, renderReport, targets, type TargetRow } from '../../../bench/report.js';
import type { SoakResult } from '../../../bench/results.js';
import { compare, percentile, SequenceTimer, summarise } from '../../../bench/stats.js';
import { benchResults } from './fixtures.js';

describe('bench/stats', function () {
  it('takes percentiles by nearest rank', function () {
    const values = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
    assert.equal(percentile(values, 0.5), 50);
    assert.equal(percentile(values, 0.9), 90);
    assert.equal(percentile(values, 0.99), 99);
    assert.equal(percentile(values, 1), 100);
    assert.equal(percentile([7], 0.01), 7);
    assert.equal(percentile([1, 2, 3], 0.5), 2);
    assert.equal(percentile([1, 2], 0.5), 1);
  });

  it('refuses what is not a percentile of anything', function () {
    assert.throws(() => percentile([], 0.5), /no values/);
    assert.throws(() => percentile([1], 0), /quantile/);
    assert.throws(() => percentile([1], 1.5), /quantile/);
    assert.throws(() => summarise([]), /no values/);
  });

  it('summarises unsorted values: every percentile is a value, in order, between min and max', function () {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 500 }), (values) => {
        const s = summarise(values);
        assert.equal(s.count, values.length);
        for (const p of [s.p50, s.p90, s.p99, s.max]) assert.ok(values.includes(p));
        assert.ok(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
        assert.equal(s.max, Math.max(...values));
        assert.ok(s.mean >= Math.min(...values) - 1e-6 && s.mean <= s.max + 1e-6);
      }),
    );
  });

  it('compares a pair: throughput ratio and added latency', function () {
    const latency = (p50: number, p90: number, p99: number) => ({ count: 10, mean: p50, p50, p90, p99, max: p99 });
    const result = compare({ rps: 1000, latency: latency(2, 3, 5) }, { rps: 900, latency: latency(2.5, 3.2, 4) });
    assert.equal(result.throughputRatio, 0.9);
    assert.equal(result.addedP50, 0.5);
    assert.ok(Math.abs(result.addedP90 - 0.2) < 1e-9);
    assert.equal(result.addedP99, -1);
    assert.throws(() => compare({ rps: 0, latency: latency(1, 1, 1) }, { rps: 1, latency: latency(1, 1, 1) }), /no requests/);
  });

  it('sums the requests of one operation per source, and drops an operation one of whose requests failed', function () {
    const timer = new SequenceTimer<string>();
    timer.add('a', 1, false);
    timer.add('b', 10, false);
    timer.add('a', 2, false);
    timer.add('b', 20, true);
    timer.add('a', 3, true);
    timer.add('a', 5, false);
    timer.abandon('a');
    timer.add('a', 7, true);
    assert.deepEqual(timer.totals, [30, 6, 7]);
    assert.equal(timer.completedSteps, 6);
    assert.equal(timer.steps, 7);
  });

  it('counts operations per second with the unfinished one of each source in proportion', function () {
    const timer = new SequenceTimer<string>();
    for (let i = 0; i < 10; i++) timer.add('a', 1, i === 9); // one list of ten pages
    for (let i = 0; i < 5; i++) timer.add('a', 1, false); // half of the next one when time ran out
    assert.equal(timer.rate(1), 1.5);
    assert.equal(new SequenceTimer<string>().rate(1), 0);
  });
});

describe('bench/markdown', function () {
  it('lays out a table with aligned columns and escapes what would break a row', function () {
    const table = markdownTable(
      [{ title: 'name' }, { title: 'n', align: 'right' }],
      [
        ['a|b', '1'],
        ['longer name', '12345'],
      ],
    );
    assert.equal(
      table,
      ['| name        |     n |', '|-------------|------:|', '| a\\|b        |     1 |', '| longer name | 12345 |'].join('\n'),
    );
    assert.throws(() => markdownTable([{ title: 'one' }], [['a', 'b']]), /row 0 has 2 cells for 1 columns/);
  });

  it('writes milliseconds with a precision that suits them, differences signed', function () {
    assert.equal(ms(0.4234), '0.42');
    assert.equal(ms(27.25), '27.3');
    assert.equal(ms(1234.4), '1234');
    assert.equal(signedMs(0.31), '+0.31');
    assert.equal(signedMs(-0.05), '-0.05');
    assert.equal(signedMs(-150), '-150');
  });
});

describe('bench/metrics', function () {
  const text = [
    '# HELP chaperone_authorization_cache_total Authorization decisions looked up in the cache',
    '# TYPE chaperone_authorization_cache_total counter',
    'chaperone_authorization_cache_total{result="hit"} 42',
    'chaperone_authorization_cache_total{result="miss"} 7',
    'chaperone_requests_total{verb="get",code="200"} 3',
    'chaperone_nodejs_heap_size_used_bytes 1048576',
  ].join('\n');

  it('reads a sample by name and labels, in any order of the labels', function () {
    assert.equal(sampleValue(text, 'chaperone_authorization_cache_total', { result: 'hit' }), 42);
    assert.equal(sampleValue(text, 'chaperone_authorization_cache_total', { result: 'miss' }), 7);
    assert.equal(sampleValue(text, 'chaperone_requests_total', { code: '200', verb: 'get' }), 3);
    assert.equal(sampleValue(text, 'chaperone_nodejs_heap_size_used_bytes', {}), 1048576);
  });

  it('gives 0 for a sample not there yet, and never matches on a subset of the labels', function () {
    assert.equal(sampleValue(text, 'chaperone_authorization_cache_total', { result: 'other' }), 0);
    assert.equal(sampleValue(text, 'chaperone_requests_total', { verb: 'get' }), 0);
    assert.equal(sampleValue(text, 'chaperone_authorization_cache', { result: 'hit' }), 0);
  });

  it('sums the samples that have the labels asked for, whatever their others', function () {
    assert.equal(sampleSum(text, 'chaperone_authorization_cache_total'), 49);
    assert.equal(sampleSum(text, 'chaperone_authorization_cache_total', { result: 'miss' }), 7);
    assert.equal(sampleSum(text, 'chaperone_requests_total', { verb: 'get' }), 3);
    assert.equal(sampleSum(text, 'chaperone_requests_total', { verb: 'list' }), 0);
  });
});

describe('bench/injector-metrics', function () {
  // As the injector's /metrics writes them (prom-client), at two moments of a run.
  const scrapeAt = (denied: number, answered: number, seconds: number, lagP99: number) =>
    [
      `chaperone_injector_admissions_total{outcome="injected",reason=""} ${answered - denied}`,
      `chaperone_injector_admissions_total{outcome="denied",reason="Forbidden"} ${denied}`,
      'chaperone_injector_admissions_total{outcome="denied",reason="ServiceUnavailable"} 0',
      `chaperone_injector_admission_duration_seconds_bucket{le="0.001",outcome="injected"} ${answered - denied}`,
      `chaperone_injector_admission_duration_seconds_sum{outcome="injected"} ${seconds}`,
      `chaperone_injector_admission_duration_seconds_count{outcome="injected"} ${answered - denied}`,
      `chaperone_injector_admission_duration_seconds_sum{outcome="denied"} 0`,
      `chaperone_injector_admission_duration_seconds_count{outcome="denied"} ${denied}`,
      `chaperone_injector_nodejs_eventloop_lag_p99_seconds ${lagP99}`,
      'chaperone_injector_nodejs_eventloop_lag_max_seconds 0.25',
    ].join('\n');

  it('gives the reviews denied, the mean time per review and the event-loop delay between two scrapes', function () {
    const during = between(sampleOf(scrapeAt(1, 10, 0.5, 0.9)), sampleOf(scrapeAt(3, 110, 1.5, 0.012)));
    assert.equal(during.denied, 2);
    assert.equal(during.answeringMs, 10); // 1 s over 100 reviews
    assert.deepEqual(during.eventLoopDelay, { p99Ms: 12, maxMs: 250 });
  });
});

describe('bench/profile', function () {
  it('groups files by package, scoped or not, and leaves our own files as they are', function () {
    assert.equal(sourceGroup('node_modules/http-proxy-3/dist/lib/index.js'), 'node_modules/http-proxy-3');
    assert.equal(sourceGroup('node_modules/@kubernetes/client-node/dist/config.js'), 'node_modules/@kubernetes/client-node');
    assert.equal(sourceGroup('node_modules/a/node_modules/b/index.js'), 'node_modules/b');
    assert.equal(sourceGroup('sidecar/pipeline.ts'), 'sidecar/pipeline.ts');
  });

  it('adds up self time per key from the samples and their time deltas', function () {
    const frame = (functionName: string) => ({ functionName, url: '', lineNumber: 0, columnNumber: 0 });
    const profile = {
      nodes: [
        { id: 1, callFrame: frame('a') },
        { id: 2, callFrame: frame('b') },
        { id: 3, callFrame: frame('a') },
      ],
      samples: [1, 2, 3, 2, 1],
      timeDeltas: [10, 20, 30, 40, 50],
    };
    assert.deepEqual(
      selfTimes(profile, (node) => node.callFrame.functionName),
      [
        ['a', 90],
        ['b', 60],
      ],
    );
  });
});

describe('bench/report: where a run stands against the targets', function () {
  const latency = (p50: number, p99: number) => ({ count: 100, mean: p50, p50, p90: p99, p99, max: p99 });
  const stats = (rps: number, p50: number, p99: number) => ({ rps, latency: latency(p50, p99), requests: 100, non2xx: {}, errors: 0 });
  const heap = { heapUsedBytes: 0, heapTotalBytes: 0, externalBytes: 0 };
  const MiB = 1024 * 1024;

  const results = benchResults;

  it('judges each warm small GET at concurrency 16 by its ratio and its added p50, and ignores cold caches', function () {
    const pair = (method: string, caches: 'warm' | 'cold', through: ReturnType<typeof stats>) => {
      const direct = stats(1000, 2, 5);
      return { workload: 'GET one small object', concurrency: 16, method, caches, direct, through, comparison: compare(direct, through) };
    };
    const rows = targets(results({ overhead: [pair('client certificate', 'warm', stats(950, 2.5, 6)), pair('webhook token', 'warm', stats(800, 4, 9)), pair('webhook token', 'cold', stats(100, 40, 90))] }));
    const met = Object.fromEntries(rows.map((r) => [r.target, r.met]));
    assert.equal(met['small GET at concurrency 16, client certificate: throughput through / direct'], true);
    assert.equal(met['small GET at concurrency 16, client certificate: added p50 latency'], true);
    assert.equal(met['small GET at concurrency 16, webhook token: throughput through / direct'], false);
    assert.equal(met['small GET at concurrency 16, webhook token: added p50 latency'], false);
    assert.equal(rows.filter((r) => r.target.includes('webhook token')).length, 2, 'the cold run is not judged against the warm target');
  });

  it('judges memory, start and admission, and says what a run did not measure', function () {
    const rows = targets(
      results({
        memory: { idleBytes: 59 * MiB, underLoadPeakBytes: 0, afterLoadBytes: 0, heap: { idle: heap, afterLoad: heap } },
        admission: { review: [{ concurrency: 50, stats: stats(100, 2, 10.5) }], podCreate: [] },
      }),
    );
    const byTarget = new Map(rows.map((r) => [r.target, r]));
    assert.equal(byTarget.get('sidecar resident memory, idle')?.met, true);
    assert.equal(byTarget.get('AdmissionReview p99 at concurrency 50')?.met, false);
    assert.equal(byTarget.get('AdmissionReview p99 at concurrency 50')?.measured, '10.5 ms', 'without a floor run, only the injector');
    assert.equal(byTarget.get('start to ready (production bundle, as the image runs it), median')?.met, undefined);
    assert.equal(byTarget.get('sidecar resident memory added by 1000 watches, HTTP/1.1, at the peak')?.measured, 'not measured');
    assert.equal(byTarget.get('sidecar resident memory added by 1000 watches, HTTP/2, at the peak')?.measured, 'not measured');
  });

  it("says beside the injector's AdmissionReview p99 what Node.js's HTTPS server alone gave for the same reviews", function () {
    const review = { concurrency: 50, stats: stats(100, 2, 10.5), floor: { ...stats(400, 1, 4.25), cpuMicrosPerRequest: { 'Node.js HTTPS server': 71.4 } } };
    const row = targets(results({ admission: { review: [review], podCreate: [] } })).find((r) => r.target === 'AdmissionReview p99 at concurrency 50')!;
    assert.deepEqual([row.met, row.measured], [false, '10.5 ms (Node.js HTTPS server alone, the same reviews and answer: 4.25 ms)']);
    const report = renderReport(results({ admission: { review: [review], podCreate: [] } }));
    const line = report.split('\n').find((l) => l.startsWith('| ') && l.includes(' 10.5 ') && l.includes(' 400 '));
    assert.ok(line, `the admission table has the floor's row: ${report}`);
    assert.match(line, /\|\s+400 \|\s+1\.00 \/ [\d.]+ \/ 4\.25 \|\s+71 \|$/);
  });

  it('judges the soak by its peak against the injected limit and by what stays resident after it; a killed sidecar meets neither', function () {
    const resident = (mib: number) => ({ totalBytes: mib * MiB, anonymousBytes: mib * MiB, fileBytes: 0 });
    const soak = (peak: number, after?: number, killed?: string): SoakResult => ({
      limitBytes: 256 * MiB,
      cgroupVersion: 1,
      nodeFlags: [],
      heapLimitBytes: 131 * MiB,
      seconds: 240,
      phases: [],
      watches: 200,
      requests: 1,
      failures: 0,
      watchEvents: 1,
      rss: { idle: resident(80), peak: resident(peak), ...(after === undefined ? {} : { afterLoad: resident(after) }) },
      cyclePeaksBytes: [],
      cgroupPeakBytes: 0,
      heap: { idle: heap, peak: heap },
      oomKills: killed ? 1 : 0,
      ...(killed ? { killed } : {}),
    });
    const judged = (result: SoakResult): [TargetRow, TargetRow] => {
      const rows = targets(results({ soak: result }));
      return [rows.find((r) => r.target.startsWith('sidecar peak resident memory in the soak'))!, rows.find((r) => r.target === 'sidecar resident memory, idle after the soak')!];
    };
    const [share, after] = judged(soak(179, 99));
    assert.deepEqual([share.met, share.measured, after.met], [true, '70% (179.0 MiB)', true]);
    const [over, stayed] = judged(soak(180, 101));
    assert.deepEqual([over.met, stayed.met], [false, false]);
    const [killed, never] = judged(soak(250, undefined, 'the sidecar exited (code null, signal SIGKILL) after 80s'));
    assert.deepEqual([killed.met, killed.measured, never.met, never.measured], [false, 'killed (1 OOM kills)', false, 'the sidecar exited (code null, signal SIGKILL) after 80s']);
    assert.equal(targets(results({ soak: soak(100, 90) })).find((r) => r.target === 'sidecar resident memory, idle')?.measured, '80.0 MiB', 'idle comes from the soak when the overhead section did not run');
  });

  it('sets the sidecar against a peer proxy pair by pair, by CPU per request, and judges the worst pair', function () {
    const run = (rps: number, cpu: Record<string, number>) => ({ ...stats(rps, 2, 5), cpuMicrosPerRequest: { 'kube-apiserver': 500, ...cpu } });
    const pair = (workload: string, concurrency: number, through: ReturnType<typeof run>, proxy?: string) => {
      const direct = run(1000, {});
      return { workload, concurrency, ...(proxy ? { proxy } : {}), method: 'OIDC token', caches: 'warm' as const, direct, through, comparison: compare(direct, through) };
    };
    const overhead = [
      pair('GET one small object', 1, run(500, { sidecar: 900 })),
      pair('GET one small object', 1, run(600, { peer: 600 }), 'peer'),
      pair('LIST 500', 16, run(50, { sidecar: 2000 })),
      pair('LIST 500', 16, run(40, { peer: 2500 }), 'peer'),
      pair('GET one small object', 16, run(900, { sidecar: 400 })),
    ];
    const versus = peerComparisons(results({ overhead }));
    assert.deepEqual(
      versus.map((c) => [c.workload, c.concurrency, c.cpuRatio]),
      [
        ['GET one small object', 1, 1.5],
        ['LIST 500', 16, 0.8],
      ],
    );
    const rows = targets(results({ overhead }));
    const judged = rows.find((r) => r.target.startsWith("sidecar CPU per request ÷ peer's"));
    assert.equal(judged?.measured, '1.50');
    assert.match(judged?.target ?? '', /worst of 2 pairs \(GET one small object, 1 conns\)/);
    assert.equal(judged?.met, false);
    assert.equal(rows.filter((r) => r.target.startsWith('small GET at concurrency 16')).length, 2, 'a pair through the peer is not judged as the sidecar');
    assert.equal(
      targets(results({ overhead: overhead.filter((p) => !('proxy' in p)) })).some((r) => r.target.includes('÷')),
      false,
      'no peer, no ratio',
    );
  });

  it('reports the watches through a peer beside the sidecar, with each proxy\'s CPU per event and memory', function () {
    const side = { openSeconds: 1, delay: latency(1, 2), lastDelivery: latency(1, 2) };
    const watches = {
      watches: 1000,
      updates: 20,
      direct: side,
      through: { ...side, proxyCpuMicrosPerEvent: 41.5 },
      peer: { ...side, proxyCpuMicrosPerEvent: 20.75, name: 'peer', rssBytes: { idle: 10 * MiB, open: 60 * MiB } },
      sidecarRssBytes: { idle: MiB, open: 120 * MiB, peak: 130 * MiB },
      sidecarHeap: { idle: heap, open: heap },
    };
    const report = renderReport(results({ watches }));
    assert.match(report, /\| 1000 watches, 20 changes +\| +direct \| +through the sidecar \| +through peer \|/);
    assert.match(report, /\| proxy CPU µs per event delivered +\| +\| +41\.5 \| +20\.8 \|/);
    assert.match(report, /\| proxy resident MiB with the watches open +\| +\| +120\.0 \| +60\.0 \|/);
    const alone = renderReport(results({ watches: { ...watches, peer: undefined } }));
    assert.match(alone, /\| proxy CPU µs per event delivered +\| +\| +41\.5 \|\n/, 'without a peer, the sidecar\'s column alone');
    assert.doesNotMatch(alone, /proxy resident MiB/, 'without a peer, its memory is in the memory table only');
  });

  it('reads --peer as a name and a binary', function () {
    assert.deepEqual(parsePeer('kube-oidc-proxy=/opt/peers/kube-oidc-proxy'), { name: 'kube-oidc-proxy', binary: '/opt/peers/kube-oidc-proxy' });
    assert.throws(() => parsePeer('/opt/peers/kube-oidc-proxy'), /<name>=<binary>/);
  });

  it('does not judge the watch memory target on fewer watches than it names', function () {
    const side = { openSeconds: 1, delay: latency(1, 2), lastDelivery: latency(1, 2) };
    const watches = { watches: 100, updates: 5, direct: side, through: side, sidecarRssBytes: { idle: MiB, open: MiB, peak: MiB }, sidecarHeap: { idle: heap, open: heap } };
    const row = targets(results({ watches })).find((r) => r.target.startsWith('sidecar resident memory added by 100 watches, HTTP/1.1'));
    assert.equal(row?.target, 'sidecar resident memory added by 100 watches, HTTP/1.1, at the peak (the target is for 1000)');
    assert.equal(row?.met, undefined);
  });
});
