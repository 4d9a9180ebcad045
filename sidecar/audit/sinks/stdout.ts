// Audit events on standard output, one JSON object per line. Operational logs go to standard error
// (lib/log.ts), so this stream holds events and nothing else.
import type { Logger } from '../../../lib/log.js';
import { LineSink, writeAllSync } from './lines.js';
import type { Sink } from './sink.js';

export class StdoutSink extends LineSink implements Sink {
  constructor(
    log: Logger,
    private readonly fd = 1,
  ) {
    super('stdout', log);
  }

  protected writeLine(line: Buffer): void {
    writeAllSync(this.fd, line);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
