// The injector's Kubernetes REST client: the handful of verbs it uses, by path as the API server
// spells them, over one pool of kept-alive connections. (@kubernetes/client-node built a new agent,
// and so a new TLS connection, for every request, and brought 1.4 MB of code and ~40 MiB of memory
// the injector never used: docs/benchmarks.md.) The connection decides every request's credentials
// (a rotated token is picked up); the agent is renewed only when the TLS settings change.
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { KubeConnection, RequestCredentials, ServerVerification } from './connection.js';

export type Query = Record<string, string | number | boolean | undefined>;

export interface ObjectList<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

/** The Content-Type of each kind of patch the API server takes. */
export const PATCH_TYPES = {
  json: 'application/json-patch+json',
  merge: 'application/merge-patch+json',
  strategicMerge: 'application/strategic-merge-patch+json',
} as const;
export type PatchType = keyof typeof PATCH_TYPES;

/** meta/v1 DeleteOptions: what a delete is sent with. */
export interface DeleteOptions {
  preconditions?: { uid?: string; resourceVersion?: string };
  /** Orphan, Background or Foreground. */
  propagationPolicy?: string;
  gracePeriodSeconds?: number;
}

export interface KubeRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** As the API server spells it: /api/v1/namespaces/x/secrets/y. */
  path: string;
  query?: Query;
  /** Sent as JSON. */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export interface KubeAnswer {
  status: number;
  body: string;
}

/** The API server's refusal: its HTTP status and its Status's reason and message (never a header). */
export class KubeApiError extends Error {
  constructor(
    readonly statusCode: number,
    /** The Status's message, or the start of the body when it is no Status. */
    readonly apiMessage: string,
    /** The Status's reason: NotFound, AlreadyExists, Conflict, Forbidden... */
    readonly reason: string | undefined,
    where: string,
  ) {
    super(`${where}: HTTP ${statusCode}: ${apiMessage}`);
  }
}

/** A Status's message and reason; the start of the body when it is no Status. */
export function statusOf(body: string): { message: string; reason?: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    // not a Status: the text itself
  }
  const fields = typeof parsed === 'object' && parsed !== null ? (parsed as { message?: unknown; reason?: unknown }) : {};
  return { message: typeof fields.message === 'string' ? fields.message : body.slice(0, 200), ...(typeof fields.reason === 'string' ? { reason: fields.reason } : {}) };
}

/** The error an answer that is not a success stands for. */
export function apiError(status: number, body: string, where: string): KubeApiError {
  const { message, reason } = statusOf(body);
  return new KubeApiError(status, message, reason, where);
}

export interface WatchEvents {
  /** Each event as the API server sends it: ADDED, MODIFIED, DELETED, BOOKMARK, ERROR (object: a Status). */
  onEvent(type: string, object: unknown): void;
  /** The API server answered: from here on every change arrives as an event. */
  onOpen?(): void;
}

/** Idempotent, or made so by the callers' preconditions (resourceVersion, a JSON Patch's test): never POST. */
const RETRIED_ON_A_STALE_CONNECTION = new Set(['GET', 'PUT', 'PATCH', 'DELETE']);

interface OpenRequest {
  method: string;
  headers: OutgoingHttpHeaders;
  credentials: RequestCredentials;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const WATCH_INACTIVITY_MS = 30_000;

type TlsOptions = ServerVerification & Pick<RequestCredentials, 'cert' | 'key'>;

const sameBytes = (a: Buffer | undefined, b: Buffer | undefined) => a === b || (a !== undefined && b !== undefined && a.equals(b));

function sameTls(a: TlsOptions, b: TlsOptions): boolean {
  return sameBytes(a.ca, b.ca) && sameBytes(a.cert, b.cert) && sameBytes(a.key, b.key) && a.servername === b.servername && a.rejectUnauthorized === b.rejectUnauthorized;
}

/** The TLS settings that are set, for the agent. */
function definedOnly(tls: TlsOptions): TlsOptions {
  return Object.fromEntries(Object.entries(tls).filter(([, value]) => value !== undefined));
}

export interface KubeApiOptions {
  /** Every request's timeout unless it gives one; 30 s. */
  timeoutMs?: number;
  /** How long a watch may wait for its answer, then for each event (its server-side timeoutSeconds should be shorter); 30 s. */
  watchInactivityMs?: number;
}

/** What reads objects by path: the provisioning check takes any (a KubeApi, or a test's). */
export interface KubeReader {
  /** The object at this API path, or undefined when there is none (404). */
  get<T>(path: string): Promise<T | undefined>;
}

export class KubeApi implements KubeReader {
  private pool: { tls: TlsOptions; agent: HttpAgent } | undefined;
  private readonly base: URL;
  private readonly timeoutMs: number;
  private readonly watchInactivityMs: number;

