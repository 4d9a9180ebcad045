// The HTTP/2 runs of the benchmarks: what is read from h2load's output and request log, the checks
// made on it, and how the report sets the pairs out. Fixed inputs (h2load 1.52's own output).
import assert from 'node:assert/strict';
import { NothingSucceeded } from '../../../bench/load.js';
import { assertH2loadInstalled, bodyLengthMismatch, h2LoadStats, h2loadArgs, parseH2loadSummary, parseRequestLog, type H2Summary } from '../../../bench/load-h2.js';
import { backToBack } from '../../../bench/overhead.js';
import { http2Rows, renderReport, targets } from '../../../bench/report.js';
import type { BenchResults, Http2Pair } from '../../../bench/results.js';
import { compare } from '../../../bench/stats.js';
import { benchResults } from './fixtures.js';

const OUTPUT = `starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 500ms of main duration for measurements.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 501.10ms, 10370.00 req/s, 3.18MB/s
requests: 5185 total, 5187 started, 5185 done, 5180 succeeded, 5 failed, 2 errored, 1 timeout
status codes: 5183 2xx, 0 3xx, 4 4xx, 0 5xx
traffic: 1.59MB (1669669) total, 20.29KB (20778) headers (space savings 95.45%), 1.48MB (1555500) data
                     min         max         mean         sd        +/- sd
time for request:       47us      5.63ms       369us       375us    94.37%
`;

describe('bench/load-h2: reading h2load', function () {
  it('reads the protocol, the time, the requests started and done, those that got no answer, and the body bytes', function () {
    assert.deepEqual(parseH2loadSummary(OUTPUT), { protocol: 'h2', seconds: 0.5011, started: 5187, done: 5185, errored: 3, dataBytes: 1555500 });
    assert.equal(parseH2loadSummary(OUTPUT.replace('finished in 501.10ms', 'finished in 2.00s')).seconds, 2);
    assert.equal(parseH2loadSummary(OUTPUT.replace('Application protocol: h2\n', '')).protocol, 'none', 'no protocol negotiated');
    assert.throws(() => parseH2loadSummary('starting benchmark...\n'), /no finishing time/);
  });

  it('reads the request log: status and microseconds of each answer', function () {
    assert.deepEqual(parseRequestLog('1796651907362888\t200\t386\n1796651907362890\t404\t419\n'), [
      { status: 200, micros: 386 },
      { status: 404, micros: 419 },
    ]);
    assert.deepEqual(parseRequestLog(''), []);
    assert.throws(() => parseRequestLog('1796651907362888 200\n'), /cannot read the line/);
  });

  it('makes the figures of an autocannon run of it: only 200 is a success, latencies in milliseconds', function () {
    const summary: H2Summary = { protocol: 'h2', seconds: 2, started: 5, done: 4, errored: 1, dataBytes: 1200 };
    const stats = h2LoadStats('GET', summary, parseRequestLog('1\t200\t1000\n2\t200\t3000\n3\t403\t500\n4\t200\t2000\n'));
    assert.equal(stats.rps, 1.5);
    assert.equal(stats.requests, 4);
    assert.deepEqual(stats.non2xx, { 403: 1 });
    assert.equal(stats.errors, 1);
    assert.deepEqual([stats.latency.count, stats.latency.p50, stats.latency.max], [3, 2, 3]);
    assert.throws(() => h2LoadStats('GET', summary, parseRequestLog('1\t403\t500\n')), NothingSucceeded);
  });

  it('checks the bodies against the object\'s length, allowing for the partial bodies of requests cut off at the end', function () {
    const summary = (done: number, started: number, dataBytes: number): H2Summary => ({ protocol: 'h2', seconds: 1, started, done, errored: 0, dataBytes });
    assert.equal(bodyLengthMismatch(summary(10, 10, 3000), 10, 300), undefined);
    assert.equal(bodyLengthMismatch(summary(10, 12, 3450), 10, 300), undefined, 'two requests under way, one half answered');
    assert.deepEqual(bodyLengthMismatch(summary(10, 10, 2999), 10, 300), { expectedBytes: 3000, receivedBytes: 2999 });
    assert.deepEqual(bodyLengthMismatch(summary(10, 11, 3301), 10, 300), { expectedBytes: 3000, receivedBytes: 3301 }, 'more than the one under way can explain');
    assert.equal(bodyLengthMismatch(summary(10, 10, 2999), 9, 300), undefined, 'a refusal\'s body counts too: no check');
    assert.equal(bodyLengthMismatch(summary(10, 10, 2999), 10, undefined), undefined, 'a LIST: no length to check');
    const stats = h2LoadStats('GET', summary(2, 2, 601), parseRequestLog('1\t200\t1000\n2\t200\t3000\n'), 300);
    assert.deepEqual(stats.bodyLengthMismatch, { expectedBytes: 600, receivedBytes: 601 });
  });

  it('says how to install h2load where it is missing', function () {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      assert.throws(() => assertH2loadInstalled(), /h2load .* is not installed.*apt-get install nghttp2-client.*--no-http2/);
    } finally {
      process.env.PATH = path;
    }
  });

  it('asks for h2 alone, N connections of M streams, the token, and the log', function () {
    const args = h2loadArgs({ base: 'https://127.0.0.1:6443', workload: { name: 'GET', path: '/api/v1/x?a=b' }, bearer: 't0k', connections: 4, streams: 16, seconds: 0.5 }, '/tmp/log.tsv');
    for (const arg of ['--clients=4', '--max-concurrent-streams=16', '--duration=500ms', '--npn-list=h2', '--header=authorization: Bearer t0k', '--log-file=/tmp/log.tsv']) {
      assert.ok(args.includes(arg), `${arg} in ${args.join(' ')}`);
    }
    assert.equal(args.at(-1), 'https://127.0.0.1:6443/api/v1/x?a=b');
  });
});

