// The Kubernetes plumbing the controller's parts share: API errors, Secret data, and list+watch with
// a lifecycle the caller controls (stop() means no request is left running afterwards).
import type { KubernetesObject } from '@kubernetes/client-node';
import { KubeApiError, type KubeApi, type ObjectList } from '../../lib/kube-api/client.js';
import type { Logger } from '../../lib/log.js';

/**
 * The HTTP status of the API server's refusal. Also read from client-node's ApiException (a numeric
 * `code` beside a `body`), which the CLI and the tests still use around these helpers.
 */
export function statusCode(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.statusCode;
  const fields = err as { code?: unknown; body?: unknown } | null;
  return err instanceof Error && typeof fields?.code === 'number' && 'body' in fields ? fields.code : undefined;
}

export const isNotFound = (err: unknown): boolean => statusCode(err) === 404;
/** 409: a precondition (resourceVersion) failed, or the object already exists. */
export const isConflict = (err: unknown): boolean => statusCode(err) === 409;

/** The object read, or undefined when there is none (404). */
export async function unlessNotFound<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The Status's message of client-node's ApiException body (JSON text or parsed). */
function bodyMessage(body: unknown): string {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      // not JSON: keep the text
    }
  }
  return typeof parsed === 'object' && parsed !== null && 'message' in parsed ? String(parsed.message) : String(parsed).slice(0, 200);
}

/** An API error as one line: the code and the API server's message, never the headers. */
export function describeError(err: unknown): string {
  if (err instanceof KubeApiError) return `HTTP ${err.statusCode}: ${err.apiMessage}`;
  const code = statusCode(err);
  if (code !== undefined) return `HTTP ${code}: ${bodyMessage((err as { body?: unknown }).body)}`;
  return err instanceof Error ? err.message : String(err);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function encodeData(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
}

export function decodeData(data: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
}

export interface ListWatchOptions<T extends KubernetesObject> {
  api: KubeApi;
  /** The collection's URL path, e.g. /api/v1/namespaces. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** The same collection, listed (with the same selectors). */
  list: () => Promise<ObjectList<T>>;
  /** Every object that matches, after each (re)list. */
  onList: (items: T[]) => void;
  onEvent: (type: 'ADDED' | 'MODIFIED' | 'DELETED', object: T) => void;
  /** The watch is open: from here on every change arrives as an event. */
  onWatching?: () => void;
  /** A list or watch failed (it is retried with backoff); also a watch that timed out before it opened. */
  onFailure?: (err: unknown) => void;
  /** The longest wait between retries; 30 s unless given. */
  maxBackoffMs?: number;
  log: Logger;
  what: string;
}

export interface Watching {
  /** Ends the wait before the next retry, if it is waiting. */
  retryNow(): void;
  stop(): Promise<void>;
}

/** Server-side watch timeout: below the client's 30s inactivity timeout (lib/kube-api/client.ts), so quiet watches end cleanly. */
const WATCH_TIMEOUT_SECONDS = 25;
const MAX_BACKOFF_MS = 30_000;

/**
 * Lists, then watches from the list's resourceVersion, re-watching when a watch ends and re-listing
 * when the resourceVersion is too old. Errors are logged and retried with backoff.
 */
export function listWatch<T extends KubernetesObject>(options: ListWatchOptions<T>): Watching {
  let stopped = false;
  let abort: AbortController | undefined;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const watchOnce = async (resourceVersion: string): Promise<{ gone: boolean; error?: unknown }> => {
    let gone = false;
    abort = new AbortController();
    const query = {
      resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: WATCH_TIMEOUT_SECONDS,
      labelSelector: options.labelSelector,
      fieldSelector: options.fieldSelector,
    };
    const onEvent = (type: string, object: unknown) => {
      const item = object as T & { code?: number };
      if (type === 'ERROR') {
        if (item.code === 410) gone = true;
        return;
      }
      latest = item.metadata?.resourceVersion ?? latest;
      if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') options.onEvent(type, item);
    };
    try {
      // Ends without an error at the server's timeout, at stop(), or when a watch that opened fell silent.
      await options.api.watch(options.path, query, { onEvent, onOpen: () => options.onWatching?.() }, abort.signal);
      return { gone };
    } catch (err) {
      return { gone: gone || statusCode(err) === 410, ...(stopped ? {} : { error: err }) };
    }
  };

  let latest = '';
  const run = async () => {
    let backoff = 0;
    while (!stopped) {
      let error: unknown;
      try {
        if (latest === '') {
          const list = await options.list();
          if (stopped) return;
          options.onList(list.items);
          latest = list.metadata?.resourceVersion ?? '';
        }
        const result = await watchOnce(latest);
        if (result.gone) latest = '';
        error = result.error;
      } catch (err) {
        error = err ?? new Error('unknown error');
      }
      if (stopped) return;
      if (error === undefined) {
        backoff = 0;
        continue;
      }
      options.onFailure?.(error);
      backoff = Math.min(options.maxBackoffMs ?? MAX_BACKOFF_MS, backoff === 0 ? 500 : backoff * 2);
      options.log.warn({ err: describeError(error), retryInMs: backoff }, `watching ${options.what} failed`);
      latest = '';
      await pause(backoff);
    }
  };
  const running = run();
  return {
    retryNow: () => wake?.(),
    stop: async () => {
      stopped = true;
      abort?.abort();
      wake?.();
      await running;
    },
  };
}
