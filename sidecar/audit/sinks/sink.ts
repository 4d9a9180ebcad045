// Where events go. Every sink takes events already serialised (one JSON object each) and never throws.
import type { SinkName } from '../../../lib/sidecar-config/audit.js';


/** One event, serialised once for every sink. */
export interface SerialisedEvent {
  auditID: string;
  json: string;
}

export interface SinkStats {
  /** Events handed to the sink. */
  received: number;
  /** Events written (file, stdout) or accepted by the receiver (webhook). */
  written: number;
  /** Events lost: the buffer was full in drop mode, a write failed, or shutdown came first. */
  dropped: number;
  /** Events waiting to be sent. */
  buffered: number;
  /** Failed attempts to write or send (each retried, until written or dropped). */
  failures: number;
}

export interface Sink {
  readonly name: SinkName;
  write(event: SerialisedEvent): void;
  /** Undefined when the sink can take more now; else resolves once it can (back-pressure in block mode). */
  ready(): Promise<void> | undefined;
  stats(): SinkStats;
  /** Writes out what is buffered (within the sink's flush timeout) and releases the sink. */
  close(): Promise<void>;
}

export function emptyStats(): SinkStats {
  return { received: 0, written: 0, dropped: 0, buffered: 0, failures: 0 };
}
