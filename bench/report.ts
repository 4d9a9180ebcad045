// The results as markdown: the targets of issue #10 first, then every section's table.
import { LOAD_GENERATOR, type LoadStats } from './load.js';
import type { HeapBreakdown } from './metrics.js';
import { markdownTable, mib, ms, perSecond, ratio, signedMs, type Column } from './markdown.js';
import type { Resident } from './processes.js';
import { HTTPS_FLOOR, type AdmissionResult, type BenchResults, type Http2Pair, type OverheadPair, type StartupVariant, type WarmupResult, type WarmupSlice, type WatchResult, type WatchRun, type WatchSide } from './results.js';
import type { LatencySummary } from './stats.js';
import { MIB } from './stats.js';
import { cpuMicrosPerRequest, warmupSummary } from './warmup.js';

export interface TargetRow {
  target: string;
  goal: string;
  measured: string;
  /** Undefined when the run did not measure it. */
  met: boolean | undefined;
}

const GOALS = {
  throughputRatio: 0.9,
  addedP50Ms: 1,
  idleRssMiB: 60,
  watchesAddedRssMiB: 80,
  watchesCount: 1000,
  startToReadyMs: 300,
  reviewP99Ms: 10,
  reviewConcurrency: 50,
  burstConcurrency: 200,
  injectorIdleRssMiB: 80,
  smallGetConcurrency: 16,
  afterLoadRssMiB: 100,
  shareOfLimit: 0.7,
  cpuVersusPeer: 1,
  cpuVersusPeerFirstBar: 1.5,
};

export interface PeerComparison {
  peer: string;
  workload: string;
  concurrency: number;
  sidecar: OverheadPair;
  through: OverheadPair;
  /** The sidecar's CPU per request over the peer's, in the same run, back to back. */
  cpuRatio: number;
}

/** Each pair through a peer with the sidecar's pair of the same load, credentials and caches. */
export function peerComparisons(results: BenchResults): PeerComparison[] {
  const pairs = results.overhead ?? [];
  return pairs.flatMap((through) => {
    if (!through.proxy) return [];
    const sidecar = pairs.find((p) => !p.proxy && p.workload === through.workload && p.concurrency === through.concurrency && p.method === through.method && p.caches === through.caches);
    const [mine, theirs] = [sidecar?.through.cpuMicrosPerRequest?.sidecar, through.through.cpuMicrosPerRequest?.[through.proxy]];
    if (!sidecar || mine === undefined || theirs === undefined) return [];
    return [{ peer: through.proxy, workload: through.workload, concurrency: through.concurrency, sidecar, through, cpuRatio: mine / theirs }];
  });
}

export const SMALL_GET = 'GET one small object';

const notMeasured = (target: string, goal: string): TargetRow => ({ target, goal, measured: 'not measured', met: undefined });

/** The watch runs of each protocol, the HTTP/1.1 one first. */
export function watchRuns(watches: WatchResult): { protocol: string; run: WatchRun }[] {
  return [{ protocol: 'HTTP/1.1', run: watches }, ...(watches.http2 ? [{ protocol: 'HTTP/2', run: watches.http2 }] : [])];
}

/** Issue 20's: what the watches add to the sidecar's resident memory at the peak, one row per protocol. */
function watchTargets(results: BenchResults): TargetRow[] {
  const goal = `≤ +${GOALS.watchesAddedRssMiB} MiB`;
  const watches = results.watches;
  const target = (count: number, protocol: string) =>
    `sidecar resident memory added by ${count} watches, ${protocol}, at the peak${count === GOALS.watchesCount ? '' : ` (the target is for ${GOALS.watchesCount})`}`;
  if (!watches) return [notMeasured(target(GOALS.watchesCount, 'HTTP/1.1'), goal), notMeasured(target(GOALS.watchesCount, 'HTTP/2'), goal)];
  const rows = watchRuns(watches).map(({ protocol, run }) => {
    const { idle, peak } = run.sidecarRssBytes;
    const added = peak - idle;
    return {
      target: target(watches.watches, protocol),
      goal,
      measured: `+${mib(added)} MiB (${mib(idle)} → ${mib(peak)})`,
      met: watches.watches >= GOALS.watchesCount ? added <= GOALS.watchesAddedRssMiB * MIB : undefined,
    };
  });
  return watches.http2 ? rows : [...rows, notMeasured(target(watches.watches, 'HTTP/2'), goal)];
}

