// Audit events to a webhook, as the API server sends them with --audit-webhook-config-file: a
// kubeconfig names the receiver (server, CA, client certificate or token), and events go as
// audit.k8s.io/v1 EventList batches. Batches are retried with backoff until the receiver takes
// them; a bounded buffer holds what waits. When it is full, `block` holds new requests back until
// there is room (nothing is lost), `drop` drops new events (each one counted and logged).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Logger } from '../../../lib/log.js';
import { AUDIT_API_VERSION } from '../types.js';
import { emptyStats, type OverflowMode, type SerialisedEvent, type Sink, type SinkStats } from './sink.js';

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

export interface WebhookTarget {
  url: URL;
  /** TLS and authentication for each request; holds the client key or token, so it is never logged. */
  requestOptions: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean; servername?: string; headers?: Record<string, string> };
}

type Entry = Record<string, unknown>;

const isEntry = (value: unknown): value is Entry => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A kubeconfig's named list (clusters, users, contexts) as name -> the object under `field`. */
function namedEntries(list: unknown, field: string): { name: unknown; value: Entry }[] {
  return (Array.isArray(list) ? list : []).filter(isEntry).map((entry) => ({ name: entry.name, value: isEntry(entry[field]) ? entry[field] : {} }));
}

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

/**
 * The receiver as the kubeconfig's current context (or its first context, or else its first cluster
 * and user) names it. Read with the yaml package alone: @kubernetes/client-node, for this alone, was
 * more than half of the sidecar's bundle and a fifth of its idle memory (docs/benchmarks.md).
 */
export function loadWebhookTarget(file: string): WebhookTarget {
  let config: unknown;
  try {
    config = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: not a usable kubeconfig: ${(err as Error).message}`);
  }
  const root = isEntry(config) ? config : {};
  const contexts = namedEntries(root.contexts, 'context');
  const clusters = namedEntries(root.clusters, 'cluster');
  const users = namedEntries(root.users, 'user');
  const context = contexts.find((c) => c.name === root['current-context']) ?? contexts[0];
  const cluster = (context ? clusters.find((c) => c.name === context.value.cluster) : clusters[0])?.value;
  const user = (context ? users.find((u) => u.name === context.value.user) : users[0])?.value ?? {};
  const server = text(cluster?.server);
  if (!cluster || !server) throw new Error(`${file}: names no cluster with a server to send audit events to`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new Error(`${file}: the server ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`${file}: the server must be an https (or http) URL`);
  // File paths are relative to the kubeconfig, as client-go reads them.
  const dir = path.dirname(path.resolve(file));
  const fromFileOrData = (entry: Entry, fileField: string, dataField: string) => {
    const [named, data] = [text(entry[fileField]), text(entry[dataField])];
    return named || data ? readKubeconfigValue(file, named && path.resolve(dir, named), data) : undefined;
  };
  const ca = fromFileOrData(cluster, 'certificate-authority', 'certificate-authority-data');
  const cert = fromFileOrData(user, 'client-certificate', 'client-certificate-data');
  const key = fromFileOrData(user, 'client-key', 'client-key-data');
  const token = text(user.token);
  const serverName = text(cluster['tls-server-name']);
  return {
    url,
    requestOptions: {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(cluster['insecure-skip-tls-verify'] === true ? { rejectUnauthorized: false } : {}),
      ...(serverName ? { servername: serverName } : {}),
      ...(token ? { headers: { authorization: `Bearer ${token.trim()}` } } : {}),
    },
  };
}

function readKubeconfigValue(file: string, path: string | undefined, data: string | undefined): Buffer {
  try {
    return path ? readFileSync(path) : Buffer.from(data!, 'base64');
  } catch (err) {
    throw new Error(`${file}: cannot read ${path}: ${(err as Error).message}`);
  }
}

const REQUEST_TIMEOUT_MS = 10_000;

/** POSTs EventList bodies to the target over keep-alive connections. */
export function webhookDelivery(target: WebhookTarget): { deliver: Deliver; close: () => void } {
  const secure = target.url.protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true, ...target.requestOptions }) : new HttpAgent({ keepAlive: true });
  const send = secure ? httpsRequest : httpRequest;
  const deliver: Deliver = (body) =>
    new Promise((resolve, reject) => {
      const req = send(
        target.url,
        {
          ...target.requestOptions,
          method: 'POST',
          agent,
          timeout: REQUEST_TIMEOUT_MS,
          headers: { ...target.requestOptions.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res: IncomingMessage) => {
          res.resume();
          res.on('end', () => {
            const code = res.statusCode ?? 0;
            if (code >= 200 && code < 300) resolve();
            else reject(new Error(`the webhook answered ${code}`));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from the webhook within ${REQUEST_TIMEOUT_MS}ms`)));
      req.on('error', reject);
      req.end(body);
    });
  return { deliver, close: () => agent.destroy() };
}
