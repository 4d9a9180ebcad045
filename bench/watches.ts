// Many watches on one object, opened straight to the API server and through one sidecar: the time
// from changing the object to each client seeing the event, and the sidecar's memory meanwhile.
import type { ClientRequest } from 'node:http';
import { request } from 'node:https';
import type { AdminClients } from '../local-cluster/kube.js';
import type { Credentials } from './load.js';
import { heapBreakdown, type HeapBreakdown } from './metrics.js';
import { cpuSeconds, PeakMemory, type BundleProcess } from './processes.js';
import type { WatchResult, WatchSide } from './results.js';
import { summarise } from './stats.js';

export interface WatchPlan {
  namespace: string;
  watches: number;
  updates: number;
  /** How many watches are being opened at once. */
  openConcurrency: number;
}

const OBJECT = 'watched';
const OPEN_TIMEOUT_MS = 30_000;
const DELIVERY_TIMEOUT_MS = 30_000;

interface Update {
  sentAt: bigint;
  waiting: number;
  last: bigint;
  done: () => void;
}

/** Which update an event line carries: the value of `seq` the update wrote. */
const SEQ = /"seq":"(\d+)"/;

/** Opens the watches, changes the object `updates` times, and measures each delivery. */
export class WatchFleet {
  private readonly requests: ClientRequest[] = [];
  private readonly updates = new Map<string, Update>();
  private readonly delays: number[] = [];

  constructor(
    private readonly base: string,
    private readonly credentials: Credentials,
    private readonly plan: WatchPlan,
  ) {}

  /** Resolves once every watch has its response headers; returns the seconds that took. */
  async open(resourceVersion: string): Promise<number> {
    const started = process.hrtime.bigint();
    const path = `/api/v1/namespaces/${this.plan.namespace}/configmaps?watch=true&fieldSelector=${encodeURIComponent(`metadata.name=${OBJECT}`)}&resourceVersion=${resourceVersion}`;
    let next = 0;
    const opener = async () => {
      while (next < this.plan.watches) {
        next++;
        await this.openOne(path);
      }
    };
    await Promise.all(Array.from({ length: this.plan.openConcurrency }, opener));
    return Number(process.hrtime.bigint() - started) / 1e9;
  }

  private openOne(path: string): Promise<void> {
    const { cert, bearer } = this.credentials;
    return new Promise((resolve, reject) => {
      const req = request(`${this.base}${path}`, {
        agent: false,
        rejectUnauthorized: false,
        servername: 'localhost',
        headers: { accept: 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
        ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
      });
      const timer = setTimeout(() => req.destroy(new Error(`a watch did not open within ${OPEN_TIMEOUT_MS / 1000}s (${this.requests.length} of ${this.plan.watches} are open)`)), OPEN_TIMEOUT_MS);
      req.on('response', (res) => {
        clearTimeout(timer);
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`a watch was answered ${res.statusCode}`));
          return;
        }
        this.requests.push(req);
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let newline: number;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            this.received(buffered.slice(0, newline));
            buffered = buffered.slice(newline + 1);
          }
        });
        res.on('error', () => undefined); // closed by close()
        resolve();
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end();
    });
  }

  private received(line: string): void {
    const now = process.hrtime.bigint();
    const seq = SEQ.exec(line)?.[1];
    const update = seq === undefined ? undefined : this.updates.get(seq);
    if (!update) return;
    this.delays.push(Number(now - update.sentAt) / 1e6);
    update.last = now;
    if (--update.waiting === 0) update.done();
  }

  /** Changes the object `updates` times, one after the other once every watch saw the last change. */
  async run(clients: AdminClients, firstSeq: number): Promise<Omit<WatchSide, 'openSeconds'>> {
    const lastDeliveries: number[] = [];
    for (let i = 0; i < this.plan.updates; i++) {
      const seq = String(firstSeq + i);
      const delivered = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`update ${seq} reached ${this.plan.watches - (this.updates.get(seq)?.waiting ?? 0)} of ${this.plan.watches} watches in ${DELIVERY_TIMEOUT_MS / 1000}s`)), DELIVERY_TIMEOUT_MS);
        this.updates.set(seq, {
          sentAt: process.hrtime.bigint(),
          waiting: this.plan.watches,
          last: 0n,
          done: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
      const update = this.updates.get(seq)!;
      await clients.core.replaceNamespacedConfigMap({ name: OBJECT, namespace: this.plan.namespace, body: { metadata: { name: OBJECT }, data: { seq } } });
      await delivered;
      lastDeliveries.push(Number(update.last - update.sentAt) / 1e6);
    }
    return { delay: summarise(this.delays), lastDelivery: summarise(lastDeliveries) };
  }

  close(): void {
    for (const req of this.requests) req.destroy();
  }
}

