// A soak: mixed traffic through one sidecar process for a while (30 s inside npm test, 10 minutes
// under npm run test:hardening), against the real API server (exec upgrades against the stand-in,
// through a router, as there is no kubelet): gets, lists, watches opened and closed, writes, denied
// and unauthenticated requests, exec. The audit webhook receiver goes away for two seconds every ten
// (block mode). At the end: no unexpected answer (no 5xx at all), every request in the audit file
// and at the receiver exactly once (events == requests, none lost), no stuck socket, descriptors
// back where they were, and resident memory reported.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCA, type CertificateAndKey } from '../../lib/pki.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { adminClients, createNamespace, grantInNamespace } from '../../local-cluster/kube.js';
import { sharedControlPlane } from '../support/shared.js';
import { startTestSidecar, type TestSidecar } from '../../local-cluster/sidecar.js';
import { keptAuditFile, readEventLines, startReceiver, type Receiver } from '../unit/sidecar/audit/support.js';
import { figure, size } from './support/knobs.js';
import { call, loops, openStream } from './support/load.js';
import { describeStats, processStats, type ProcessStats } from './support/process-stats.js';
import { startRouter, type Router } from './support/router.js';
import { openTls, parseAnswer } from '../support/wire.js';

const DURATION_MS = size(30_000, 10 * 60_000);
const WORKERS = 4;
/** The injector's default memory limit for the sidecar container. */
const MEMORY_LIMIT_MIB = 256;
/**
 * V8 sizes its heap from the machine (or, at best, from the whole container limit) and lets garbage
 * pile up until it nears that: left alone, a long soak's RSS climbs past 256 MiB before a major GC
 * takes it back down. The heap a 256 MiB container can afford, as a pod should set it.
 */
const HEAP_MIB = 128;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Kind = 'get' | 'list' | 'watch' | 'create' | 'delete' | 'denied' | 'unauthenticated' | 'stranger' | 'exec';
const EXPECTED: Record<Kind, number> = { get: 200, list: 200, watch: 200, create: 201, delete: 200, denied: 403, unauthenticated: 401, stranger: 401, exec: 101 };
// How often each kind is chosen (create is always followed by its delete).
const MIX: [Exclude<Kind, 'delete'>, number][] = [
  ['get', 30],
  ['list', 15],
  ['watch', 10],
  ['create', 10],
  ['denied', 10],
  ['unauthenticated', 8],
  ['stranger', 7],
  ['exec', 10],
];

interface Done {
  kind: Kind;
  status: number;
  auditID: string | undefined;
  detail?: string;
}

function pick(): Exclude<Kind, 'delete'> {
  let roll = Math.random() * MIX.reduce((sum, [, weight]) => sum + weight, 0);
  for (const [kind, weight] of MIX) {
    roll -= weight;
    if (roll < 0) return kind;
  }
  return 'get';
}

