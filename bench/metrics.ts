// Reading counters from a sidecar's /metrics (Prometheus text format).

/** The value of a sample with exactly these labels (in any order), 0 when there is none yet. */
export function sampleValue(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = (match[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [];
    if ([...present].sort().join(',') === wanted) return Number(match[3]);
  }
  return 0;
}

async function scrape(opsUrl: string): Promise<string> {
  const response = await fetch(`${opsUrl}/metrics`);
  if (!response.ok) throw new Error(`${opsUrl}/metrics answered ${response.status}`);
  return response.text();
}

export async function authorizationCacheLookups(opsUrl: string): Promise<{ hits: number; misses: number }> {
  const text = await scrape(opsUrl);
  const name = 'chaperone_authorization_cache_total';
  return { hits: sampleValue(text, name, { result: 'hit' }), misses: sampleValue(text, name, { result: 'miss' }) };
}

/** Where the sidecar's memory is, as Node reports it on /metrics: the V8 heap and memory outside it (buffers, TLS). */
export interface HeapBreakdown {
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
}

export async function heapBreakdown(opsUrl: string): Promise<HeapBreakdown> {
  const text = await scrape(opsUrl);
  return {
    heapUsedBytes: sampleValue(text, 'chaperone_nodejs_heap_size_used_bytes', {}),
    heapTotalBytes: sampleValue(text, 'chaperone_nodejs_heap_size_total_bytes', {}),
    externalBytes: sampleValue(text, 'chaperone_nodejs_external_memory_bytes', {}),
  };
}