/** Where a run stands against each target of issue #10. */
export function targets(results: BenchResults): TargetRow[] {
  const rows: TargetRow[] = [];
  const warmSmallGets = (results.overhead ?? []).filter((p) => !p.proxy && p.workload === SMALL_GET && p.concurrency === GOALS.smallGetConcurrency && p.caches === 'warm');
  if (warmSmallGets.length === 0) {
    rows.push(notMeasured(`small GET at concurrency ${GOALS.smallGetConcurrency}, warm caches: throughput through / direct`, `≥ ${GOALS.throughputRatio}`));
  }
  for (const pair of warmSmallGets) {
    const { throughputRatio, addedP50 } = pair.comparison;
    rows.push({
      target: `small GET at concurrency ${GOALS.smallGetConcurrency}, ${pair.method}: throughput through / direct`,
      goal: `≥ ${GOALS.throughputRatio}`,
      measured: ratio(throughputRatio),
      met: throughputRatio >= GOALS.throughputRatio,
    });
    rows.push({
      target: `small GET at concurrency ${GOALS.smallGetConcurrency}, ${pair.method}: added p50 latency`,
      goal: `≤ ${GOALS.addedP50Ms} ms`,
      measured: `${signedMs(addedP50)} ms`,
      met: addedP50 <= GOALS.addedP50Ms,
    });
  }
  const versus = peerComparisons(results);
  if (versus.length > 0) {
    const worst = versus.reduce((a, b) => (b.cpuRatio > a.cpuRatio ? b : a));
    rows.push(cpuVersusPeerRow(`HTTP/1.1, the worst of ${versus.length} pairs (${worst.workload}, ${worst.concurrency} conns)`, worst.peer, worst.cpuRatio));
  }
  const http2Versus = http2PeerRatios(results);
  if (http2Versus.length > 0) {
    const worst = http2Versus.reduce((a, b) => (b.cpuRatio > a.cpuRatio ? b : a));
    rows.push(cpuVersusPeerRow(`HTTP/2, the worst of ${http2Versus.length} pairs (${worst.workload}, ${worst.shape})`, worst.peer, worst.cpuRatio));
  }
  const idle = results.memory?.idleBytes ?? results.soak?.rss.idle.totalBytes;
  rows.push(
    idle === undefined
      ? notMeasured('sidecar resident memory, idle', `≤ ${GOALS.idleRssMiB} MiB`)
      : { target: 'sidecar resident memory, idle', goal: `≤ ${GOALS.idleRssMiB} MiB`, measured: `${mib(idle)} MiB`, met: idle <= GOALS.idleRssMiB * MIB },
  );
  const soak = results.soak;
  const afterTarget = 'sidecar resident memory, idle after the soak';
  const shareTarget = `sidecar peak resident memory in the soak, of the injected limit${soak ? ` (${mib(soak.limitBytes)} MiB)` : ''}`;
  const shareGoal = `≤ ${GOALS.shareOfLimit * 100}%`;
  if (!soak) rows.push(notMeasured(afterTarget, `≤ ${GOALS.afterLoadRssMiB} MiB`), notMeasured(shareTarget, shareGoal));
  else {
    const after = soak.rss.afterLoad?.totalBytes;
    rows.push(
      after === undefined
        ? { target: afterTarget, goal: `≤ ${GOALS.afterLoadRssMiB} MiB`, measured: soak.killed ?? 'not measured', met: false }
        : { target: afterTarget, goal: `≤ ${GOALS.afterLoadRssMiB} MiB`, measured: `${mib(after)} MiB`, met: after <= GOALS.afterLoadRssMiB * MIB },
    );
    const share = soak.rss.peak.totalBytes / soak.limitBytes;
    rows.push({
      target: shareTarget,
      goal: shareGoal,
      measured: soak.killed ? `killed (${soak.oomKills} OOM kills)` : `${(share * 100).toFixed(0)}% (${mib(soak.rss.peak.totalBytes)} MiB)`,
      met: !soak.killed && share <= GOALS.shareOfLimit,
    });
  }
  rows.push(...watchTargets(results));
  const startup = results.startup;
  rows.push(
    startup
      ? {
          target: 'start to ready (production bundle, as the image runs it), median',
          goal: `≤ ${GOALS.startToReadyMs} ms`,
          measured: `${ms(startup.asImage.readyzMs.p50)} ms (max ${ms(startup.asImage.readyzMs.max)})`,
          met: startup.asImage.readyzMs.p50 <= GOALS.startToReadyMs,
        }
      : notMeasured('start to ready (production bundle), median', `≤ ${GOALS.startToReadyMs} ms`),
  );
  const review = results.admission?.review.find((r) => r.concurrency === GOALS.reviewConcurrency);
  rows.push(
    review
      ? {
          target: `AdmissionReview p99 at concurrency ${GOALS.reviewConcurrency}`,
          goal: `≤ ${GOALS.reviewP99Ms} ms`,
          measured: `${ms(review.stats.latency.p99)} ms${review.floor ? ` (${HTTPS_FLOOR} alone, the same reviews and answer: ${ms(review.floor.latency.p99)} ms)` : ''}`,
          met: review.stats.latency.p99 <= GOALS.reviewP99Ms,
        }
      : notMeasured(`AdmissionReview p99 at concurrency ${GOALS.reviewConcurrency}`, `≤ ${GOALS.reviewP99Ms} ms`),
  );
  const burst = results.admission?.review.find((r) => r.concurrency === GOALS.burstConcurrency);
  const burstTarget = `AdmissionReviews denied at concurrency ${GOALS.burstConcurrency}`;
  rows.push(
    burst?.denied === undefined
      ? notMeasured(burstTarget, 'none')
      : { target: burstTarget, goal: 'none', measured: `${burst.denied} of ${burst.stats.requests}`, met: burst.denied === 0 && failures(burst.stats) === 0 },
  );
  const injectorIdle = results.admission?.memory?.idleBytes;
  const injectorTarget = 'injector resident memory, idle';
  rows.push(
    injectorIdle === undefined
      ? notMeasured(injectorTarget, `≤ ${GOALS.injectorIdleRssMiB} MiB`)
      : { target: injectorTarget, goal: `≤ ${GOALS.injectorIdleRssMiB} MiB`, measured: `${mib(injectorIdle)} MiB`, met: injectorIdle <= GOALS.injectorIdleRssMiB * MIB },
  );
  return rows;
}

