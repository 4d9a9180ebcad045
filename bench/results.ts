// The shape of a benchmark run's results: what bench/results/latest.json holds.
import type { LoadStats } from './load.js';
import type { Busy, MachineInfo } from './machine.js';
import type { HeapBreakdown } from './metrics.js';
import type { Resident } from './processes.js';
import type { LatencySummary, PairComparison } from './stats.js';

export interface OverheadPair {
  workload: string;
  concurrency: number;
  /** Set when the requests went through a peer proxy (--peer) instead of the sidecar: its name. */
  proxy?: string;
  /** How the person authenticated to the sidecar. */
  method: string;
  caches: 'warm' | 'cold';
  direct: LoadStats;
  through: LoadStats;
  comparison: PairComparison;
  /** For cold caches: the sidecar's authorization cache lookups during the run through it. */
  authorizationCache?: { hits: number; misses: number };
}

/** A pair of HTTP/2 runs (h2load): `concurrency` connections with `streams` concurrent streams each. */
export interface Http2Pair extends OverheadPair {
  streams: number;
}

export interface Http2Result {
  /** What each server chose when offered h2 and http/1.1 in ALPN, by name (kube-apiserver, sidecar, a peer): only those that chose h2 are measured. */
  alpn: Record<string, string>;
  pairs: Http2Pair[];
}

export interface WatchSide {
  /** Seconds to open every watch (response headers received). */
  openSeconds: number;
  /** Object change (the update sent) to the event at each client, every watch and update. */
  delay: LatencySummary;
  /** Object change to the event at the last of the clients, per update. */
  lastDelivery: LatencySummary;
  /** The proxy's CPU time while the events flowed, per event delivered (not measured direct). */
  proxyCpuMicrosPerEvent?: number;
  /** Over HTTP/2: the connections that carried the watches, and at most how many each (what the server allows on one). */
  http2?: { connections: number; streamsPerConnection: number };
}

/** One protocol's watches: direct, through a sidecar of their own, and through the peer proxy. */
export interface WatchRun {
  direct: WatchSide;
  through: WatchSide;
  /** The same watches through a peer proxy (--peer), after the sidecar's; its resident memory before and with them open. */
  peer?: WatchSide & { name: string; rssBytes: { idle: number; open: number } };
  /** Over HTTP/2: what the peer chose instead of h2 in ALPN, when it did (then it has no side). */
  peerProtocol?: string;
  /** The sidecar's resident memory: idle before, with every watch open, and the peak while events flowed. */
  sidecarRssBytes: { idle: number; open: number; peak: number };
  /** Its heap and external memory, idle and with every watch open. */
  sidecarHeap: { idle: HeapBreakdown; open: HeapBreakdown };
}

/** Each watch on an HTTP/1.1 connection of its own; then (not with --no-http2) the same as HTTP/2 streams. */
export interface WatchResult extends WatchRun {
  watches: number;
  updates: number;
  http2?: WatchRun;
}

export interface MemoryResult {
  /** Ready, before any request. */
  idleBytes: number;
  /** The peak over every run through it. */
  underLoadPeakBytes: number;
  /** Idle again after the load. */
  afterLoadBytes: number;
  /** Its heap and external memory, idle before and after the load. */
  heap: { idle: HeapBreakdown; afterLoad: HeapBreakdown };
}

export interface StartupVariant {
  /** Node's flags, before the bundle. */
  nodeFlags: string[];
  /** Process start to /healthz answering (listening). */
  healthzMs: LatencySummary;
  /** Process start to /readyz answering 200. */
  readyzMs: LatencySummary;
  /** Resident memory a moment after the last start, idle. */
  idleRssBytes: number;
}

/** One second of the warm-up run: what the sidecar spent on the answers that arrived in it. */
export interface WarmupSlice {
  /** Its length by the load generator's clock (a timer's lateness makes it a little over 1). */
  seconds: number;
  /** Answers in it, 2xx or not. */
  requests: number;
  /** Answers other than 2xx. */
  failed: number;
  /** The sidecar's CPU time (user and system, every thread) between the slice's ends, from /proc (10 ms ticks). */
  cpuSeconds: number;
  /** Latency of its 2xx answers, by autocannon; absent when there were none. */
  latencyP50Ms?: number;
}

/** A freshly started sidecar under small GETs at one connection from the moment /readyz answers 200, second by second. */
export interface WarmupResult {
  workload: string;
  method: string;
  connections: number;
  /** Node's flags, before the bundle (the image's). */
  nodeFlags: string[];
  /** The first answer's latency: TLS handshake, authentication, first SubjectAccessReview, first compile. */
  firstResponseMs: number;
  /** Every second of the run, in order. */
  perSecond: WarmupSlice[];
  /** The first this many seconds are set against the last this many (steady state). */
  compared: number;
}

