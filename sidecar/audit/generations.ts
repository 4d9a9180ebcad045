// The auditor in use and the ones a new installation configuration replaced while requests they
// began were still under way: each retired one is closed (its sinks flushed) once its last request
// is recorded, and the figures the metrics show add up every auditor since start.
import type { SinkName } from '../../lib/sidecar-config/audit.js';
import type { Auditor, AuditStats } from './auditor.js';
import { emptyStats, type SinkStats } from './sinks/sink.js';

function add(into: AuditStats, stats: AuditStats): void {
  into.requests += stats.requests;
  into.events += stats.events;
  for (const [sink, counts] of Object.entries(stats.sinks) as [SinkName, SinkStats][]) {
    const total = (into.sinks[sink] ??= emptyStats());
    for (const key of Object.keys(total) as (keyof SinkStats)[]) total[key] += counts[key];
  }
}

export class AuditGenerations {
  private readonly retiring = new Set<Promise<void>>();
  private readonly retired: AuditStats = { requests: 0, events: 0, sinks: {} };
  private readonly draining = new Set<Auditor>();

  constructor(private active: Auditor) {}

  current(): Auditor {
    return this.active;
  }

  /** next records from now on; the one it replaces is closed once drained resolves. */
  replace(next: Auditor, drained: Promise<void>): void {
    const previous = this.active;
    this.active = next;
    this.draining.add(previous);
    const closed = drained
      .then(() => previous.close())
      .finally(() => {
        this.draining.delete(previous);
        add(this.retired, previous.stats());
        this.retiring.delete(closed);
      });
    this.retiring.add(closed);
  }

  stats(): AuditStats {
    const total: AuditStats = { requests: 0, events: 0, sinks: {} };
    for (const stats of [this.retired, ...[...this.draining].map((a) => a.stats()), this.active.stats()]) add(total, stats);
    return total;
  }

  /** Once every request has ended: delivers what every auditor still holds. */
  async close(): Promise<void> {
    await Promise.all(this.retiring);
    await this.active.close();
  }
}