const right = (title: string): Column => ({ title, align: 'right' });
const percentiles = (l: LatencySummary) => `${ms(l.p50)} / ${ms(l.p90)} / ${ms(l.p99)}`;
const APISERVER = 'kube-apiserver';
const INJECTOR = 'injector';
const cpu = (s: LoadStats, process: string) => {
  const micros = s.cpuMicrosPerRequest?.[process];
  return micros === undefined ? '' : micros.toFixed(0);
};
const failures = (s: LoadStats) => Object.values(s.non2xx).reduce((a, b) => a + b, 0) + s.errors;

function overheadTable(results: BenchResults): string {
  const rows = (results.overhead ?? []).map((p) => {
    const failed = failures(p.direct) + failures(p.through);
    const cache = p.authorizationCache ? ` (authz cache ${p.authorizationCache.hits} hits, ${p.authorizationCache.misses} misses)` : '';
    return [
      p.workload,
      String(p.concurrency),
      `${p.proxy ? `${p.proxy} (peer), ` : ''}${p.method}, ${p.caches}${cache}`,
      perSecond(p.direct.rps),
      perSecond(p.through.rps),
      ratio(p.comparison.throughputRatio),
      percentiles(p.direct.latency),
      percentiles(p.through.latency),
      signedMs(p.comparison.addedP50),
      signedMs(p.comparison.addedP99),
      cpu(p.through, p.proxy ?? 'sidecar'),
      `${cpu(p.direct, APISERVER)} → ${cpu(p.through, APISERVER)}`,
      failed === 0 ? '0' : `${failed} (${JSON.stringify({ direct: p.direct.non2xx, through: p.through.non2xx })})`,
    ];
  });
  return markdownTable(
    [
      { title: 'workload' },
      right('conns'),
      { title: 'through the sidecar (or a peer) with' },
      right('direct /s'),
      right('through /s'),
      right('ratio'),
      right('direct p50 / p90 / p99 ms'),
      right('through p50 / p90 / p99 ms'),
      right('added p50 ms'),
      right('added p99 ms'),
      right('proxy CPU µs/request'),
      right('API server CPU µs/request, direct → through'),
      right('failed'),
    ],
    rows,
  );
}