describe('hardening: soak (mixed traffic through one sidecar process)', function () {
  this.timeout(DURATION_MS + 10 * 60_000);
  let fake: FakeUpstream;
  let router: Router;
  let receiver: Receiver;
  let sidecar: TestSidecar;
  let dir: string;
  let auditFile: string;
  let ns: string;
  let otherNs: string;
  let alice: CertificateAndKey;
  let stranger: CertificateAndKey;

  before(async function () {
    this.timeout(15 * 60_000);
    const cp = await sharedControlPlane();
    const clients = adminClients(cp);
    fake = await startFakeUpstream();
    router = await startRouter({ url: cp.url, caPem: cp.ca.certPem }, { url: fake.url, caPem: fake.ca.certPem });
    receiver = await startReceiver();
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-soak-'));
    await writeFile(path.join(dir, 'router-ca.crt'), router.ca.certPem);
    auditFile = keptAuditFile();
    const nodeOptions = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = `${nodeOptions ?? ''} --max-old-space-size=${HEAP_MIB}`.trim(); // the sidecar process inherits it
    sidecar = await startTestSidecar(cp, clients, {
      asProcess: true,
      output: { stdout: path.join(dir, 'sidecar.out'), stderr: path.join(dir, 'sidecar.err') },
      flags: [
        `--upstream=${router.url}`,
        `--upstream-ca-file=${path.join(dir, 'router-ca.crt')}`,
        `--audit-file-path=${auditFile}`,
        '--audit-file-max-size=4096',
        '--audit-sinks=webhook',
        `--audit-webhook-config-file=${receiver.kubeconfig}`,
        '--audit-webhook-overflow=block',
        '--audit-webhook-buffer-size=500',
        '--audit-webhook-batch-max-size=100',
        '--audit-webhook-batch-max-wait=200ms',
        '--audit-webhook-initial-backoff=100ms',
      ],
    }).finally(() => {
      if (nodeOptions === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = nodeOptions;
    });
    ns = await createNamespace(clients, 'soak');
    otherNs = await createNamespace(clients, 'soak-other');
    await grantInNamespace(cp, clients, ns, 'edit', 'alice');
    await clients.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'soak' }, data: { a: 'b' } } });
    alice = sidecar.clientCert('alice');
    stranger = sidecar.clientCert('alice', [], {}, createCA({ commonName: 'not-the-identity-ca' }));
  });

  after(async function () {
    await sidecar?.stop();
    await Promise.all([router?.close(), fake?.close(), receiver?.dispose()]);
    if (dir) await rm(dir, { recursive: true, force: true });
    if (auditFile) await rm(path.dirname(auditFile), { recursive: true, force: true });
  });

  const target = () => ({ port: sidecar.port, ca: sidecar.servingCa.certPem });

  async function simple(kind: Kind, p: string, init: { cert?: CertificateAndKey | null; method?: string; body?: string } = {}): Promise<Done> {
    const answer = await call({
      ...target(),
      path: p,
      ...(init.cert === null ? {} : { cert: init.cert ?? alice }),
      ...(init.method ? { method: init.method } : {}),
      ...(init.body ? { body: init.body, headers: { 'content-type': 'application/json' } } : {}),
    });
    const auditID = answer.headers['audit-id'];
    return { kind, status: answer.status, auditID: typeof auditID === 'string' ? auditID : undefined, ...(answer.status !== EXPECTED[kind] ? { detail: answer.error ?? answer.body.slice(0, 300) } : {}) };
  }

  async function watch(): Promise<Done> {
    const stream = await openStream({ ...target(), path: `/api/v1/namespaces/${ns}/configmaps?watch=true`, cert: alice });
    await sleep(100 + Math.random() * 1400);
    stream.close();
    return { kind: 'watch', status: stream.status, auditID: stream.auditID };
  }

  async function exec(n: number): Promise<Done> {
    const socket = await openTls(target(), alice);
    socket.on('error', () => undefined);
    try {
      const head = new Promise<string>((resolve) => {
        let text = '';
        const onData = (chunk: Buffer) => {
          text += chunk.toString('latin1');
          const end = text.indexOf('\r\n\r\n');
          if (end >= 0) {
            socket.off('data', onData);
            resolve(text.slice(0, end + 4));
          }
        };
        socket.on('data', onData);
        socket.once('close', () => resolve(text));
      });
      socket.write(`POST /api/v1/namespaces/${ns}/pods/dashboard/exec?command=sh&stdin=true HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
      const answer = parseAnswer(await head);
      if (answer.status !== 101) return { kind: 'exec', status: answer.status, auditID: answer.headers.get('audit-id'), detail: answer.body };
      const message = `soak-${n}`;
      const echo = await new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          if (text.length >= message.length) resolve(text);
        });
        socket.write(message);
      });
      return { kind: 'exec', status: echo === message ? 101 : 0, auditID: undefined, ...(echo === message ? {} : { detail: `echo ${echo}` }) };
    } finally {
      socket.destroy();
    }
  }

  async function once(n: number): Promise<Done[]> {
    switch (pick()) {
      case 'get':
        return [await simple('get', `/api/v1/namespaces/${ns}/configmaps/soak`)];
      case 'list':
        return [await simple('list', `/api/v1/namespaces/${ns}/configmaps`)];
      case 'watch':
        return [await watch()];
      case 'create': {
        const name = `soak-${process.pid}-${n}-${Math.random().toString(36).slice(2, 8)}`;
        const created = await simple('create', `/api/v1/namespaces/${ns}/configmaps`, { method: 'POST', body: JSON.stringify({ metadata: { name }, data: { n: String(n) } }) });
        return [created, await simple('delete', `/api/v1/namespaces/${ns}/configmaps/${name}`, { method: 'DELETE' })];
      }
      case 'denied':
        return [await simple('denied', `/api/v1/namespaces/${otherNs}/secrets`)];
      case 'unauthenticated':
        return [await simple('unauthenticated', `/api/v1/namespaces/${ns}/configmaps`, { cert: null })];
      case 'stranger':
        return [await simple('stranger', `/api/v1/namespaces/${ns}/configmaps`, { cert: stranger })];
      case 'exec':
        return [await exec(n)];
    }
  }

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${sidecar.opsUrl}/metrics`)).text();
    return Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  }

  /** The JavaScript heap in use and the memory outside it (buffers, TLS), in MiB, from the sidecar's own /metrics. */
  async function heap(): Promise<string> {
    const mib = async (name: string) => ((await metric(name)) / 2 ** 20).toFixed(1);
    return `heap used ${await mib('chaperone_nodejs_heap_size_used_bytes')} MiB, external ${await mib('chaperone_nodejs_external_memory_bytes')} MiB`;
  }

  it(`${DURATION_MS / 1000} s of mixed traffic: no unexpected answer, every request audited once, nothing lost, no stuck socket`, async function () {
    const pid = sidecar.process!.pid!;
    let n = 0;
    const traffic = loops(WORKERS, async () => {
      const done = await once(n++);
      await sleep(5);
      return done;
    });
    await sleep(3000);
    const start = processStats(pid);
    const heapAtStart = await heap();
    const samples: ProcessStats[] = [start];
    const began = Date.now();
    let outages = 0;
    while (Date.now() - began < DURATION_MS) {
      await sleep(Math.min(5000, Math.max(0, DURATION_MS - (Date.now() - began))));
      samples.push(processStats(pid));
      if (Math.floor((Date.now() - began) / 10_000) > outages) {
        outages++;
        await receiver.stop();
        await sleep(2000);
        await receiver.start();
      }
    }
    const results = (await traffic.stop()).flat();
    await sleep(2000);
    const end = processStats(pid);
    const heapAtEnd = await heap();
    const [openWatches, openUpgrades] = [await metric('chaperone_open_watches'), await metric('chaperone_open_upgrades')];
    await sidecar.stop(); // flushes the audit sinks

    const byKind = Object.fromEntries(MIX.map(([kind]) => [kind, results.filter((r) => r.kind === kind).length]));
    const events = (await readEventLines(auditFile)).filter((e) => e.stage === 'ResponseComplete');
    const received = new Set(receiver.events.filter((e) => e.stage === 'ResponseComplete').map((e) => e.auditID));
    const written = new Set(events.map((e) => e.auditID));
    const rssMiB = (s: ProcessStats) => (s.rssBytes / 2 ** 20).toFixed(1);
    const peak = Math.max(...[...samples, end].map((s) => s.rssBytes));
    figure(
      `soak ${DURATION_MS / 1000} s, ${WORKERS} clients, heap capped at ${HEAP_MIB} MiB: ${results.length} requests (${(results.length / (DURATION_MS / 1000)).toFixed(0)}/s) ${JSON.stringify(byKind)}; ` +
        `audit events ${events.length} in the file, ${received.size} at the webhook after ${outages} outages; ` +
        `start ${describeStats(start)}, ${heapAtStart}; end ${describeStats(end)}, ${heapAtEnd}; peak RSS ${(peak / 2 ** 20).toFixed(1)} MiB; ` +
        `RSS samples ${samples.map(rssMiB).join(' ')}`,
    );

    const unexpected = results.filter((r) => r.status !== EXPECTED[r.kind]);
    assert.deepEqual(unexpected.slice(0, 5), [], `${unexpected.length} unexpected answers`);
    assert.ok(results.length > WORKERS * 20, `only ${results.length} requests`);
    assert.equal(events.length, results.length, 'one ResponseComplete event per request in the file');
    assert.equal(written.size, events.length, 'no request audited twice');
    const ids = results.flatMap((r) => (r.auditID ? [r.auditID] : []));
    assert.deepEqual(ids.filter((id) => !written.has(id)), [], 'every Audit-Id a client saw is in the file');
    assert.deepEqual([...written].filter((id) => !received.has(id)), [], 'the webhook lost nothing while its receiver came and went (block mode)');
    assert.equal(openWatches, 0, 'no watch left open');
    assert.equal(openUpgrades, 0, 'no upgrade left open');
    assert.equal(end.tcp.CLOSE_WAIT ?? 0, 0, `stuck sockets: ${describeStats(end)}`);
    assert.ok(end.fds <= start.fds + WORKERS + 4, `descriptors grew: ${describeStats(start)} -> ${describeStats(end)}`);
    assert.ok(peak < MEMORY_LIMIT_MIB * 2 ** 20, `resident memory reached ${(peak / 2 ** 20).toFixed(1)} MiB, over the container's ${MEMORY_LIMIT_MIB} MiB`);
    const logged = `${await readFile(path.join(dir, 'sidecar.out'), 'utf8')}${await readFile(path.join(dir, 'sidecar.err'), 'utf8')}`;
    const errors = logged.split('\n').filter((line) => line.startsWith('{') && (JSON.parse(line) as { level: number }).level >= 50);
    assert.deepEqual(errors, [], 'the sidecar logged no error');
  });
});
