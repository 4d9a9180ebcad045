// npm run bench: what the sidecar and the injector cost, measured on a control plane of the bench's
// own, through the production bundles. Progress on standard error, the report (markdown) on
// standard output, every figure in a JSON file.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { injectorConfigSpec } from '../injector/config.js';
import { quantityNano } from '../injector/quantity.js';
import { startControlPlane, type ControlPlane } from '../local-cluster/control-plane.js';
import { adminClients } from '../local-cluster/kube.js';
import { measureAdmission } from './admission.js';
import { createMemoryCgroup } from './cgroup.js';
import { prepareData, prepareSmallObject, type BenchData } from './data.js';
import type { Workload } from './load.js';
import { busy, machineInfo } from './machine.js';
import { authorizationCacheLookups, heapBreakdown } from './metrics.js';
import { assertH2loadInstalled, bodyLengthOf } from './load-h2.js';
import { measureOverhead, type Route } from './overhead.js';
import { measureHttp2, type H2Endpoint } from './overhead-h2.js';
import { parsePeer, startPeer, type BenchPeer, type PeerSpec } from './peer.js';
import { directTokenFile, preparePeople, type People } from './people.js';
import { bundlePath, findProcess, loadNodeFlags, PeakMemory, useBundle, useNodeFlags } from './processes.js';
import { renderReport, SMALL_GET } from './report.js';
import type { BenchResults, BenchSettings, MemoryResult, Section } from './results.js';
import { FULL, positiveInteger, QUICK } from './settings.js';
import { prepareSidecars, type BenchSidecar, type SidecarLauncher } from './sidecar.js';
import { measureSoak } from './soak.js';
import { measureStartup } from './startup.js';
import { warmupSummary } from './warmup.js';
import type { WatchProtocol } from './watch-connections.js';
import { measureWatches } from './watches.js';

const REQUIRED_NODE_MAJOR = 24;
const SECTIONS: Section[] = ['startup', 'overhead', 'watches', 'soak', 'admission'];
const DEFAULT_OUT = path.join(import.meta.dirname, 'results', 'latest.json');

/**
 * Caches off: every token goes to the webhook, every request gets a SubjectAccessReview of its own
 * unless one for the same person and request finished within the last millisecond or is in flight.
 */
const COLD_CACHE_FLAGS = ['--authentication-token-webhook-cache-authorized-ttl=0', '--authz-allowed-ttl=1ms'];

interface CliOptions {
  quick: boolean;
  out: string;
  only?: Section[];
  cpuProf?: string;
  sidecarBundle?: string;
  sidecarNodeFlags?: string[];
  injectorBundle?: string;
  injectorNodeFlags?: string[];
  soakLimit: string;
  soakSeconds?: number;
  soakWatches?: number;
  peer?: PeerSpec;
  http2: boolean;
}

/** The memory limit the injector gives a sidecar unless told otherwise: the soak's. */
function injectedMemoryLimit(): string {
  const presence = injectorConfigSpec.options.memoryLimit.presence;
  if (presence.kind !== 'default') throw new Error('the injector has no default memory limit');
  return String(presence.value);
}

const log = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function workloads(data: BenchData): Workload[] {
  const { list, paged, pageSize } = data.sizes;
  return [
    { name: SMALL_GET, path: data.smallObject },
    { name: `LIST ${list}`, path: data.list },
    { name: `LIST ${paged} in pages of ${pageSize}`, path: data.pagedList, maxPages: Math.ceil(paged / pageSize) + 1 },
  ];
}

type StartSidecar = SidecarLauncher['start'];

/** The route, and the same requests with the same credentials through the peer proxy, back to back. */
function withPeer(route: Route, peer: BenchPeer | undefined, apiserver: Record<string, number>): Route {
  if (!peer) return route;
  const alongside = { proxy: peer.name, method: route.method, caches: route.caches, base: peer.url, credentials: route.credentials, watched: { ...apiserver, [peer.name]: peer.child.pid! } };
  return { ...route, alongside };
}

/**
 * The small GET (its body's length checked) and the LIST, with the ID token (through the sidecar and
 * the peer) and the webhook token (through the sidecar), over HTTP/2 from h2load.
 */
