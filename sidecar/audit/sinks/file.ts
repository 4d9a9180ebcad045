// Audit events in a file, one JSON object per line, rotated by size: the current file is renamed
// <path>.1 (and <path>.1 to <path>.2, and so on), and at most `maxBackups` old files are kept.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, renameSync, unlinkSync } from 'node:fs';
import type { Logger } from '../../../lib/log.js';
import { LineSink, writeAllSync } from './lines.js';
import type { Sink } from './sink.js';

export interface FileSinkOptions {
  path: string;
  /** Rotate before a write would make the file larger than this. */
  maxBytes: number;
  /** Rotated files kept: <path>.1 (newest) to <path>.<maxBackups>. */
  maxBackups: number;
}

export class FileSink extends LineSink implements Sink {
  private fd: number | undefined;
  private size = 0;

  constructor(
    private readonly options: FileSinkOptions,
    log: Logger,
  ) {
    super('file', log);
    this.open(); // a path that cannot be written refuses to start, naming it
  }

  private open(): void {
    // Audit events say who did what: readable by the owner only.
    this.fd = openSync(this.options.path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  protected writeLine(line: Buffer): void {
    if (this.fd === undefined) this.open();
    if (this.size > 0 && this.size + line.length > this.options.maxBytes) this.rotate();
    writeAllSync(this.fd!, line);
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
