// One load run with autocannon: a fixed number of keep-alive connections, each sending its next
// request as soon as the last one answered, for a fixed time. Latencies are taken from autocannon's
// per-response timings (microsecond resolution), not from its histogram (whole milliseconds).
import autocannon from 'autocannon';
import { SequenceTimer, summarise, type LatencySummary } from './stats.js';

export interface Credentials {
  /** A client certificate (PEM). */
  cert?: { certPem: string; keyPem: string };
  /** Sent as Authorization: Bearer. */
  bearer?: string;
}

export interface Workload {
  name: string;
  /** The path of every request, or of the first page (with its `limit`). */
  path: string;
  method?: 'GET' | 'POST';
  body?: string;
  contentType?: string;
  /**
   * A list read page by page, each next request asking for the `continue` token of the last until
   * there is none; it has at most this many pages.
   */
  maxPages?: number;
}

export interface LoadRun {
  /** https://host:port */
  base: string;
  workload: Workload;
  credentials: Credentials;
  connections: number;
  seconds: number;
  /**
   * Keep going after `seconds` until this many operations completed (a paged list under load can
   * take longer than the run), but no longer than `maxSeconds`.
   */
  minOperations?: number;
  maxSeconds?: number;
  /** Told of every answer as it arrives: its status and autocannon's time for it, in milliseconds. */
  onResponse?: (statusCode: number, responseTimeMs: number) => void;
}

export interface LoadStats {
  /** Completed operations (requests, or whole paged lists) per second. */
  rps: number;
  /** The latency of one operation (for a paged list: all its pages). */
  latency: LatencySummary;
  /** HTTP requests answered, every page counted. */
  requests: number;
  non2xx: Record<string, number>;
  errors: number;
  /** CPU time of the processes watched during the run, in microseconds per HTTP request, by process. */
  cpuMicrosPerRequest?: Record<string, number>;
  /** Set when the bodies did not add up to the object's length times the answers (HTTP/2 runs check it; autocannon cannot). */
  bodyLengthMismatch?: { expectedBytes: number; receivedBytes: number };
}

/** This process, which runs autocannon, as a watched process: its CPU per request says whether it, not what it loads, is the bottleneck. */
export const LOAD_GENERATOR = 'load generator';

/** A run in which not one request (or paged list) succeeded: there is nothing to measure. */
export class NothingSucceeded extends Error {}

/** The continue token is in the list's metadata, which the API server writes before the items. */
const CONTINUE = /"continue":"([^"]+)"/;

interface PageContext {
  continueToken?: string;
}

/**
 * Walks a paged list: one request per page, each next one with the `continue` token of the last,
 * until an answer has none. autocannon clears the context when it wraps around its list of
 * requests, so there is one entry per page; a page with no token before it returns nothing, which
 * makes autocannon start again from the first. autocannon calls onResponse and then, synchronously,
 * emits 'response' for the same client: `ended` carries whether that answer was the last page.
 */
function pagedRequests(workload: Workload, maxPages: number, ended: { value: boolean; overflow: boolean }): autocannon.Request[] {
  const separator = workload.path.includes('?') ? '&' : '?';
  return Array.from({ length: maxPages }, (_, page): autocannon.Request => ({
    method: 'GET',
    setupRequest: (request, context) => {
      if (page === 0) return { ...request, path: workload.path };
      const token = (context as PageContext).continueToken;
      return (token ? { ...request, path: `${workload.path}${separator}continue=${encodeURIComponent(token)}` } : undefined) as autocannon.Request;
    },
    onResponse: (status, body, context) => {
      const token = status === 200 ? CONTINUE.exec(body.slice(0, 4096))?.[1] : undefined;
      (context as PageContext).continueToken = token;
      ended.value = token === undefined;
      if (token !== undefined && page === maxPages - 1) ended.overflow = true;
    },
  }));
}

export function runLoad(run: LoadRun): Promise<LoadStats> {
  const { workload, credentials } = run;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (credentials.bearer) headers.authorization = `Bearer ${credentials.bearer}`;
  if (workload.contentType) headers['content-type'] = workload.contentType;
  const ended = { value: true, overflow: false };
  const timer = new SequenceTimer<autocannon.Client>();
  const non2xx: Record<string, number> = {};
  let errors = 0;
  let requests = 0;
  const minOperations = run.minOperations ?? 0;
  const started = process.hrtime.bigint();
  let stopping = false;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${run.base}${workload.path}`,
        // Both the API server's and the sidecar's serving certificates name localhost; autocannon
        // itself never verifies (it sets rejectUnauthorized: false), which changes nothing measured.
        servername: 'localhost',
        method: workload.method ?? 'GET',
        headers,
        ...(workload.body !== undefined ? { body: workload.body } : {}),
        ...(workload.maxPages ? { requests: pagedRequests(workload, workload.maxPages, ended) } : {}),
        ...(credentials.cert ? { tlsOptions: { cert: credentials.cert.certPem, key: credentials.cert.keyPem } } : {}),
        connections: run.connections,
        duration: minOperations > 0 ? (run.maxSeconds ?? run.seconds * 10) : run.seconds,
        timeout: 30,
      },
      (err, result) => {
        if (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        if (ended.overflow) {
          reject(new Error(`${workload.name}: the list had more than ${workload.maxPages} pages`));
          return;
        }
        if (timer.totals.length === 0) {
          reject(new NothingSucceeded(`${workload.name}: nothing succeeded in ${run.seconds}s (answers other than 2xx: ${JSON.stringify(non2xx)}; ${errors} errors)`));
          return;
        }
        resolve({ rps: timer.rate(result.duration), latency: summarise(timer.totals), requests, non2xx, errors });
      },
    );
    instance.on('response', (client, statusCode, _bytes, responseTime) => {
      requests++;
      run.onResponse?.(statusCode, responseTime);
      if (statusCode >= 200 && statusCode < 300) {
        timer.add(client, responseTime, !workload.maxPages || ended.value);
        const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
        if (minOperations > 0 && !stopping && elapsed >= run.seconds && timer.totals.length >= minOperations) {
          stopping = true;
          instance.stop(); // autocannon ends at its next one-second tick
        }
      } else {
        non2xx[statusCode] = (non2xx[statusCode] ?? 0) + 1;
        timer.abandon(client);
      }
    });
    instance.on('reqError', () => errors++);
  });
}