async function http2Clients(direct: { endpoint: H2Endpoint; bearer: string }, sidecar: H2Endpoint, peer: H2Endpoint | undefined, people: People, data: BenchData, settings: BenchSettings) {
  const [get, list] = workloads(data);
  const targets = [{ workload: get!, bodyBytes: await bodyLengthOf(`${direct.endpoint.base}${get!.path}`, direct.bearer) }, { workload: list! }];
  const methods = [
    { method: 'OIDC token', bearer: people.oidcToken, proxies: [sidecar, ...(peer ? [peer] : [])] },
    { method: 'webhook token', bearer: people.webhookToken, proxies: [sidecar] },
  ];
  return measureHttp2(targets, direct, methods, { ...settings, shapes: settings.http2Shapes }, log);
}

async function overheadAndMemory(
  start: StartSidecar,
  cp: ControlPlane,
  people: People,
  data: BenchData,
  settings: BenchSettings,
  cpuProfileDir: string | undefined,
  peer: BenchPeer | undefined,
  directToken: string | undefined,
): Promise<{ overhead: NonNullable<BenchResults['overhead']>; http2?: BenchResults['http2']; memory: MemoryResult }> {
  const sidecar = await start('main', [], cpuProfileDir ? { cpuProfileDir } : {});
  const cold = await start('cold-caches', COLD_CACHE_FLAGS);
  await sleep(2000);
  const idleBytes = sidecar.rss();
  const idleHeap = await heapBreakdown(sidecar.opsUrl);
  log(`sidecar idle: ${(idleBytes / 2 ** 20).toFixed(1)} MiB resident`);
  const all = workloads(data);
  const apiserver = { 'kube-apiserver': findProcess('kube-apiserver', cp.dir) };
  const warm = (method: string, credentials: Route['credentials']): Route => ({
    method,
    caches: 'warm',
    base: sidecar.url,
    credentials,
    watched: { ...apiserver, sidecar: sidecar.child.pid! },
  });
  const routes: Route[] = [
    warm('client certificate', { cert: people.sidecarCert }),
    withPeer(warm('OIDC token', { bearer: people.oidcToken }), peer, apiserver),
    warm('webhook token', { bearer: people.webhookToken }),
    {
      method: 'webhook token',
      caches: 'cold',
      base: cold.url,
      credentials: { bearer: people.webhookToken },
      workloads: [all[0]!.name],
      cacheLookups: () => authorizationCacheLookups(cold.opsUrl),
      watched: { ...apiserver, sidecar: cold.child.pid! },
    },
  ];
  const peak = new PeakMemory(sidecar);
  let overhead: NonNullable<BenchResults['overhead']>;
  let http2: BenchResults['http2'];
  try {
    overhead = await measureOverhead(all, settings.concurrencies, { base: cp.url, credentials: { cert: people.directCert }, watched: apiserver }, routes, settings, log);
    if (directToken) {
      const h2Sidecar = { name: 'sidecar', base: sidecar.url, watched: { ...apiserver, sidecar: sidecar.child.pid! } };
      const h2Peer = peer && { name: peer.name, peer: true, base: peer.url, watched: { ...apiserver, [peer.name]: peer.child.pid! } };
      const direct = { endpoint: { name: 'kube-apiserver', base: cp.url, watched: apiserver }, bearer: directToken };
      http2 = await http2Clients(direct, h2Sidecar, h2Peer, people, data, settings);
    }
  } finally {
    peak.stop();
  }
  await sleep(2000);
  const memory = { idleBytes, underLoadPeakBytes: peak.peak, afterLoadBytes: sidecar.rss(), heap: { idle: idleHeap, afterLoad: await heapBreakdown(sidecar.opsUrl) } };
  return { overhead, ...(http2 ? { http2 } : {}), memory };
}