function peerTable(results: BenchResults): string {
  const rows = peerComparisons(results).map((c) => [
    c.workload,
    String(c.concurrency),
    c.peer,
    cpu(c.sidecar.through, 'sidecar'),
    cpu(c.through.through, c.peer),
    ratio(c.cpuRatio),
    `${perSecond(c.sidecar.through.rps)} / ${perSecond(c.through.through.rps)}`,
    `${signedMs(c.sidecar.comparison.addedP50)} / ${signedMs(c.through.comparison.addedP50)}`,
    `${cpu(c.sidecar.through, APISERVER)} / ${cpu(c.through.through, APISERVER)}`,
  ]);
  return markdownTable(
    [
      { title: 'workload (OIDC token, warm)' },
      right('conns'),
      { title: 'peer' },
      right('sidecar CPU µs/request'),
      right('peer CPU µs/request'),
      right('sidecar ÷ peer'),
      right('sidecar / peer requests/s'),
      right('added p50 ms, sidecar / peer'),
      right('API server CPU µs/request, sidecar / peer'),
    ],
    rows,
  );
}

function cpuVersusPeerRow(which: string, peer: string, cpuRatio: number): TargetRow {
  return {
    target: `sidecar CPU per request ÷ ${peer}'s, ${which}`,
    goal: `≤ ${GOALS.cpuVersusPeer} (first bar ${GOALS.cpuVersusPeerFirstBar})`,
    measured: ratio(cpuRatio),
    met: cpuRatio <= GOALS.cpuVersusPeer,
  };
}

/** Each HTTP/2 load measured through both the sidecar and a peer: the sidecar's CPU per request over the peer's. */
export function http2PeerRatios(results: BenchResults): { peer: string; workload: string; shape: string; cpuRatio: number }[] {
  return http2Rows(results.http2?.pairs ?? []).flatMap(({ workload, connections, streams, sidecar, peer }) => {
    const proxy = peer?.proxy;
    const [mine, theirs] = [sidecar?.through.cpuMicrosPerRequest?.sidecar, proxy ? peer.through.cpuMicrosPerRequest?.[proxy] : undefined];
    if (!proxy || mine === undefined || theirs === undefined) return [];
    return [{ peer: proxy, workload, shape: `${connections} × ${streams}`, cpuRatio: mine / theirs }];
  });
}

/** The HTTP/2 pairs of one load (workload, connections × streams, token): one direct run and each proxy's. */
export interface Http2Row {
  workload: string;
  connections: number;
  streams: number;
  method: string;
  direct: LoadStats;
  sidecar?: Http2Pair;
  peer?: Http2Pair;
}

export function http2Rows(pairs: readonly Http2Pair[]): Http2Row[] {
  const rows = new Map<string, Http2Row>();
  for (const pair of pairs) {
    const key = JSON.stringify([pair.workload, pair.concurrency, pair.streams, pair.method]);
    const row = rows.get(key) ?? { workload: pair.workload, connections: pair.concurrency, streams: pair.streams, method: pair.method, direct: pair.direct };
    if (pair.proxy) row.peer = pair;
    else row.sidecar = pair;
    rows.set(key, row);
  }
  return [...rows.values()];
}

const bodyMismatch = (s: LoadStats) => (s.bodyLengthMismatch ? `bodies ${s.bodyLengthMismatch.receivedBytes} bytes, not ${s.bodyLengthMismatch.expectedBytes}` : '');

function failedCell(runs: LoadStats[]): string {
  const failed = runs.reduce((sum, s) => sum + failures(s), 0);
  return [String(failed), ...runs.map(bodyMismatch).filter(Boolean)].join('; ');
}

/** Why a proxy has no HTTP/2 rows: what it chose in ALPN instead of h2. */
function http2Refusals(alpn: Record<string, string>): string {
  const refused = Object.entries(alpn).filter(([, protocol]) => protocol !== 'h2');
  if (refused.length === 0) return '';
  const which = refused.map(([name, protocol]) => `${name === 'sidecar' ? 'the sidecar' : name} (ALPN gave ${protocol})`).join(', ');
  return `Not measured over HTTP/2, having chosen another protocol when offered h2 and http/1.1 in ALPN as client-go offers them: ${which}.`;
}

