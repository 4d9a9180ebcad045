// Audit events to a webhook, as the API server sends them with --audit-webhook-config-file: a
// kubeconfig names the receiver and its credentials (read by the API server's rules), and events go as
// audit.k8s.io/v1 EventList batches. Batches are retried with backoff until the receiver takes
// them; a bounded buffer holds what waits. When it is full, `block` holds new requests back until
// there is room (nothing is lost), `drop` drops new events (each one counted and logged).
import type { Logger } from '../../../lib/log.js';
import { WebhookClient, type WebhookKubeconfig } from '../../../lib/webhook-kubeconfig.js';
import { AUDIT_API_VERSION } from '../../../lib/sidecar-config/audit-policy.js';
import type { OverflowMode } from '../../../lib/sidecar-config/audit.js';
import { emptyStats, type SerialisedEvent, type Sink, type SinkStats } from './sink.js';

export interface WebhookOptions {
  /** Events per EventList. */
  batchMaxSize: number;
  /** How long the first event of a batch waits for more before the batch goes anyway. */
  batchMaxWaitMs: number;
  /** Events held at most while the receiver is slow or away. */
  bufferSize: number;
  overflow: OverflowMode;
  /** The first retry waits this long; each further one twice as long, up to maxBackoffMs. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** On close, how long to keep trying to deliver what is buffered. */
  flushTimeoutMs: number;
}

/** Sends one EventList body; resolves when the receiver accepted it (2xx), rejects otherwise. */
export type Deliver = (body: string) => Promise<void>;

export function eventListJson(events: readonly SerialisedEvent[]): string {
  return `{"kind":"EventList","apiVersion":"${AUDIT_API_VERSION}","metadata":{},"items":[${events.map((e) => e.json).join(',')}]}`;
}

export class WebhookSink implements Sink {
  readonly name = 'webhook';
  private queue: SerialisedEvent[] = [];
  private readonly counters: SinkStats = emptyStats();
  private sending = false;
  private batchTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private closing = false;
  private closed = false;
  /** Requests held back in block mode, each waiting for room. */
  private readonly waiting: (() => void)[] = [];
  private readonly idle: (() => void)[] = [];

  constructor(
    private readonly deliver: Deliver,
    private readonly options: WebhookOptions,
    private readonly log: Logger,
    private readonly onClose: () => void = () => undefined,
  ) {
    this.backoffMs = options.initialBackoffMs;
  }

  write(event: SerialisedEvent): void {
    this.counters.received++;
    if (this.closed) return this.drop([event], 'the webhook sink is closed');
    if (this.options.overflow === 'drop' && this.queue.length >= this.options.bufferSize) return this.drop([event], 'the audit buffer is full');
    this.queue.push(event);
    this.schedule();
  }

  ready(): Promise<void> | undefined {
    if (this.closed || this.options.overflow !== 'block' || this.queue.length < this.options.bufferSize) return undefined;
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  stats(): SinkStats {
    return { ...this.counters, buffered: this.queue.length };
  }

  private drop(events: SerialisedEvent[], why: string): void {
    this.counters.dropped += events.length;
    for (const event of events) this.log.warn({ sink: this.name, auditID: event.auditID, dropped: this.counters.dropped }, `audit event dropped: ${why}`);
  }

  private schedule(): void {
    if (this.sending || this.retryTimer || this.queue.length === 0) return;
    if (this.closing || this.queue.length >= this.options.batchMaxSize) {
      clearTimeout(this.batchTimer);
      this.batchTimer = undefined;
      void this.send();
    } else {
      this.batchTimer ??= setTimeout(() => {
        this.batchTimer = undefined;
        void this.send();
      }, this.options.batchMaxWaitMs).unref();
    }
  }

  private async send(): Promise<void> {
    if (this.sending || this.closed || this.queue.length === 0) return;
    this.sending = true;
    const batch = this.queue.slice(0, this.options.batchMaxSize);
    try {
      await this.deliver(eventListJson(batch));
      if (this.closed) return;
      this.queue.splice(0, batch.length);
      this.counters.written += batch.length;
      this.backoffMs = this.options.initialBackoffMs;
      this.admitWaiting();
    } catch (err) {
      if (this.closed) return;
      this.counters.failures++;
      const retryInMs = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs);
      this.log.warn({ sink: this.name, err: (err as Error).message, buffered: this.queue.length, retryInMs }, 'could not deliver audit events to the webhook; retrying');
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        void this.send();
      }, retryInMs).unref();
    } finally {
      this.sending = false;
    }
    if (this.queue.length === 0) this.idle.splice(0).forEach((resolve) => resolve());
    this.schedule();
  }

  /** Lets as many held-back requests go on as there is room for. */
  private admitWaiting(): void {
    let room = this.options.bufferSize - this.queue.length;
    while (room-- > 0 && this.waiting.length > 0) this.waiting.shift()!();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    const drained = new Promise<void>((resolve) => (this.queue.length === 0 && !this.sending ? resolve() : this.idle.push(resolve)));
    this.schedule();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.flushTimeoutMs)));
    await Promise.race([drained, timedOut]);
    clearTimeout(timer);
    this.closed = true;
    clearTimeout(this.batchTimer);
    clearTimeout(this.retryTimer);
    if (this.queue.length > 0) {
      this.log.error({ sink: this.name, lost: this.queue.length }, 'shutting down before the webhook took these audit events: they are lost');
      this.counters.dropped += this.queue.length;
      this.queue = [];
    }
    this.waiting.splice(0).forEach((resolve) => resolve());
    this.onClose();
  }
}

// ---- the receiver, from a kubeconfig file ----

const REQUEST_TIMEOUT_MS = 10_000;

/** POSTs EventList bodies to the receiver the kubeconfig names (lib/webhook-kubeconfig.ts), with its credentials. */
export function webhookDelivery(target: WebhookKubeconfig): { deliver: Deliver; close: () => void } {
  const client = new WebhookClient(target);
  const deliver: Deliver = async (body) => {
    const answer = await client.post({ body, timeoutMs: REQUEST_TIMEOUT_MS });
    if (answer.status < 200 || answer.status >= 300) throw new Error(`the webhook answered ${answer.status}`);
  };
  return { deliver, close: () => client.close() };
}