async function run(options: CliOptions): Promise<void> {
  const major = Number(process.versions.node.split('.')[0]);
  if (major !== REQUIRED_NODE_MAJOR) throw new Error(`the benchmarks run on Node.js ${REQUIRED_NODE_MAJOR}, as chaperone ships; this is ${process.version}. Run npm run bench.`);
  const sections = options.only ?? SECTIONS;
  if (options.sidecarBundle) useBundle('sidecar', options.sidecarBundle);
  if (options.sidecarNodeFlags) useNodeFlags('sidecar', options.sidecarNodeFlags);
  if (options.injectorBundle) useBundle('injector', options.injectorBundle);
  if (options.injectorNodeFlags) useNodeFlags('injector', options.injectorNodeFlags);
  await loadNodeFlags();
  bundlePath('sidecar');
  if (sections.includes('admission')) bundlePath('injector');
  const settings = {
    ...(options.quick ? QUICK : FULL),
    ...(options.soakSeconds ? { soakSeconds: options.soakSeconds } : {}),
    ...(options.soakWatches ? { soakWatches: options.soakWatches } : {}),
  };
  const http2 = options.http2 && sections.includes('overhead');
  if (http2) assertH2loadInstalled();
  const startedAt = new Date();
  const busyBefore = busy();
  log(`load average ${busyBefore.load.join(' ')}; ${settings.quick ? 'quick run' : 'full run'} of ${sections.join(', ')}`);

  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-bench-'));
  const file = (name: string) => path.join(dir, name);
  const cleanups: (() => Promise<void>)[] = [];
  const sidecars = new Set<BenchSidecar>();
  const stopSidecars = async () => {
    for (const sidecar of sidecars) await sidecar.stop();
    sidecars.clear();
  };
  const cleanUp = async () => {
    await stopSidecars();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((err: unknown) => log(`cleaning up: ${(err as Error).message}`));
    await rm(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanUp().finally(() => process.exit(130)));

  const results: Partial<BenchResults> = { sections };
  try {
    const direct = http2 ? await directTokenFile(dir) : undefined;
    const cp = await startControlPlane({ log, ...(direct ? { extraApiserverFlags: [direct.apiserverFlag] } : {}) });
    cleanups.push(() => cp.stop());
    const clients = adminClients(cp);
    const people = await preparePeople(cp, dir);
    cleanups.push(() => people.stop());
    // Only the sections that read them wait for the objects (thousands of creates: minutes on a busy machine).
    let small: Promise<string> | undefined;
    const smallObject = () => (small ??= prepareSmallObject(cp, clients));
    let prepared: Promise<BenchData> | undefined;
    const objects = () => (prepared ??= prepareData(cp, clients, settings.objects, smallObject(), log));
    const launcher = await prepareSidecars(cp, clients, dir, people.sidecarFlags);
    const startSidecar: StartSidecar = async (...args) => {
      const sidecar = await launcher.start(...args);
      sidecars.add(sidecar);
      return sidecar;
    };

    const peer = options.peer && (sections.includes('overhead') || sections.includes('watches')) ? await startPeer(options.peer, cp, clients, people, launcher.serving, dir) : undefined;
    if (peer) cleanups.push(() => peer.stop());

    if (sections.includes('startup')) {
      const warmup = { workload: { name: SMALL_GET, path: await smallObject() }, method: 'client certificate', credentials: { cert: people.sidecarCert }, ...settings.warmup };
      results.startup = await measureStartup(launcher, settings.startupRuns, warmup, file('startup.log'));
      log(`start to ready: median ${results.startup.asImage.readyzMs.p50.toFixed(0)}ms as the image runs it, ${results.startup.sourceMapsToggled.readyzMs.p50.toFixed(0)}ms with source maps the other way`);
      const { firstSecondRatio } = warmupSummary(results.startup.warmup!);
      log(`warm-up: the first second after ready cost ${firstSecondRatio?.toFixed(2) ?? 'n/a'} × the steady CPU per request`);
    }
    if (sections.includes('overhead')) {
      const measured = await overheadAndMemory(startSidecar, cp, people, await objects(), settings, options.cpuProf, peer, direct?.token);
      results.overhead = measured.overhead;
      if (measured.http2) results.http2 = measured.http2;
      results.memory = measured.memory;
      await stopSidecars(); // the CPU profile, if asked for, is written now
    }
    if (sections.includes('watches')) {
      const data = await objects();
      const plan = { namespace: data.watchNamespace, watches: settings.watches, updates: settings.watchUpdates, openConcurrency: 50 };
      const direct = { base: cp.url, credentials: { cert: people.directCert } };
      const peerSide = peer && { name: peer.name, base: peer.url, credentials: { bearer: people.oidcToken }, process: peer };
      // Each protocol gets a sidecar of its own: resident memory does not shrink after a run.
      const watchesOver = async (protocol: WatchProtocol, firstSeq: number) => {
        const sidecar = await startSidecar(protocol === 'h2' ? 'watches-h2' : 'watches');
        try {
          const through = { base: sidecar.url, opsUrl: sidecar.opsUrl, credentials: { cert: people.sidecarCert }, sidecar };
          return await measureWatches(clients, direct, through, { ...plan, protocol, firstSeq }, log, peerSide);
        } finally {
          await stopSidecars();
        }
      };
      const http1 = await watchesOver('http/1.1', 1);
      const http2Run = options.http2 ? await watchesOver('h2', 3 * plan.updates + 1) : undefined;
      results.watches = { watches: plan.watches, updates: plan.updates, ...http1, ...(http2Run ? { http2: http2Run } : {}) };
    }
    if (sections.includes('soak')) {
      const cgroup = await createMemoryCgroup(`chaperone-bench-soak-${process.pid}`, Number(quantityNano(options.soakLimit)! / 10n ** 9n));
      cleanups.push(() => cgroup.remove());
      const data = await objects();
      const [get, list, paged] = workloads(data);
      const phases = [
        { workload: get!, connections: 16, credentials: { bearer: people.oidcToken }, method: 'OIDC token' },
        { workload: list!, connections: 4, credentials: { cert: people.sidecarCert }, method: 'client certificate' },
        { workload: paged!, connections: 4, credentials: { bearer: people.webhookToken }, method: 'webhook token' },
        { workload: get!, connections: 64, credentials: { cert: people.sidecarCert }, method: 'client certificate' },
      ];
      const plan = { seconds: settings.soakSeconds, phaseSeconds: settings.soakPhaseSeconds, watches: settings.soakWatches, watchNamespace: data.watchNamespace, watchCredentials: { cert: people.sidecarCert } };
      try {
        results.soak = await measureSoak(startSidecar, clients, cgroup, phases, plan, log);
      } finally {
        await stopSidecars();
        await cgroup.remove();
      }
    }
    if (sections.includes('admission')) {
      const plan = { ...settings, reviewConcurrencies: settings.admissionConcurrencies, podCreateConcurrencies: settings.podCreateConcurrencies };
      results.admission = await measureAdmission(cp, clients, plan, { stderrFile: file('injector.log'), ...(options.cpuProf ? { cpuProfileDir: options.cpuProf } : {}) }, log);
    }
    results.kubernetes = cp.version;
  } finally {
    await cleanUp();
  }

  const finished: BenchResults = {
    ...(results as BenchResults),
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: machineInfo(),
    busyBefore,
    busyAfter: busy(),
    settings,
  };
  await mkdir(path.dirname(options.out), { recursive: true });
  await writeFile(options.out, `${JSON.stringify(finished, null, 2)}\n`);
  process.stdout.write(renderReport(finished));
  log(`results written to ${options.out}`);
}

const program = new Command('bench')
  .description("measure what chaperone's sidecar and injector cost against going straight to the API server")
  .option('--quick', 'short runs and small sizes, to check that the harness works (the figures mean little)', false)
  .option('--out <file>', 'where to write the results as JSON', DEFAULT_OUT)
  .addOption(new Option('--only <sections>', `run only these sections (comma-separated: ${SECTIONS.join(', ')})`).argParser((value) => parseSections(value)))
  .option('--sidecar-bundle <file>', 'run this sidecar bundle instead of dist/sidecar.mjs (to compare two builds)')
  .option('--sidecar-node-flags <flags>', "run the sidecars with these node flags (space-separated; '' for none) instead of Dockerfile.sidecar's, to measure a lever", (value: string) => value.split(/\s+/).filter(Boolean))
  .option('--injector-bundle <file>', 'run this injector bundle instead of dist/injector.mjs (to compare two builds)')
  .option('--injector-node-flags <flags>', "run the injector with these node flags (space-separated; '' for none) instead of Dockerfile.injector's, to measure a lever", (value: string) => value.split(/\s+/).filter(Boolean))
  .option('--soak-limit <quantity>', 'the memory limit of the soak\'s cgroup (default: the injector\'s --memory-limit default)', (value: string) => {
    if (quantityNano(value) === undefined) throw new InvalidArgumentError(`${value} is not a resource quantity (example: 256Mi)`);
    return value;
  }, injectedMemoryLimit())
  .option('--soak-seconds <seconds>', 'how long the soak runs (default: 240, 30 with --quick)', positiveInteger)
  .option('--soak-watches <count>', 'how many watches stay open through the soak (default: 200, 50 with --quick)', positiveInteger)
  .option('--peer <name>=<binary>', "also measure this OpenID Connect impersonating proxy (kube-oidc-proxy's flags) beside the sidecar, pair by pair, with the OIDC token (overhead and watches sections)", (value: string) => {
    try {
      return parsePeer(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  })
  .option('--no-http2', "leave out the HTTP/2 runs (the overhead section's need h2load, from nghttp2; the watches section's, Node's own client)")
  .option('--cpu-prof <dir>', "write V8 CPU profiles of the overhead section's sidecar and of the injector into this directory")
  .action((options: CliOptions) => run(options));

function parseSections(value: string): Section[] {
  const names = value.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(SECTIONS as string[]).includes(name));
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown section ${unknown.join(', ')}: the sections are ${SECTIONS.join(', ')}`);
  return names as Section[];
}

await program.parseAsync(process.argv);