function http2Table(results: BenchResults): string {
  const { alpn, pairs } = results.http2!;
  const peer = pairs.find((p) => p.proxy)?.proxy;
  const sides = (row: Http2Row, cell: (pair: Http2Pair | undefined) => string) => [row.sidecar, ...(peer ? [row.peer] : [])].map(cell).join(' / ');
  const through = (pair: Http2Pair | undefined, value: (pair: Http2Pair) => string) => (pair ? value(pair) : '—');
  const cpuRatio = (row: Http2Row) => {
    const [mine, theirs] = [row.sidecar?.through.cpuMicrosPerRequest?.sidecar, row.peer?.through.cpuMicrosPerRequest?.[peer ?? '']];
    return mine !== undefined && theirs !== undefined ? ratio(mine / theirs) : '';
  };
  const rows = http2Rows(pairs).map((row) => [
    row.workload,
    `${row.connections} × ${row.streams}`,
    row.method,
    perSecond(row.direct.rps),
    sides(row, (p) => through(p, (q) => perSecond(q.through.rps))),
    sides(row, (p) => through(p, (q) => signedMs(q.comparison.addedP50))),
    sides(row, (p) => through(p, (q) => signedMs(q.comparison.addedP99))),
    sides(row, (p) => through(p, (q) => cpu(q.through, q.proxy ?? 'sidecar'))),
    ...(peer ? [cpuRatio(row)] : []),
    `${cpu(row.direct, APISERVER)} / ${sides(row, (p) => through(p, (q) => cpu(q.through, APISERVER)))}`,
    `${cpu(row.direct, LOAD_GENERATOR)} / ${sides(row, (p) => through(p, (q) => cpu(q.through, LOAD_GENERATOR)))}`,
    failedCell([row.direct, ...[row.sidecar, row.peer].flatMap((p) => (p ? [p.through] : []))]),
  ]);
  const proxies = `sidecar${peer ? ` / ${peer}` : ''}`;
  const table = markdownTable(
    [
      { title: 'workload' },
      right('connections × streams'),
      { title: 'token' },
      right('direct /s'),
      right(`through /s, ${proxies}`),
      right(`added p50 ms, ${proxies}`),
      right(`added p99 ms, ${proxies}`),
      right(`proxy CPU µs/request, ${proxies}`),
      ...(peer ? [right('sidecar ÷ peer')] : []),
      right(`API server CPU µs/request, direct / ${proxies}`),
      right(`h2load CPU µs/request, direct / ${proxies}`),
      right('failed'),
    ],
    rows,
  );
  return [http2Refusals(alpn), pairs.length > 0 ? table : 'No proxy chose h2: there are no HTTP/2 pairs.'].filter(Boolean).join('\n\n');
}

/** Over HTTP/2, how the watches were carried: connections × at most that many streams each. */
const carried = (side: WatchSide) => (side.http2 ? `${side.http2.connections} × ${side.http2.streamsPerConnection}` : '');

function watchesTable(watches: WatchResult, protocol: string, run: WatchRun): string {
  const sides = [run.direct, run.through, ...(run.peer ? [run.peer] : [])];
  const row = (what: string, cell: (side: WatchSide) => string) => [what, ...sides.map(cell)];
  const cpuPerEvent = (side: WatchSide) => (side.proxyCpuMicrosPerEvent === undefined ? '' : side.proxyCpuMicrosPerEvent.toFixed(1));
  const rows = [
    ...(run.direct.http2 ? [row('connections × streams per connection', carried)] : []),
    row('seconds to open them all', (s) => s.openSeconds.toFixed(1)),
    row('change to event, p50 / p90 / p99 ms', (s) => percentiles(s.delay)),
    row('change to event, max ms', (s) => ms(s.delay.max)),
    row('change to the last client, p50 / max ms', (s) => `${ms(s.lastDelivery.p50)} / ${ms(s.lastDelivery.max)}`),
  ];
  rows.push(row('proxy CPU µs per event delivered', cpuPerEvent));
  if (run.peer) rows.push(['proxy resident MiB with the watches open', '', mib(run.sidecarRssBytes.open), mib(run.peer.rssBytes.open)]);
  const title = `${watches.watches} watches, ${watches.updates} changes${protocol === 'HTTP/1.1' ? '' : `, ${protocol}`}`;
  const table = markdownTable([{ title }, right('direct'), right('through the sidecar'), ...(run.peer ? [right(`through ${run.peer.name}`)] : [])], rows);
  return run.peerProtocol ? `${table}

Not through the peer: it chose ${run.peerProtocol} when offered h2 and http/1.1 in ALPN.` : table;
}