interface Side {
  base: string;
  credentials: Credentials;
}

/** With `proxy`: that process's CPU time while the events flowed, per event delivered. */
async function watchFrom(clients: AdminClients, side: Side, plan: WatchPlan, firstSeq: number, opened: () => Promise<void> = () => Promise.resolve(), proxy?: BundleProcess): Promise<WatchSide> {
  const current = await clients.core.readNamespacedConfigMap({ name: OBJECT, namespace: plan.namespace });
  const fleet = new WatchFleet(side.base, side.credentials, plan);
  try {
    const openSeconds = await fleet.open(current.metadata!.resourceVersion!);
    await opened();
    const before = proxy && cpuSeconds(proxy.child.pid!);
    const delivered = await fleet.run(clients, firstSeq);
    const cpu = before === undefined ? {} : { proxyCpuMicrosPerEvent: ((cpuSeconds(proxy!.child.pid!) - before) * 1e6) / (plan.watches * plan.updates) };
    return { openSeconds, ...delivered, ...cpu };
  } finally {
    fleet.close();
  }
}

/** The watches straight to the API server, then the same through the sidecar, then through the peer proxy if there is one. */
export async function measureWatches(
  clients: AdminClients,
  direct: Side,
  through: Side & { sidecar: BundleProcess; opsUrl: string },
  plan: WatchPlan,
  log: (line: string) => void,
  peer?: Side & { name: string; process: BundleProcess },
): Promise<WatchResult> {
  const directSide = await watchFrom(clients, direct, plan, 1);
  log(`${plan.watches} watches direct: opened in ${directSide.openSeconds.toFixed(1)}s, delay p50 ${directSide.delay.p50.toFixed(1)}ms p99 ${directSide.delay.p99.toFixed(1)}ms`);
  const idle = through.sidecar.rss();
  const idleHeap = await heapBreakdown(through.opsUrl);
  let openHeap: HeapBreakdown | undefined;
  let open = 0;
  let peak: PeakMemory | undefined;
  let throughSide: WatchSide;
  try {
    throughSide = await watchFrom(clients, through, plan, plan.updates + 1, async () => {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      open = through.sidecar.rss();
      openHeap = await heapBreakdown(through.opsUrl);
      peak = new PeakMemory(through.sidecar);
    }, through.sidecar);
  } finally {
    peak?.stop();
  }
  const peakBytes = peak!.peak;
  log(`${plan.watches} watches through the sidecar: opened in ${throughSide.openSeconds.toFixed(1)}s, delay p50 ${throughSide.delay.p50.toFixed(1)}ms p99 ${throughSide.delay.p99.toFixed(1)}ms, RSS ${(open / 2 ** 20).toFixed(0)} MiB`);
  let peerSide: WatchResult['peer'];
  if (peer) {
    const rssBytes = { idle: peer.process.rss(), open: 0 };
    const side = await watchFrom(clients, peer, plan, 2 * plan.updates + 1, () => Promise.resolve(void (rssBytes.open = peer.process.rss())), peer.process);
    peerSide = { ...side, name: peer.name, rssBytes };
    log(`${plan.watches} watches through ${peer.name}: opened in ${side.openSeconds.toFixed(1)}s, delay p50 ${side.delay.p50.toFixed(1)}ms p99 ${side.delay.p99.toFixed(1)}ms, RSS ${(rssBytes.open / 2 ** 20).toFixed(0)} MiB`);
  }
  return {
    watches: plan.watches,
    updates: plan.updates,
    direct: directSide,
    through: throughSide,
    ...(peerSide ? { peer: peerSide } : {}),
    sidecarRssBytes: { idle, open, peak: Math.max(open, peakBytes) },
    sidecarHeap: { idle: idleHeap, open: openHeap! },
  };
}
