// Audit events in a file, one JSON object per line, rotated by size: the current file is renamed
// <path>.1 (and <path>.1 to <path>.2, and so on), and at most `maxBackups` old files are kept.
// Written synchronously: an event is on disk before the request's 'close' handler returns, and
// nothing waits in memory to be lost on a crash (a regular file's writes never wait for a reader;
// standard output's can, and that sink queues instead: stdout.ts).
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import type { Logger } from '../../../lib/log.js';
import { emptyStats, type SerialisedEvent, type Sink, type SinkStats } from './sink.js';

export interface FileSinkOptions {
  path: string;
  /** Rotate before a write would make the file larger than this. */
  maxBytes: number;
  /** Rotated files kept: <path>.1 (newest) to <path>.<maxBackups>. */
  maxBackups: number;
}

export class FileSink implements Sink {
  readonly name = 'file';
  private readonly counters: SinkStats = emptyStats();
  private fd: number | undefined;
  private size = 0;

  constructor(
    private readonly options: FileSinkOptions,
    private readonly log: Logger,
  ) {
    this.open(); // a path that cannot be written refuses to start, naming it
  }

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

  private open(): void {
    // Audit events say who did what: readable by the owner only.
    this.fd = openSync(this.options.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  private writeLine(line: Buffer): void {
    if (this.fd === undefined) this.open();
    if (this.size > 0 && this.size + line.length > this.options.maxBytes) this.rotate();
    for (let offset = 0; offset < line.length; ) offset += writeSync(this.fd!, line, offset);
    this.size += line.length;
  }

  private rotate(): void {
    this.release();
    const { path, maxBackups } = this.options;
    const backup = (n: number) => `${path}.${n}`;
    if (maxBackups === 0) unlinkSync(path);
    for (let n = maxBackups; n >= 1; n--) {
      const from = n === 1 ? path : backup(n - 1);
      if (existsSync(from)) renameSync(from, backup(n));
    }
    this.open();
    this.log.info({ path, keep: maxBackups }, 'rotated the audit file');
  }

  private release(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  close(): Promise<void> {
    this.release();
    return Promise.resolve();
  }
}