describe('bench/overhead: back to back', function () {
  it('runs in order or in reverse, and gives the results in order either way', async function () {
    const ran: string[] = [];
    const runs = ['direct', 'sidecar', 'peer'].map((name) => () => (ran.push(name), Promise.resolve(name.toUpperCase())));
    assert.deepEqual(await backToBack(runs, true), ['DIRECT', 'SIDECAR', 'PEER']);
    assert.deepEqual(await backToBack(runs, false), ['DIRECT', 'SIDECAR', 'PEER']);
    assert.deepEqual(ran, ['direct', 'sidecar', 'peer', 'peer', 'sidecar', 'direct']);
  });
});

describe('bench/report: HTTP/2 clients', function () {
  const latency = (p50: number) => ({ count: 100, mean: p50, p50, p90: p50, p99: p50 * 2, max: p50 * 2 });
  const stats = (rps: number, p50: number, cpu: Record<string, number>) => ({ rps, latency: latency(p50), requests: 100, non2xx: {}, errors: 0, cpuMicrosPerRequest: { 'kube-apiserver': 500, 'load generator': 20, ...cpu } });
  const direct = stats(1000, 1, {});
  const pair = (workload: string, streams: number, method: string, through: ReturnType<typeof stats>, proxy?: string): Http2Pair => ({
    workload,
    concurrency: 1,
    streams,
    ...(proxy ? { proxy } : {}),
    method,
    caches: 'warm',
    direct,
    through,
    comparison: compare(direct, through),
  });
  const results = (http2: BenchResults['http2']) => benchResults({ sections: ['overhead'], ...(http2 ? { http2 } : {}) });

  it('sets each load\'s direct run beside the sidecar\'s and the peer\'s', function () {
    const pairs = [
      pair('GET one small object', 16, 'OIDC token', stats(500, 3, { sidecar: 600 })),
      pair('GET one small object', 16, 'OIDC token', stats(800, 2, { peer: 300 }), 'peer'),
      pair('GET one small object', 16, 'webhook token', stats(600, 2.5, { sidecar: 450 })),
    ];
    const rows = http2Rows(pairs);
    assert.deepEqual(
      rows.map((r) => [r.method, r.sidecar?.through.rps, r.peer?.through.rps]),
      [
        ['OIDC token', 500, 800],
        ['webhook token', 600, undefined],
      ],
    );
    const report = renderReport(results({ alpn: { 'kube-apiserver': 'h2', sidecar: 'h2', peer: 'h2' }, pairs }));
    assert.match(report, /## HTTP\/2 clients\n\n\| workload/, 'every server chose h2: no sentence before the table');
    assert.match(report, /\| GET one small object \| +1 × 16 \| OIDC token +\| +1000 \| +500 \/ 800 \| +\+2\.00 \/ \+1\.00 \| .*\| +600 \/ 300 \| +2\.00 \| +500 \/ 500 \/ 500 \| +20 \/ 20 \/ 20 \| +0 \|/);
    assert.match(report, /\| webhook token +\| +1000 \| +600 \/ — \| .*\| +450 \/ — \| +\|/);
  });

  it("judges the worst HTTP/2 pair's CPU per request against the peer's, as issue 20 asks", function () {
    const pairs = [
      pair('GET one small object', 16, 'OIDC token', stats(500, 3, { sidecar: 450 })),
      pair('GET one small object', 16, 'OIDC token', stats(800, 2, { peer: 300 }), 'peer'),
      pair('LIST 500', 1, 'OIDC token', stats(50, 9, { sidecar: 2600 })),
      pair('LIST 500', 1, 'OIDC token', stats(60, 8, { peer: 2000 }), 'peer'),
      pair('GET one small object', 16, 'webhook token', stats(600, 2.5, { sidecar: 900 })),
    ];
    const row = targets(results({ alpn: { 'kube-apiserver': 'h2', sidecar: 'h2', peer: 'h2' }, pairs })).find((r) => r.target.includes('HTTP/2'));
    assert.deepEqual(row, {
      target: "sidecar CPU per request ÷ peer's, HTTP/2, the worst of 2 pairs (GET one small object, 1 × 16)",
      goal: '≤ 1 (first bar 1.5)',
      measured: '1.50',
      met: false,
    });
  });

  it('says which server chose HTTP/1.1 in ALPN instead of measuring it, and what was measured without it', function () {
    const peerOnly = [pair('LIST 500', 1, 'OIDC token', stats(80, 10, { peer: 1500 }), 'peer')];
    const report = renderReport(results({ alpn: { 'kube-apiserver': 'h2', sidecar: 'http/1.1', peer: 'h2' }, pairs: peerOnly }));
    assert.match(report, /Not measured over HTTP\/2, .*: the sidecar \(ALPN gave http\/1\.1\)\.\n\n\| workload/);
    assert.match(report, /\| LIST 500 +\| +1 × 1 \| OIDC token \| +1000 \| +— \/ 80\.0 \|/);
    const none = renderReport(results({ alpn: { 'kube-apiserver': 'h2', sidecar: 'http/1.1' }, pairs: [] }));
    assert.match(none, /the sidecar \(ALPN gave http\/1\.1\)\.\n\nNo proxy chose h2: there are no HTTP\/2 pairs\./);
    assert.doesNotMatch(renderReport(results(undefined)), /## HTTP\/2 clients/, 'no HTTP/2 runs (--no-http2), no section');
  });

  it('counts failures and says when the bodies did not add up', function () {
    const bad = { ...stats(500, 3, { sidecar: 600 }), non2xx: { 503: 2 }, errors: 1, bodyLengthMismatch: { expectedBytes: 3000, receivedBytes: 2999 } };
    const report = renderReport(results({ alpn: { 'kube-apiserver': 'h2', sidecar: 'h2' }, pairs: [pair('GET one small object', 1, 'OIDC token', bad)] }));
    assert.match(report, /\| 3; bodies 2999 bytes, not 3000 \|/);
  });
});
