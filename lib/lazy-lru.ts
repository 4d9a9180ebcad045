// An LRU cache that takes its memory on the first entry. lru-cache allocates storage for `max`
// entries when it is made (about 220 KiB at 10,000), so a sidecar paid for the cache of every
// authenticator it was configured with, used or not.
import { LRUCache } from 'lru-cache';

export class LazyLru<K extends object | string, V extends object> {
  private cache: LRUCache<K, V> | undefined;

  constructor(private readonly options: LRUCache.Options<K, V, unknown>) {}

  get(key: K): V | undefined {
    return this.cache?.get(key);
  }

  set(key: K, value: V, options?: LRUCache.SetOptions<K, V, unknown>): void {
    (this.cache ??= new LRUCache(this.options)).set(key, value, options);
  }
}
