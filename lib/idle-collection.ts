// One full garbage collection when a busy spell ends. V8's memory reducer, which should shrink the
// heap once a process goes quiet, waits for an allocation rate it judges low; in the sidecar after a
// burst it kept judging it high (--trace-memory-reducer: "high alloc" every 8 s for minutes), so the
// heap stayed at its busiest size, garbage included, until the next burst. One collection of the kind
// V8 runs before giving up on memory ("last-resort": it also shrinks the heap and returns its pages),
// once no request has arrived for 30 to 60 s, gives them back (docs/benchmarks.md, "Memory after a busy spell").
// Start-up counts as a busy spell: what loading the bundle and the configuration left goes too.
import { getHeapStatistics } from 'node:v8';
import type { Logger } from './log.js';

export interface IdleCollectionOptions {
  /** A count that grows with the work done (requests begun): unchanged over one interval is quiet. */
  activity(): number;
  /** Node's `gc` (node --expose-gc); without it nothing is collected. */
  gc: NodeJS.GCFunction | undefined;
  log: Logger;
  /** How often to look; a collection follows between one and two of these after the last request. */
  intervalMs?: number;
  /** The first look, at which start-up's garbage goes (unless requests began already). */
  firstLookMs?: number;
  /** Grown by less than this since the last collection, the heap is left alone. */
  minGrowthBytes?: number;
  heapUsedBytes?: () => number;
}

// Quiet for a while, not a moment: after the collection V8 grows its heap again and may recompile what
// it dropped, which the pauses between a person's clicks should not pay for (docs/benchmarks.md).
const CHECK_INTERVAL_MS = 30_000;
const FIRST_LOOK_MS = 1000;
const MIN_GROWTH_BYTES = 4 * 2 ** 20;

export class IdleCollector {
  private seen: number;
  private busy = true;
  private usedAfterCollection = 0;

  constructor(
    private readonly gc: NodeJS.GCFunction,
    private readonly options: Omit<IdleCollectionOptions, 'gc'>,
  ) {
    this.seen = options.activity();
  }

  /** One look: collects if the last interval was quiet after a busy one and the heap grew enough since the last collection. */
  check(): void {
    const now = this.options.activity();
    if (now !== this.seen) {
      this.seen = now;
      this.busy = true;
      return;
    }
    if (!this.busy) return;
    this.busy = false;
    const heapUsed = this.options.heapUsedBytes ?? (() => getHeapStatistics().used_heap_size);
    const before = heapUsed();
    if (before - this.usedAfterCollection < (this.options.minGrowthBytes ?? MIN_GROWTH_BYTES)) return;
    const started = performance.now();
    this.gc({ type: 'major', flavor: 'last-resort' });
    this.usedAfterCollection = heapUsed();
    const pauseMs = Math.round(performance.now() - started);
    this.options.log.debug({ heapUsedBefore: before, heapUsedAfter: this.usedAfterCollection, pauseMs }, 'collected garbage after a busy spell');
  }
}

/** Looks after firstLookMs, then every intervalMs; the returned function stops. Never keeps the process alive. */
export function collectWhenIdle({ gc, ...options }: IdleCollectionOptions): () => void {
  if (!gc) {
    options.log.debug('garbage is left to V8 after busy spells: node runs without --expose-gc');
    return () => {};
  }
  const collector = new IdleCollector(gc, options);
  let timer: NodeJS.Timeout = setTimeout(() => {
    collector.check();
    timer = setInterval(() => collector.check(), options.intervalMs ?? CHECK_INTERVAL_MS).unref();
  }, options.firstLookMs ?? FIRST_LOOK_MS).unref();
  return () => clearTimeout(timer);
}
