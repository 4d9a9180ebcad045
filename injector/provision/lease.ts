// One writer at a time among the injector's replicas: a coordination.k8s.io Lease, as client-go's
// leader election uses one. Expiry is judged by when this process last saw the Lease change, never by
// comparing another machine's clock with ours. A leader that cannot renew steps down before the
// Lease could be taken over; one that stops releases it so that another takes over at once.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { microTime, type CoordinationV1, type Lease } from '../../lib/kube-api/resources.js';
import type { Logger } from '../../lib/log.js';
import { describeError, isConflict, isNotFound } from './kube.js';

export interface LeaderElectionOptions {
  coordination: CoordinationV1;
  namespace: string;
  name: string;
  /** Unique per process; by default the host name and a random suffix. */
  identity?: string;
  leaseDurationMs: number;
  /** How often to try for (or renew) the Lease; a seventh of its duration by default, as client-go's 2s of 15s. */
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  /** Resolves once the leader's work has stopped; the Lease is released only after that. */
  onStoppedLeading: () => Promise<void>;
}

export function defaultIdentity(): string {
  return `${hostname()}_${randomUUID().slice(0, 8)}`;
}

export class LeaderElection {
  readonly identity: string;
  private leading = false;
  private stopped = false;
  private observedVersion = '';
  private observedAt = 0;
  private lastRenewal = 0;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly options: LeaderElectionOptions) {
    this.identity = options.identity ?? defaultIdentity();
  }

  private get retryMs(): number {
    return this.options.retryPeriodMs ?? Math.max(200, Math.round(this.options.leaseDurationMs / 7));
  }

  private get renewDeadlineMs(): number {
    return Math.round((this.options.leaseDurationMs * 2) / 3);
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.tick();
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.retryMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  private spec(transitions: number, acquired: boolean, previous?: Lease): Lease['spec'] {
    const now = microTime();
    return {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.max(1, Math.round(this.options.leaseDurationMs / 1000)),
      acquireTime: acquired ? now : previous?.spec?.acquireTime,
      renewTime: now,
      leaseTransitions: transitions,
    };
  }

  private async tick(): Promise<void> {
    const { coordination, namespace, name } = this.options;
    const now = Date.now();
    try {
      let lease: Lease;
      try {
        lease = await coordination.readNamespacedLease({ name, namespace });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await coordination.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: this.spec(0, true) } });
        this.lastRenewal = now;
        this.setLeading(true);
        return;
      }
      const version = lease.metadata?.resourceVersion ?? '';
      if (version !== this.observedVersion) {
        this.observedVersion = version;
        this.observedAt = now;
      }
      const holder = lease.spec?.holderIdentity ?? '';
      const transitions = lease.spec?.leaseTransitions ?? 0;
      if (holder === this.identity) {
        await coordination.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: this.spec(transitions, false, lease) } });
        this.lastRenewal = now;
        this.setLeading(true);
      } else if (holder === '' || now - this.observedAt > this.options.leaseDurationMs) {
        await coordination.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: this.spec(transitions + 1, true) } });
        this.lastRenewal = now;
        this.options.log.info({ lease: `${namespace}/${name}`, previous: holder || undefined }, 'acquired the lease: this replica writes');
        this.setLeading(true);
      } else {
        await this.stepDown();
      }
    } catch (err) {
      if (!isConflict(err)) this.options.log.warn({ err: describeError(err), lease: `${namespace}/${name}` }, 'leader election: the lease could not be read or renewed');
      if (this.leading && now - this.lastRenewal > this.renewDeadlineMs) await this.stepDown();
    }
  }

  private setLeading(leading: boolean): void {
    if (leading && !this.leading && !this.stopped) {
      this.leading = true;
      this.options.onStartedLeading();
    }
  }

  private async stepDown(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.options.log.info({ lease: `${this.options.namespace}/${this.options.name}` }, 'no longer the leader');
    await this.options.onStoppedLeading();
  }

  /** Stops electing; a leader stops its work, then releases the Lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    const wasLeading = this.leading;
    await this.stepDown();
    if (!wasLeading) return;
    const { coordination, namespace, name } = this.options;
    try {
      const lease = await coordination.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity !== this.identity) return;
      await coordination.replaceNamespacedLease({
        name,
        namespace,
        body: { ...lease, spec: { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: microTime() } },
      });
    } catch (err) {
      this.options.log.debug({ err: describeError(err) }, 'could not release the lease; it expires on its own');
    }
  }
}