function watchesTables(results: BenchResults): string {
  const watches = results.watches!;
  return watchRuns(watches)
    .map(({ protocol, run }) => watchesTable(watches, protocol, run))
    .join('\n\n');
}

function heapRows(rows: string[][], moments: [string, HeapBreakdown][]): void {
  for (const [when, heap] of moments) {
    rows.push([`of it, V8 heap used / total, ${when}`, `${mib(heap.heapUsedBytes)} / ${mib(heap.heapTotalBytes)}`]);
    rows.push([`of it, Node's external memory (buffers), ${when}`, mib(heap.externalBytes)]);
  }
}

function memoryTable(results: BenchResults): string {
  const rows: string[][] = [];
  const m = results.memory;
  if (m) {
    rows.push(['idle, ready, before any request', mib(m.idleBytes)]);
    rows.push(['peak during the proxy-overhead runs', mib(m.underLoadPeakBytes)]);
    rows.push(['idle again after them', mib(m.afterLoadBytes)]);
    heapRows(rows, [
      ['idle', m.heap.idle],
      ['after the load', m.heap.afterLoad],
    ]);
  }
  const w = results.watches;
  if (w) {
    for (const { protocol, run } of watchRuns(w)) {
      const over = protocol === 'HTTP/1.1' ? 'each on a connection of its own' : `over HTTP/2 (${carried(run.through)} streams)`;
      rows.push([`another sidecar, idle before its watches ${over}`, mib(run.sidecarRssBytes.idle)]);
      rows.push([`with ${w.watches} watches open`, mib(run.sidecarRssBytes.open)]);
      heapRows(rows, [
        ['idle', run.sidecarHeap.idle],
        [`with ${w.watches} watches`, run.sidecarHeap.open],
      ]);
      rows.push([`peak with ${w.watches} watches, while events flowed`, mib(run.sidecarRssBytes.peak)]);
    }
  }
  return markdownTable([{ title: 'sidecar' }, right('resident MiB')], rows);
}

const resident = (r: Resident) => `${mib(r.totalBytes)} (${mib(r.anonymousBytes)} anonymous, ${mib(r.fileBytes)} of files)`;
const heap = (h: HeapBreakdown) => `${mib(h.heapUsedBytes)} / ${mib(h.heapTotalBytes)}, external ${mib(h.externalBytes)}`;

function soakTable(results: BenchResults): string {
  const s = results.soak!;
  const share = (bytes: number) => `${mib(bytes)} (${((bytes / s.limitBytes) * 100).toFixed(0)}% of the limit)`;
  const rows: string[][] = [
    ['memory limit (cgroup v' + String(s.cgroupVersion) + ')', mib(s.limitBytes)],
    [`V8's heap limit there, node ${s.nodeFlags.join(' ') || '(no flags)'}`, mib(s.heapLimitBytes)],
    ['resident, idle before the load', resident(s.rss.idle)],
    ['resident, peak during the load', `${resident(s.rss.peak)}, ${((s.rss.peak.totalBytes / s.limitBytes) * 100).toFixed(0)}% of the limit`],
    ['resident, idle 65 s after the load', s.rss.afterLoad ? resident(s.rss.afterLoad) : (s.killed ?? 'not measured')],
    ['peak of each pass through the load, in order', s.cyclePeaksBytes.map(mib).join(', ')],
    ['charged to the cgroup, peak (with page cache)', share(s.cgroupPeakBytes)],
    ['V8 heap used / total, idle', heap(s.heap.idle)],
    ['V8 heap used / total, peaks during the load', heap(s.heap.peak)],
    ['V8 heap used / total, after the load', s.heap.afterLoad ? heap(s.heap.afterLoad) : 'not measured'],
    ['kernel OOM kills', String(s.oomKills)],
    [`requests (failed), over ${s.seconds.toFixed(0)} s`, `${s.requests} (${s.failures})`],
    ['sidecar CPU µs per request', s.cpuMicrosPerRequest === undefined ? 'not measured' : s.cpuMicrosPerRequest.toFixed(0)],
    [`watch events to ${s.watches} open watches`, s.watchError ? `${s.watchEvents} (then: ${s.watchError})` : String(s.watchEvents)],
  ];
  return `The load, over and over: ${s.phases.join('; ')}.\n\n${markdownTable([{ title: 'sidecar in the soak' }, right('MiB, or as said')], rows)}`;
}

