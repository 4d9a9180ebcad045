// Reading counters from a sidecar's or the injector's /metrics (Prometheus text format).

/** Every sample of this metric: its labels as `key="value"` strings, and its value. */
function* samplesOf(text: string, name: string): Generator<{ labels: string[]; value: number }> {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    yield { labels: (match[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [], value: Number(match[3]) };
  }
}

/** The value of a sample with exactly these labels (in any order), 0 when there is none yet. */
export function sampleValue(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .sort()
    .join(',');
  for (const sample of samplesOf(text, name)) {
    if ([...sample.labels].sort().join(',') === wanted) return sample.value;
  }
  return 0;
}

/** The sum of the samples of this metric that have these labels, whatever their others; 0 when there is none. */
export function sampleSum(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  let sum = 0;
  for (const sample of samplesOf(text, name)) {
    if (wanted.every((label) => sample.labels.includes(label))) sum += sample.value;
  }
  return sum;
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
