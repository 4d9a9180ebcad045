// A cache of one collection kept by a list and a watch (provision/kube.ts), what the admission path
// reads instead of the API server. Each cache says whether it can be trusted right now:
//   - before its first list it knows nothing;
//   - while its watch is open, or re-opening after the server's timeout, it is as current as the
//     API server's own watch cache;
//   - once a list or watch fails, what it holds ages: it is still used for STALE_AFTER_MS (the
//     first retries), then refused until a list succeeds again.
// A caller that finds it stale wakes the retry at once and waits a moment for it before giving up:
// the API server has just called the webhook, so it is very likely up again.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { KubeApi, ObjectList } from '../lib/kube-api/client.js';
import type { Logger } from '../lib/log.js';
import { describeError, listWatch, type Watching } from './provision/kube.js';

/** How long a cache whose watch failed is still used while it retries. */
export const STALE_AFTER_MS = 5000;
/** The longest wait between retries of a failed list or watch. */
const MAX_RETRY_MS = 5000;

/** A cache that cannot answer: not listed yet, or its watch has failed for longer than STALE_AFTER_MS. */
export class StaleCache extends Error {}

export interface InformerOptions<T extends KubernetesObject, V> {
  api: KubeApi;
  /** The collection's URL path, e.g. /api/v1/namespaces. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  list: () => Promise<ObjectList<T>>;
  /** What is kept of each object; undefined: nothing (not one the injector needs). */
  keep: (object: T) => V | undefined;
  /** What it holds, for messages: "the CSIDrivers". */
  what: string;
  log: Logger;
}

type Listener = (key: string) => void;

const keyOf = (object: KubernetesObject) => `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;

export class Informer<T extends KubernetesObject, V = T> {
  private objects = new Map<string, V>();
  private listed = false;
  private failure: { since: number; message: string } | undefined;
  private watching: Watching | undefined;
  private readonly listeners = new Set<Listener>();
  private readonly waiters = new Set<() => void>();
  private firstList: { promise: Promise<void>; resolve: () => void };

  constructor(private readonly options: InformerOptions<T, V>) {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.firstList = { promise, resolve };
  }

  get what(): string {
    return this.options.what;
  }

  start(): void {
    const { keep, ...source } = this.options;
    this.watching = listWatch<T>({
      ...source,
      maxBackoffMs: MAX_RETRY_MS,
      onList: (items) => {
        const before = this.objects;
        this.objects = new Map();
        for (const item of items) {
          const kept = keep(item);
          if (kept !== undefined) this.objects.set(keyOf(item), kept);
        }
        this.listed = true;
        this.healthy();
        this.firstList.resolve();
        for (const key of new Set([...before.keys(), ...this.objects.keys()])) this.changed(key);
      },
      onEvent: (type, object) => {
        const key = keyOf(object);
        const kept = type === 'DELETED' ? undefined : keep(object);
        if (kept === undefined) {
          if (!this.objects.delete(key)) return;
        } else this.objects.set(key, kept);
        this.changed(key);
      },
      onWatching: () => this.healthy(),
      // Failing since the first failure, for the latest reason.
      onFailure: (err) => {
        this.failure = { since: this.failure?.since ?? Date.now(), message: describeError(err) };
      },
    });
  }

  /** Resolves after the first list. */
  synced(): Promise<void> {
    return this.firstList.promise;
  }

  /** Every key (namespace/name) whose object changed, appeared or went. */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Why it cannot be trusted now; undefined when it can. */
  staleness(now = Date.now()): string | undefined {
    if (!this.listed) return this.failure ? `the injector has not listed ${this.what} yet: ${this.failure.message}` : `the injector has not listed ${this.what} yet`;
    if (this.failure && now - this.failure.since >= STALE_AFTER_MS) {
      return `the injector's watch of ${this.what} has failed for ${Math.round((now - this.failure.since) / 1000)}s: ${this.failure.message}`;
    }
    return undefined;
  }

  /**
   * Resolves once the cache can be trusted: at once, or after a retry within waitMs; otherwise
   * throws StaleCache saying why.
   */
  async current(waitMs: number): Promise<void> {
    if (this.staleness() === undefined) return;
    this.watching?.retryNow();
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      waiter = resolve;
      this.waiters.add(resolve);
      timer = setTimeout(resolve, waitMs);
    });
    clearTimeout(timer);
    this.waiters.delete(waiter!);
    const why = this.staleness();
    if (why !== undefined) throw new StaleCache(why);
  }

  get(name: string, namespace = ''): V | undefined {
    return this.objects.get(`${namespace}/${name}`);
  }

  values(): IterableIterator<V> {
    return this.objects.values();
  }

  async stop(): Promise<void> {
    await this.watching?.stop();
    for (const waiter of this.waiters) waiter();
  }

  private healthy(): void {
    if (this.failure) this.options.log.info({ failedForMs: Date.now() - this.failure.since }, `watching ${this.what} again`);
    this.failure = undefined;
    for (const waiter of this.waiters) waiter();
  }

  private changed(key: string): void {
    for (const listener of this.listeners) listener(key);
  }
}