const sliceCells = (slice: WarmupSlice | undefined) => {
  if (!slice) return ['', '', ''];
  const micros = cpuMicrosPerRequest([slice]);
  return [`${slice.requests}${slice.failed > 0 ? ` (${slice.failed} failed)` : ''}`, micros === undefined ? '' : micros.toFixed(0), slice.latencyP50Ms === undefined ? '' : ms(slice.latencyP50Ms)];
};

/** Second by second: the first seconds after ready beside the last ones, and their CPU per request over the steady seconds'. */
export function warmupTable(w: WarmupResult): string {
  const { fresh, steady, firstSecondRatio, freshRatio } = warmupSummary(w);
  const steadyFrom = w.perSecond.length - steady.length + 1;
  const rows = fresh.map((slice, i) => [String(i + 1), ...sliceCells(slice), String(steadyFrom + i), ...sliceCells(steady[i])]);
  const total = (slices: WarmupSlice[]) => cpuMicrosPerRequest(slices)?.toFixed(0) ?? '';
  rows.push(['all', '', total(fresh), '', 'all', '', total(steady), '']);
  const table = markdownTable(
    [
      right('second after ready'),
      right('requests'),
      right('sidecar CPU µs/request'),
      right('p50 ms'),
      right('steady: second'),
      right('requests'),
      right('sidecar CPU µs/request'),
      right('p50 ms'),
    ],
    rows,
  );
  const over = (value: number | undefined) => (value === undefined ? 'n/a' : ratio(value));
  const flags = w.nodeFlags.length > 0 ? `node ${w.nodeFlags.join(' ')}` : 'node';
  return [
    `${w.workload}, ${w.connections} connection, ${w.method}, from the moment \`${flags} dist/sidecar.mjs\` answered /readyz 200, for ${w.perSecond.length} s; the first answer took ${ms(w.firstResponseMs)} ms.`,
    table,
    `First second ÷ steady: **${over(firstSecondRatio)}**; first ${fresh.length} seconds ÷ steady: ${over(freshRatio)}.`,
  ].join('\n\n');
}

function injectorMemory(memory: NonNullable<AdmissionResult['memory']>): string {
  const rss = `Injector resident memory: ${mib(memory.idleBytes)} MiB idle, ${mib(memory.afterReviewsBytes)} MiB at rest after the reviews`;
  const { cgroup } = memory;
  if (!cgroup) return `${rss} (outside any memory cgroup).`;
  return `${rss}, in a memory cgroup of the Deployment's limit (${mib(cgroup.limitBytes)} MiB), charged ${mib(cgroup.idleBytes)} and ${mib(cgroup.afterReviewsBytes)} MiB; OOM kills: ${cgroup.oomKills}.`;
}

