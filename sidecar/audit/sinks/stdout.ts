// Audit events on standard output, one JSON object per line. Operational logs go to standard error
// (lib/log.ts), so this stream holds events and nothing else.
//
// Written without holding the event loop: a log reader that falls behind (a full pipe) must not
// freeze every connection and the probes with it, as a synchronous write would (the kubelet would
// then restart the pod). Lines queue instead; past MAX_QUEUED_BYTES the sink says it is full, and
// new requests wait before they are served (Sink.ready, as the webhook's block mode does, and as the
// API server's blocking audit mode holds a request until its event is written), while the requests
// under way go on. What is queued when the process is killed is lost: at most that much.
import { writev } from 'node:fs';
import type { Logger } from '../../../lib/log.js';
import { emptyStats, type SerialisedEvent, type Sink, type SinkStats } from './sink.js';

const MAX_QUEUED_BYTES = 1024 * 1024;
/** At most this many lines in one write (the system's IOV_MAX is 1024). */
const MAX_LINES_PER_WRITE = 256;
/** How long to wait before trying again when the pipe is full and the descriptor non-blocking. */
const RETRY_MS = 5;

export class StdoutSink implements Sink {
  readonly name = 'stdout';
  private readonly counters: SinkStats = emptyStats();
  private readonly queue: { bytes: Buffer; auditID: string }[] = [];
  private queuedBytes = 0;
  private writing = false;
  private full: { promise: Promise<void>; resolve: () => void } | undefined;
  private idle: (() => void)[] = [];
  /** Closed with lines still queued: nothing more is tried. */
  private abandoned = false;

  constructor(
    private readonly log: Logger,
    /** How long close() waits for a reader that is behind; what is still queued then is counted as dropped. */
    private readonly flushTimeoutMs: number,
    private readonly fd = 1,
  ) {}

  write(event: SerialisedEvent): void {
    const bytes = Buffer.from(`${event.json}\n`);
    this.counters.received++;
    this.queue.push({ bytes, auditID: event.auditID });
    this.queuedBytes += bytes.length;
    if (this.queuedBytes > MAX_QUEUED_BYTES && !this.full) {
      let resolve = () => undefined as void;
      this.full = { promise: new Promise<void>((r) => (resolve = r)), resolve };
    }
    if (!this.writing) this.next(0);
  }

  /**
   * Writes every queued line (the first from `offset`) in one call, then what was queued meanwhile,
   * until the queue is empty: under load one write, and one trip through the thread pool, carries
   * many events instead of one each.
   */
  private next(offset: number): void {
    const batch = this.abandoned ? [] : this.queue.slice(0, MAX_LINES_PER_WRITE);
    if (batch.length === 0) {
      this.writing = false;
      this.idle.splice(0).forEach((resolve) => resolve());
      return;
    }
    this.writing = true;
    const buffers = batch.map(({ bytes }, i) => (i === 0 ? bytes.subarray(offset) : bytes));
    writev(this.fd, buffers, null, (err, written) => {
      if (err?.code === 'EAGAIN') return void setTimeout(() => this.next(offset), RETRY_MS);
      if (err) {
        this.lost(batch[0]!.auditID, err);
        this.shift(1);
        return this.next(0);
      }
      let left = offset + written;
      let complete = 0;
      while (complete < batch.length && left >= batch[complete]!.bytes.length) left -= batch[complete++]!.bytes.length;
      this.counters.written += complete;
      this.shift(complete);
      this.next(left);
    });
  }

  /** The first `count` lines are done with: written or lost. */
  private shift(count: number): void {
    for (const { bytes } of this.queue.splice(0, count)) this.queuedBytes -= bytes.length;
    if (this.full && this.queuedBytes <= MAX_QUEUED_BYTES / 2) {
      this.full.resolve();
      this.full = undefined;
    }
  }

  private lost(auditID: string, err: Error): void {
    this.counters.failures++;
    this.counters.dropped++;
    this.log.error({ sink: this.name, auditID, err: err.message, dropped: this.counters.dropped }, 'could not write an audit event: it is lost');
  }

  ready(): Promise<void> | undefined {
    return this.full?.promise;
  }

  stats(): SinkStats {
    return { ...this.counters, buffered: this.queue.length };
  }

  /** Resolves once every queued line is written, or after flushTimeoutMs (a reader that never reads must not hold the shutdown). */
  close(): Promise<void> {
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const left = this.queue.length;
        this.abandoned = true;
        this.queue.length = 0;
        this.full?.resolve();
        this.full = undefined;
        this.counters.dropped += left;
        this.log.error({ sink: this.name, dropped: left }, `standard output's reader did not take the last ${left} audit events within ${this.flushTimeoutMs}ms: they are lost`);
        resolve();
      }, this.flushTimeoutMs);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