  constructor(
    readonly connection: KubeConnection,
    options: KubeApiOptions = {},
  ) {
    this.base = new URL(connection.server);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.watchInactivityMs = options.watchInactivityMs ?? WATCH_INACTIVITY_MS;
  }

  /** The object at this path; a KubeApiError when the API server refuses (404 included). */
  read<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>({ method: 'GET', path, ...(query ? { query } : {}) });
  }

  /** The object at this path, or undefined when there is none (404). */
  async get<T>(path: string, query?: Query): Promise<T | undefined> {
    try {
      return await this.read<T>(path, query);
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 404) return undefined;
      throw err;
    }
  }

  list<T>(path: string, query?: Query): Promise<ObjectList<T>> {
    return this.read<ObjectList<T>>(path, query);
  }

  create<T>(path: string, body: T, query?: Query): Promise<T> {
    return this.request<T>({ method: 'POST', path, body, ...(query ? { query } : {}) });
  }

  replace<T>(path: string, body: T): Promise<T> {
    return this.request<T>({ method: 'PUT', path, body });
  }

  patch<T>(path: string, body: unknown, type: PatchType): Promise<T> {
    return this.request<T>({ method: 'PATCH', path, body, contentType: PATCH_TYPES[type] });
  }

  /** What the API server answers: the object (still there, being finalized) or a Status. */
  delete(path: string, options: DeleteOptions = {}): Promise<unknown> {
    return this.request<unknown>({ method: 'DELETE', path, body: { apiVersion: 'v1', kind: 'DeleteOptions', ...options } });
  }

  /** The answer as JSON when it is a success; a KubeApiError otherwise. */
  async request<T>(call: KubeRequest): Promise<T> {
    const answer = await this.send(call);
    if (answer.status < 200 || answer.status > 299) throw apiError(answer.status, answer.body, `${call.method} ${call.path}`);
    try {
      return JSON.parse(answer.body) as T;
    } catch (err) {
      throw new Error(`${call.method} ${call.path}: not JSON: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The answer, whatever its status. */
  async send(call: KubeRequest): Promise<KubeAnswer> {
    const credentials = await this.connection.credentials();
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    const headers: OutgoingHttpHeaders = {
      accept: 'application/json',
      ...(body !== undefined ? { 'content-type': call.contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
      ...call.headers,
      ...credentials.headers,
    };
    const answer = await this.exchange(call, { method: call.method, headers, credentials }, body, RETRIED_ON_A_STALE_CONNECTION.has(call.method));
    if (answer.status === 401) this.connection.rejected(credentials);
    return answer;
  }

  /**
   * One request and its answer. A kept-alive connection the API server closed as it was reused
   * (ECONNRESET before any answer) is no failure of the request: it is sent again once on a new
   * connection, as Go's transport does, when sending it twice changes nothing.
   */
  private exchange(call: KubeRequest, request: OpenRequest, body: string | undefined, retryStale: boolean): Promise<KubeAnswer> {
    const timeoutMs = call.timeoutMs ?? this.timeoutMs;
    const where = `${call.method} ${call.path}`;
    return new Promise<KubeAnswer>((resolve, reject) => {
      const req = this.open(this.url(call.path, call.query), request, (res) => {
        readBody(res).then((text) => resolve({ status: res.statusCode ?? 0, body: text }), reject);
      });
      const timer = setTimeout(() => req.destroy(new Error(`${where}: no answer within ${timeoutMs}ms`)), timeoutMs);
      req.on('close', () => clearTimeout(timer));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (retryStale && req.reusedSocket && err.code === 'ECONNRESET') return resolve(this.exchange(call, request, body, false));
        reject(err.message.startsWith(where) ? err : new Error(`${where}: ${err.message}`, { cause: err }));
      });
      req.end(body);
    });
  }

  /**
   * Watches a collection (?watch=true), calling onEvent for each newline-delimited event. Resolves
   * when the watch ends: the API server closed it (its timeoutSeconds), `signal` aborted it, or it
   * was silent for watchInactivityMs after it opened. Rejects when the API server refuses it (a
   * KubeApiError), does not answer within watchInactivityMs, or the connection fails.
   */
  async watch(path: string, query: Query, events: WatchEvents, signal: AbortSignal): Promise<void> {
    const credentials = await this.connection.credentials();
    const headers = { accept: 'application/json', ...credentials.headers };
    const url = this.url(path, { ...query, watch: true });
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return resolve();
      const stream = new WatchStream(`GET ${path}?watch=true`, events, { resolve, reject }, this.watchInactivityMs);
      const req = this.open(url, { method: 'GET', headers, credentials }, (res) => stream.answered(res));
      stream.attach(req, signal);
      req.end();
    });
  }

  close(): void {
    this.pool?.agent.destroy();
    this.pool = undefined;
    this.connection.close();
  }

  private url(path: string, query: Query = {}): URL {
    const url = new URL(this.base);
    url.pathname = `${this.base.pathname.replace(/\/$/, '')}${path}`;
    for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
    return url;
  }

  private open(url: URL, request: OpenRequest, onResponse: (res: IncomingMessage) => void): ClientRequest {
    const { method, headers, credentials } = request;
    if (url.protocol === 'http:') return httpRequest(url, { method, headers, agent: this.agentFor(undefined) }, onResponse);
    const tls = definedOnly({ ...this.connection.verification(), cert: credentials.cert, key: credentials.key });
    return httpsRequest(url, { method, headers, agent: this.agentFor(tls) }, onResponse);
  }

  /** The shared agent for these TLS settings; a new one only when they change (a renewed client certificate or CA). */
  private agentFor(tls: TlsOptions | undefined): HttpAgent {
    if (!this.pool || (tls && !sameTls(this.pool.tls, tls))) {
      this.pool?.agent.destroy();
      this.pool = { tls: tls ?? {}, agent: tls ? new HttpsAgent({ keepAlive: true, ...tls }) : new HttpAgent({ keepAlive: true }) };
    }
    return this.pool.agent;
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

/** One watch's response: its events line by line, its timers, and how it ends. */
class WatchStream {
  private timer: NodeJS.Timeout | undefined;
  private req: ClientRequest | undefined;
  private settled = false;
  private pending = '';

  constructor(
    private readonly where: string,
    private readonly events: WatchEvents,
    private readonly outcome: { resolve: () => void; reject: (err: Error) => void },
    private readonly inactivityMs: number,
  ) {}

  attach(req: ClientRequest, signal: AbortSignal): void {
    this.req = req;
    this.arm(`${this.where}: no answer within ${this.inactivityMs}ms`, true);
    const onAbort = () => this.end();
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('close', () => {
      signal.removeEventListener('abort', onAbort);
      this.fail(new Error(`${this.where}: the connection closed`));
    });
    req.on('error', (err) => this.fail(err.message.startsWith(this.where) ? err : new Error(`${this.where}: ${err.message}`, { cause: err })));
  }

  answered(res: IncomingMessage): void {
    if (res.statusCode !== 200) {
      // Failed at 'end', before the request's 'close' would fail it for a closed connection.
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => this.fail(apiError(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), this.where)));
      res.on('error', (err) => this.fail(err));
      return;
    }
    this.arm('', false);
    this.events.onOpen?.();
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => this.received(chunk));
    res.on('end', () => {
      this.dispatch(this.pending);
      this.end();
    });
    res.on('error', (err) => this.fail(err));
  }

  private received(chunk: string): void {
    this.arm('', false);
    const lines = (this.pending + chunk).split('\n');
    this.pending = lines.pop()!;
    for (const line of lines) this.dispatch(line);
  }

  private dispatch(line: string): void {
    if (line.trim() === '') return;
    let event: { type?: unknown; object?: unknown };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return; // not an event: skipped, as client-node's Watch skipped it
    }
    if (typeof event.type === 'string') this.events.onEvent(event.type, event.object);
  }

  /** Before the answer, silence is a failure; after it, the end of the watch. */
  private arm(failure: string, beforeAnswer: boolean): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => (beforeAnswer ? this.fail(new Error(failure)) : this.end()), this.inactivityMs);
  }

  private end(): void {
    if (this.settle()) this.outcome.resolve();
  }

  private fail(err: Error): void {
    if (this.settle()) this.outcome.reject(err);
  }

  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    this.req?.destroy();
    return true;
  }
}