function admissionTables(results: BenchResults): string {
  const a = results.admission!;
  const reviews = markdownTable(
    [
      right('concurrent AdmissionReviews'),
      right('per second'),
      right('p50 / p90 / p99 ms'),
      right('max ms'),
      right("injector's own ms/review"),
      right('injector event loop late p99 / max ms'),
      right('injector CPU µs/review'),
      right('load generator CPU µs/review'),
      right('denied'),
      right('failed'),
      right(`${HTTPS_FLOOR} alone: per second`),
      right('its p50 / p90 / p99 ms'),
      right('its CPU µs/review'),
    ],
    a.review.map((r) => [
      String(r.concurrency),
      perSecond(r.stats.rps),
      percentiles(r.stats.latency),
      ms(r.stats.latency.max),
      r.answeringMs === undefined ? '' : ms(r.answeringMs),
      r.eventLoopDelay ? `${ms(r.eventLoopDelay.p99Ms)} / ${ms(r.eventLoopDelay.maxMs)}` : '',
      cpu(r.stats, INJECTOR),
      cpu(r.stats, LOAD_GENERATOR),
      r.denied === undefined ? '—' : String(r.denied),
      String(failures(r.stats)),
      r.floor ? perSecond(r.floor.rps) : '',
      r.floor ? percentiles(r.floor.latency) : '',
      r.floor ? cpu(r.floor, HTTPS_FLOOR) : '',
    ]),
  );
  const runtime = a.runtime ? `\n\nThe injector ran as \`${[...Object.entries(a.runtime.env).map(([k, v]) => `${k}=${v}`), 'node', ...a.runtime.nodeFlags].join(' ')}\`.` : '';
  const memory = a.memory ? `\n\n${injectorMemory(a.memory)}` : '';
  const creates = markdownTable(
    [
      right('concurrent pod creates'),
      right('without webhook /s'),
      right('with webhook /s'),
      right('without p50 / p90 / p99 ms'),
      right('with p50 / p90 / p99 ms'),
      right('added p50 ms'),
      right('API server CPU µs/create, without → with'),
      right('injector CPU µs/create'),
      right('failed'),
    ],
    a.podCreate.map((p) => [
      String(p.concurrency),
      perSecond(p.without.rps),
      perSecond(p.with.rps),
      percentiles(p.without.latency),
      percentiles(p.with.latency),
      signedMs(p.comparison.addedP50),
      `${cpu(p.without, APISERVER)} → ${cpu(p.with, APISERVER)}`,
      cpu(p.with, INJECTOR),
      String(failures(p.without) + failures(p.with)),
    ]),
  );
  return `${reviews}${runtime}${memory}\n\n${creates}`;
}

export function renderReport(results: BenchResults): string {
  const { machine, busyBefore, busyAfter } = results;
  const processes = (busy: BenchResults['busyBefore']) =>
    Object.entries(busy.processes)
      .map(([name, count]) => `${count} ${name}`)
      .join(', ');
  const parts = [
    `# chaperone benchmarks${results.settings.quick ? ' (quick run: the harness works; the figures mean little)' : ''}`,
    [
      `- ${results.startedAt} to ${results.finishedAt}, \`${results.command}\``,
      `- ${machine.cpus} × ${machine.cpuModel}, ${mib(machine.memoryBytes)} MiB memory, ${machine.os}, Node.js ${machine.node}, Kubernetes ${results.kubernetes}`,
      `- load average before ${busyBefore.load.join(' ')} (${processes(busyBefore)}), after ${busyAfter.load.join(' ')} (${processes(busyAfter)})`,
    ].join('\n'),
    '## Targets',
    markdownTable(
      [{ title: 'target' }, { title: 'goal' }, right('measured'), { title: 'met' }],
      targets(results).map((t) => [t.target, t.goal, t.measured, t.met === undefined ? 'n/a' : t.met ? 'yes' : 'no']),
    ),
  ];
  if (results.overhead) parts.push('## Proxy overhead', overheadTable(results));
  if (peerComparisons(results).length > 0) parts.push('## Against a peer proxy', peerTable(results));
  if (results.http2) parts.push('## HTTP/2 clients', http2Table(results));
  if (results.memory || results.watches) parts.push('## Sidecar memory', memoryTable(results));
  if (results.watches) parts.push('## Watches', watchesTables(results));
  if (results.soak) parts.push('## Soak under the injected memory limit', soakTable(results));
  if (results.startup) {
    const s = results.startup;
    const flags = (v: StartupVariant) => (v.nodeFlags.length > 0 ? `node ${v.nodeFlags.join(' ')}` : 'node');
    parts.push(
      '## Start to ready (production bundle)',
      markdownTable(
        [{ title: `${s.runs} starts each` }, right('to /healthz, median / max ms'), right('to /readyz 200, median / max ms'), right('idle resident MiB')],
        [s.asImage, s.sourceMapsToggled].map((v) => [
          `${flags(v)} dist/sidecar.mjs`,
          `${ms(v.healthzMs.p50)} / ${ms(v.healthzMs.max)}`,
          `${ms(v.readyzMs.p50)} / ${ms(v.readyzMs.max)}`,
          mib(v.idleRssBytes),
        ]),
      ),
    );
    if (s.warmup) parts.push('### Warm-up', warmupTable(s.warmup));
  }
  if (results.admission) parts.push('## Admission', admissionTables(results));
  return `${parts.join('\n\n')}\n`;
}
