// The arithmetic of the benchmarks: latency percentiles and the pair-by-pair comparisons.

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/**
 * The q-quantile (0 < q <= 1) of values sorted in ascending order, by the nearest-rank method (the
 * smallest value with at least q of all values at or below it), as HdrHistogram and wrk report.
 */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) throw new Error('no values to take a percentile of');
  if (!(q > 0 && q <= 1)) throw new Error(`a quantile is in (0, 1], not ${q}`);
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarise(values: readonly number[]): LatencySummary {
  if (values.length === 0) throw new Error('no values to summarise');
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    count: sorted.length,
    mean: sum / sorted.length,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1]!,
  };
}

/** Through the sidecar against direct, for one pair measured back to back. */
export interface PairComparison {
  /** Requests per second through / direct: 1 is no cost, 0.9 is a tenth fewer. */
  throughputRatio: number;
  /** Milliseconds added at each percentile (through minus direct; may be negative in noise). */
  addedP50: number;
  addedP90: number;
  addedP99: number;
}

export function compare(direct: { rps: number; latency: LatencySummary }, through: { rps: number; latency: LatencySummary }): PairComparison {
  if (!(direct.rps > 0)) throw new Error('the direct run made no requests per second to compare against');
  return {
    throughputRatio: through.rps / direct.rps,
    addedP50: through.latency.p50 - direct.latency.p50,
    addedP90: through.latency.p90 - direct.latency.p90,
    addedP99: through.latency.p99 - direct.latency.p99,
  };
}

/**
 * Sums a stream of per-request times into per-operation times: the requests of one source (a
 * connection walking the pages of a list) up to and including the one that ends the operation.
 */
export class SequenceTimer<Source> {
  private readonly open = new Map<Source, { steps: number; sum: number }>();
  readonly totals: number[] = [];
  /** Requests in the operations completed: totals.length of them when every operation is one request. */
  completedSteps = 0;
  /** Every successful request, in completed operations or not. */
  steps = 0;

  add(source: Source, value: number, ends: boolean): void {
    const state = this.open.get(source) ?? { steps: 0, sum: 0 };
    state.steps++;
    state.sum += value;
    this.steps++;
    if (ends) {
      this.totals.push(state.sum);
      this.completedSteps += state.steps;
      this.open.delete(source);
    } else {
      this.open.set(source, state);
    }
  }

  /**
   * Operations per second over a run: every successful request counts, the last unfinished
   * operation of each source too, in proportion (a long operation cut off by the end of the run
   * would otherwise be lost whole).
   */
  rate(seconds: number): number {
    if (this.totals.length === 0) return 0;
    return this.steps / (this.completedSteps / this.totals.length) / seconds;
  }

  /** Drops the operation under way for this source (one of its requests failed). */
  abandon(source: Source): void {
    this.open.delete(source);
  }
}

export const MIB = 1024 * 1024;
