// The Kubernetes plumbing the controller's parts share: API errors, Secret data, and list+watch with
// a lifecycle the caller controls (stop() means no request is left running afterwards).
import { ApiException, Watch, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.js';

export function statusCode(err: unknown): number | undefined {
  return err instanceof ApiException ? (err as ApiException<unknown>).code : undefined;
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

/** An API error as one line: the code and the API server's message, never the headers. */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    const apiErr = err as ApiException<unknown>;
    let body: unknown = apiErr.body;
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body);
      } catch {
        // not JSON: keep the text
      }
    }
    const message = typeof body === 'object' && body !== null && 'message' in body ? String(body.message) : String(body).slice(0, 200);
    return `HTTP ${apiErr.code}: ${message}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function encodeData(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString('base64')]));
}

export function decodeData(data: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
}

export interface ObjectList<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export interface ListWatchOptions<T extends KubernetesObject> {
  kubeconfig: KubeConfig;
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

/** Server-side watch timeout: below the client's 30s inactivity timeout, so quiet watches end cleanly. */
const WATCH_TIMEOUT_SECONDS = 25;
const MAX_BACKOFF_MS = 30_000;

/**
 * Lists, then watches from the list's resourceVersion, re-watching when a watch ends and re-listing
 * when the resourceVersion is too old. Errors are logged and retried with backoff.
 */
export function listWatch<T extends KubernetesObject>(options: ListWatchOptions<T>): Watching {
  const watch = new Watch(options.kubeconfig);
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

  const watchOnce = (resourceVersion: string) =>
    new Promise<{ gone: boolean; error?: unknown }>((resolve) => {
      let gone = false;
      const query = {
        resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: WATCH_TIMEOUT_SECONDS,
        labelSelector: options.labelSelector,
        fieldSelector: options.fieldSelector,
      };
      const onEvent = (type: string, object: T & { code?: number }) => {
        if (type === 'ERROR') {
          if (object.code === 410) gone = true;
          return;
        }
        latest = object.metadata?.resourceVersion ?? latest;
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') options.onEvent(type, object);
      };
      let ended = false;
      let opened = false;
      const done = (err: unknown) => {
        ended = true;
        const code = (err as { statusCode?: number } | null)?.statusCode;
        // A quiet watch ends at the server's timeout, before the client's; a client timeout before the watch opened is a failure.
        const timedOut = (err as { name?: string } | null)?.name === 'TimeoutError' && opened;
        resolve({ gone: gone || code === 410, ...(err && !timedOut && !stopped ? { error: err } : {}) });
      };
      watch.watch(options.path, query, onEvent, done).then(
        (controller) => {
          abort = controller;
          if (stopped) controller.abort();
          // Watch.watch resolves once the response has started, or after done() when it failed.
          if (!ended) {
            opened = true;
            options.onWatching?.();
          }
        },
        (err: unknown) => done(err),
      );
    });

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
