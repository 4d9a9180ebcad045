// The shape of a benchmark run's results: what bench/results/latest.json holds.
import type { LoadStats } from './load.js';
import type { Busy, MachineInfo } from './machine.js';
import type { HeapBreakdown } from './metrics.js';
import type { LatencySummary, PairComparison } from './stats.js';

export interface OverheadPair {
  workload: string;
  concurrency: number;
  /** How the person authenticated to the sidecar. */
  method: string;
  caches: 'warm' | 'cold';
  direct: LoadStats;
  through: LoadStats;
  comparison: PairComparison;
  /** For cold caches: the sidecar's authorization cache lookups during the run through it. */
  authorizationCache?: { hits: number; misses: number };
}

export interface WatchSide {
  /** Seconds to open every watch (response headers received). */
  openSeconds: number;
  /** Object change (the update sent) to the event at each client, every watch and update. */
  delay: LatencySummary;
  /** Object change to the event at the last of the clients, per update. */
  lastDelivery: LatencySummary;
}

export interface WatchResult {
  watches: number;
  updates: number;
  direct: WatchSide;
  through: WatchSide;
  /** The sidecar's resident memory: idle before, with every watch open, and the peak while events flowed. */
  sidecarRssBytes: { idle: number; open: number; peak: number };
  /** Its heap and external memory, idle and with every watch open. */
  sidecarHeap: { idle: HeapBreakdown; open: HeapBreakdown };
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

export interface StartupResult {
  runs: number;
  /** With the images' node flags. */
  asImage: StartupVariant;
  withoutSourceMaps: StartupVariant;
}

export interface AdmissionResult {
  /** AdmissionReview straight to the injector. */
  review: { concurrency: number; stats: LoadStats }[];
  /** Pod create through the API server, in a namespace the webhook is not called for and in one it is. */
  podCreate: { concurrency: number; without: LoadStats; with: LoadStats; comparison: PairComparison }[];
}

export interface BenchSettings {
  quick: boolean;
  seconds: number;
  warmupSeconds: number;
  concurrencies: number[];
  objects: { list: number; paged: number; pageSize: number };
  watches: number;
  watchUpdates: number;
  startupRuns: number;
  admissionConcurrencies: number[];
  podCreateConcurrencies: number[];
}

export type Section = 'startup' | 'overhead' | 'watches' | 'admission';

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
  memory?: MemoryResult;
  watches?: WatchResult;
  admission?: AdmissionResult;
}