export interface StartupResult {
  runs: number;
  /** With the image's node flags. */
  asImage: StartupVariant;
  /** The same with --enable-source-maps added, or taken away if the image has it. */
  sourceMapsToggled: StartupVariant;
  /** CPU per request in the first seconds after ready against a while later (absent from results older than it). */
  warmup?: WarmupResult;
}

export interface SoakResult {
  /** The memory limit of the cgroup the sidecar ran in: the injector's. */
  limitBytes: number;
  cgroupVersion: 1 | 2;
  /** Node's flags (the image's, unless --sidecar-node-flags said otherwise). */
  nodeFlags: string[];
  /** V8's heap limit with those flags in that cgroup. */
  heapLimitBytes: number;
  seconds: number;
  /** The load, in the order it ran, over and over. */
  phases: string[];
  watches: number;
  requests: number;
  /** Answers other than 2xx, connection errors, and phases in which nothing succeeded. */
  failures: number;
  /** The sidecar's CPU time over the soak (watch events included) per request. */
  cpuMicrosPerRequest?: number;
  /** Watch events delivered through the sidecar during the soak. */
  watchEvents: number;
  /** Why the watches stopped seeing their object's changes, if they did while the sidecar ran. */
  watchError?: string;
  /** The sidecar's resident memory: ready before the load, the peak during it, and idle 65 s after it. */
  rss: { idle: Resident; peak: Resident; afterLoad?: Resident };
  /** The peak resident memory of each pass through the phases, in order: a leak would climb. */
  cyclePeaksBytes: number[];
  /** The most memory the kernel charged to the cgroup (the process and the page cache it caused). */
  cgroupPeakBytes: number;
  heap: { idle: HeapBreakdown; peak: HeapBreakdown; afterLoad?: HeapBreakdown };
  /** Processes of the cgroup the kernel killed for going over the limit. */
  oomKills: number;
  /** Set when the sidecar did not live to the end of the soak. */
  killed?: string;
}

/** Node.js's HTTPS server alone, answering AdmissionReviews as the injector did: its key in cpuMicrosPerRequest. */
export const HTTPS_FLOOR = 'Node.js HTTPS server';

export interface AdmissionResult {
  /** How the injector ran: node's flags and the image's environment. */
  runtime?: { nodeFlags: string[]; env: Record<string, string> };
  /** AdmissionReview straight to the injector; denied: answers that refused the pod (its /metrics). */
  review: {
    concurrency: number;
    stats: LoadStats;
    denied?: number;
    /** The injector's own mean time per review, from reading it to answering (its admission histogram). */
    answeringMs?: number;
    /** How late the injector's event loop ran during the run (Node's monitorEventLoopDelay, from its /metrics). */
    eventLoopDelay?: { p99Ms: number; maxMs: number };
    /** The same reviews to Node.js's HTTPS server alone, giving the injector's answer (bench/https-floor.ts), back to back with the injector's run. */
    floor?: LoadStats;
  }[];
  /** The injector's resident memory, ready and quiet, and quiet again after the reviews. */
  memory?: {
    idleBytes: number;
    afterReviewsBytes: number;
    /** The memory cgroup of the Deployment's limit it ran in, and what that cgroup was charged at the same moments. */
    cgroup?: { limitBytes: number; idleBytes: number; afterReviewsBytes: number; oomKills: number };
  };
  /** Pod create through the API server, in a namespace the webhook is not called for and in one it is. */
  podCreate: { concurrency: number; without: LoadStats; with: LoadStats; comparison: PairComparison }[];
}

export interface BenchSettings {
  quick: boolean;
  seconds: number;
  warmupSeconds: number;
  concurrencies: number[];
  /** The HTTP/2 runs' connections and concurrent streams on each. */
  http2Shapes: { connections: number; streams: number }[];
  objects: { list: number; paged: number; pageSize: number };
  watches: number;
  watchUpdates: number;
  startupRuns: number;
  /** The warm-up run's length in seconds, and how many seconds at each end of it are compared. */
  warmup: { seconds: number; compared: number };
  /** How long the soak runs, and each of its phases. */
  soakSeconds: number;
  soakPhaseSeconds: number;
  soakWatches: number;
  admissionConcurrencies: number[];
  podCreateConcurrencies: number[];
}

export type Section = 'startup' | 'overhead' | 'watches' | 'soak' | 'admission';

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: MachineInfo;
  busyBefore: Busy;
  busyAfter: Busy;
  kubernetes: string;
  settings: BenchSettings;
  /** The sections run (all but with --only). */
  sections: Section[];
  startup?: StartupResult;
  overhead?: OverheadPair[];
  /** The overhead section's HTTP/2 clients (not with --no-http2). */
  http2?: Http2Result;
  memory?: MemoryResult;
  watches?: WatchResult;
  soak?: SoakResult;
  admission?: AdmissionResult;
}
