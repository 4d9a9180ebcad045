// Many watches on one object, opened straight to the API server and through one sidecar: the time
// from changing the object to each client seeing the event, and the sidecar's memory meanwhile.
import type { Readable } from 'node:stream';
import type { AdminClients } from '../local-cluster/kube.js';
import type { Credentials } from './load.js';
import { negotiatedProtocol } from './load-h2.js';
import { heapBreakdown, type HeapBreakdown } from './metrics.js';
import { cpuSeconds, PeakMemory, type BundleProcess } from './processes.js';
import type { WatchRun, WatchSide } from './results.js';
import { summarise } from './stats.js';
import { LineSplitter, watchConnections, type WatchConnections, type WatchProtocol } from './watch-connections.js';

export interface FleetPlan {
  namespace: string;
  watches: number;
  updates: number;
  /** How many watches are being opened at once. */
  openConcurrency: number;
}

export interface WatchPlan extends FleetPlan {
  /** Each watch on an HTTP/1.1 connection of its own, or as HTTP/2 streams sharing connections. */
  protocol: WatchProtocol;
  /** The `seq` the run's first change writes: each run's changes write values of their own. */
  firstSeq: number;
}

const OBJECT = 'watched';
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
  private readonly updates = new Map<string, Update>();
  private readonly delays: number[] = [];

  constructor(
    private readonly connections: WatchConnections,
    private readonly plan: FleetPlan,
  ) {}

  /** Resolves once every watch has its response headers; returns the seconds that took. */
  async open(resourceVersion: string): Promise<number> {
    const started = process.hrtime.bigint();
    const path = `/api/v1/namespaces/${this.plan.namespace}/configmaps?watch=true&fieldSelector=${encodeURIComponent(`metadata.name=${OBJECT}`)}&resourceVersion=${resourceVersion}`;
    let next = 0;
    const opener = async () => {
      while (next < this.plan.watches) {
        next++;
        this.listen(await this.connections.open(path));
      }
    };
    await Promise.all(Array.from({ length: this.plan.openConcurrency }, opener));
    return Number(process.hrtime.bigint() - started) / 1e9;
  }

  private listen(body: Readable): void {
    const lines = new LineSplitter();
    body.setEncoding('utf8');
    body.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) this.received(line);
    });
    body.on('error', () => undefined); // closed by close()
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
    this.connections.close();
  }
}

interface Side {
  base: string;
  credentials: Credentials;
}

/** With `proxy`: that process's CPU time while the events flowed, per event delivered. */
async function watchFrom(clients: AdminClients, side: Side, plan: WatchPlan, firstSeq: number, opened: () => Promise<void> = () => Promise.resolve(), proxy?: BundleProcess): Promise<WatchSide> {
  const current = await clients.core.readNamespacedConfigMap({ name: OBJECT, namespace: plan.namespace });
  const connections = await watchConnections(plan.protocol, side.base, side.credentials, plan.watches);
  const fleet = new WatchFleet(connections, plan);
  try {
    const openSeconds = await fleet.open(current.metadata!.resourceVersion!);
    await opened();
    const before = proxy && cpuSeconds(proxy.child.pid!);
    const delivered = await fleet.run(clients, firstSeq);
    const cpu = before === undefined ? {} : { proxyCpuMicrosPerEvent: ((cpuSeconds(proxy!.child.pid!) - before) * 1e6) / (plan.watches * plan.updates) };
    const shape = connections.shape();
    return { openSeconds, ...delivered, ...cpu, ...(shape ? { http2: shape } : {}) };
  } finally {
    fleet.close();
  }
}

const described = (side: WatchSide) => `opened in ${side.openSeconds.toFixed(1)}s${side.http2 ? ` on ${side.http2.connections} connection${side.http2.connections === 1 ? '' : 's'}` : ''}, delay p50 ${side.delay.p50.toFixed(1)}ms p99 ${side.delay.p99.toFixed(1)}ms`;

/**
 * The watches straight to the API server, then the same through the sidecar, then through the peer
 * proxy if there is one; over HTTP/2, the peer only if it chose h2 in ALPN.
 */
export async function measureWatches(
  clients: AdminClients,
  direct: Side,
  through: Side & { sidecar: BundleProcess; opsUrl: string },
  plan: WatchPlan,
  log: (line: string) => void,
  peer?: Side & { name: string; process: BundleProcess },
): Promise<WatchRun> {
  const what = `${plan.watches} watches${plan.protocol === 'h2' ? ' over HTTP/2' : ''}`;
  const directSide = await watchFrom(clients, direct, plan, plan.firstSeq);
  log(`${what} direct: ${described(directSide)}`);
  const idle = through.sidecar.rss();
  const idleHeap = await heapBreakdown(through.opsUrl);
  let openHeap: HeapBreakdown | undefined;
  let open = 0;
  let peak: PeakMemory | undefined;
  let throughSide: WatchSide;
  try {
    throughSide = await watchFrom(clients, through, plan, plan.firstSeq + plan.updates, async () => {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      open = through.sidecar.rss();
      openHeap = await heapBreakdown(through.opsUrl);
      peak = new PeakMemory(through.sidecar);
    }, through.sidecar);
  } finally {
    peak?.stop();
  }
  const peakBytes = peak!.peak;
  log(`${what} through the sidecar: ${described(throughSide)}, RSS ${(open / 2 ** 20).toFixed(0)} MiB`);
  const peerSide = peer && (await throughPeer(clients, peer, plan, what, log));
  return {
    direct: directSide,
    through: throughSide,
    ...peerSide,
    sidecarRssBytes: { idle, open, peak: Math.max(open, peakBytes) },
    sidecarHeap: { idle: idleHeap, open: openHeap! },
  };
}

async function throughPeer(clients: AdminClients, peer: Side & { name: string; process: BundleProcess }, plan: WatchPlan, what: string, log: (line: string) => void): Promise<Pick<WatchRun, 'peer' | 'peerProtocol'>> {
  if (plan.protocol === 'h2') {
    const protocol = await negotiatedProtocol(peer.base);
    if (protocol !== 'h2') {
      log(`${what}: not through ${peer.name}, which chose ${protocol} when offered h2 and http/1.1 in ALPN`);
      return { peerProtocol: protocol };
    }
  }
  const rssBytes = { idle: peer.process.rss(), open: 0 };
  const side = await watchFrom(clients, peer, plan, plan.firstSeq + 2 * plan.updates, () => Promise.resolve(void (rssBytes.open = peer.process.rss())), peer.process);
  log(`${what} through ${peer.name}: ${described(side)}, RSS ${(rssBytes.open / 2 ** 20).toFixed(0)} MiB`);
  return { peer: { ...side, name: peer.name, rssBytes } };
}
