// JSON lines to a file descriptor, synchronously: an event is on disk (or in the pipe) before the
// request's 'close' handler returns, and nothing waits in memory to be lost on a crash.
import { writeSync } from 'node:fs';
import type { Logger } from '../../../lib/log.js';
import type { SinkName } from '../../../lib/sidecar-config/audit.js';
import { emptyStats, type SerialisedEvent, type SinkStats } from './sink.js';

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Writes all of `bytes`, waiting out EAGAIN when the descriptor is a non-blocking pipe whose reader is behind. */
export function writeAllSync(fd: number, bytes: Buffer): void {
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(sleeper, 0, 0, 1);
    }
  }
}

/** What the stdout and file sinks share: one line per event, counted, failures logged without the event. */
export abstract class LineSink {
  protected readonly counters: SinkStats = emptyStats();

  constructor(
    readonly name: SinkName,
    protected readonly log: Logger,
  ) {}

  /** Writes one line; throws on failure. */
  protected abstract writeLine(line: Buffer): void;

  write(event: SerialisedEvent): void {
    this.counters.received++;
    try {
      this.writeLine(Buffer.from(`${event.json}\n`));
      this.counters.written++;
    } catch (err) {
      this.counters.failures++;
      this.counters.dropped++;
      this.log.error({ sink: this.name, auditID: event.auditID, err: (err as Error).message, dropped: this.counters.dropped }, 'could not write an audit event: it is lost');
    }
  }

  ready(): undefined {
    return undefined;
  }

  stats(): SinkStats {
    return { ...this.counters };
  }
}
