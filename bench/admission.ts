// The injector's cost: AdmissionReviews sent straight to it (its production bundle, with its
// controller, installed with the shipped RBAC), how many it refused under load, its memory before and
// after them, and pod creation through the API server in a namespace the webhook is called for
// against one it is not.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request } from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { freePort, type ControlPlane } from '../local-cluster/control-plane.js';
import { createNamespace, type AdminClients } from '../local-cluster/kube.js';
import { createWebhookConfiguration, installInjector } from '../local-cluster/provisioned.js';
import { waitFor } from '../local-cluster/wait.js';
import { dashboardPod, reviewOf } from './admission-review.js';
import { LOAD_GENERATOR } from './load.js';
import type { LoadPlan } from './overhead.js';
import { backToBack, measure } from './overhead.js';
import { createCA, issueCertificate } from '../lib/pki.js';
import { quantityNano } from '../injector/quantity.js';
import { createMemoryCgroup, type MemoryCgroup } from './cgroup.js';
import { between, sampleInjector } from './injector-metrics.js';
import { bundleImageEnv, bundleNodeFlags, findProcess, startBundle, waitUntilOk } from './processes.js';
import { HTTPS_FLOOR, type AdmissionResult } from './results.js';
import type { LoadStats } from './load.js';
import { compare, MIB } from './stats.js';

/** The injector's resident memory once it has been quiet for a moment, and what its cgroup was charged then. */
async function settledMemory(injector: { rss(): number }, cgroup: MemoryCgroup | undefined): Promise<{ rss: number; cgroup?: number }> {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  return { rss: injector.rss(), ...(cgroup ? { cgroup: cgroup.usageBytes() } : {}) };
}

/** The memory limit of the injector's container in the shipped Deployment (the Helm chart's must agree: test/unit). */
export async function deploymentMemoryLimit(): Promise<string> {
  const deployment = YAML.parse(await readFile(path.join(REPO, 'manifests/base/deployment.yaml'), 'utf8')) as {
    spec: { template: { spec: { containers: { name: string; resources?: { limits?: { memory?: string } } }[] } } };
  };
  const limit = deployment.spec.template.spec.containers.find((c) => c.name === 'injector')?.resources?.limits?.memory;
  if (!limit) throw new Error('manifests/base/deployment.yaml gives the injector no memory limit');
  return limit;
}

/** A memory cgroup of the Deployment's limit to run the injector in, as the kubelet would; none where the machine cannot make one. */
async function deploymentCgroup(log: (line: string) => void): Promise<MemoryCgroup | undefined> {
  const limit = await deploymentMemoryLimit();
  try {
    return await createMemoryCgroup(`chaperone-bench-injector-${process.pid}`, Number(quantityNano(limit)! / 10n ** 9n));
  } catch (err) {
    log(`the injector runs outside a memory cgroup: ${(err as Error).message}`);
    return undefined;
  }
}

/** The injector collects a busy spell's garbage 30 to 60 s after its last review (lib/idle-collection.ts). */
const SETTLE_MS = 65_000;
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** No denial caused by load at this many concurrent reviews (issue 20). */
const BURST_CONCURRENCY = 200;

/** One review, to make sure the load measures injections, not refusals: the injector's answer. */
function checkInjects(url: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', rejectUnauthorized: false, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => {
        const response = res.statusCode === 200 ? (JSON.parse(text) as { response?: { allowed?: boolean; patch?: string } }).response : undefined;
        if (response?.allowed && response.patch) resolve(text);
        else reject(new Error(`the injector did not inject the benchmark pod: ${res.statusCode} ${text.slice(0, 500)}`));
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface AdmissionPlan extends LoadPlan {
  reviewConcurrencies: number[];
  podCreateConcurrencies: number[];
}

/** Node.js's HTTPS server alone (bench/https-floor.ts), giving the injector's answer, run as the injector is. */
interface HttpsFloor {
  base: string;
  pid: number;
  stop(): Promise<void>;
}

async function startHttpsFloor(answer: string, stderrFile: string): Promise<HttpsFloor> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-bench-floor-'));
  const ca = createCA({ commonName: 'chaperone-bench-floor-ca' });
  const serving = issueCertificate(ca, { commonName: 'https-floor', usage: 'server', ipAddresses: ['127.0.0.1'] });
  const file = (name: string) => path.join(dir, name);
  await Promise.all([writeFile(file('tls.crt'), serving.certPem), writeFile(file('tls.key'), serving.keyPem, { mode: 0o600 }), writeFile(file('answer.json'), answer)]);
  const port = await freePort();
  const floor = startBundle('injector', [file('tls.crt'), file('tls.key'), file('answer.json'), String(port)], { stderrFile, script: 'bench/https-floor.ts' });
  const base = `https://127.0.0.1:${port}`;
  await waitUntilOk(`${base}/`, floor, "the bench's HTTPS floor");
  return {
    base,
    pid: floor.child.pid!,
    stop: async () => {
      await floor.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function measureReviews(base: string, review: string, injectorPid: number, floor: HttpsFloor, plan: AdmissionPlan, log: (line: string) => void): Promise<AdmissionResult['review']> {
  const workload = { name: 'AdmissionReview', path: '/mutate', method: 'POST' as const, body: review, contentType: 'application/json' };
  const reviews: AdmissionResult['review'] = [];
  for (const [i, concurrency] of [...new Set([...plan.reviewConcurrencies, BURST_CONCURRENCY])].entries()) {
    let sampled: ReturnType<typeof between> | undefined;
    const injectorRun = async () => {
      const before = await sampleInjector(base);
      const stats = await measure(base, workload, {}, concurrency, plan, { injector: injectorPid, [LOAD_GENERATOR]: process.pid });
      sampled = between(before, await sampleInjector(base));
      return stats;
    };
    const floorRun = () => measure(floor.base, workload, {}, concurrency, plan, { [HTTPS_FLOOR]: floor.pid, [LOAD_GENERATOR]: process.pid });
    const [stats, floorStats] = (await backToBack([injectorRun, floorRun], i % 2 === 0)) as [LoadStats, LoadStats];
    const { denied, answeringMs, eventLoopDelay } = sampled!;
    reviews.push({ concurrency, stats, denied, answeringMs, eventLoopDelay, floor: floorStats });
    log(
      `AdmissionReview c=${concurrency}: ${stats.rps.toFixed(0)}/s, p50 ${stats.latency.p50.toFixed(2)}ms p99 ${stats.latency.p99.toFixed(2)}ms, ${denied} denied; ` +
        `injector ${answeringMs.toFixed(2)}ms a review, event loop late by ${eventLoopDelay.p99Ms.toFixed(1)}ms at p99 (max ${eventLoopDelay.maxMs.toFixed(1)}ms); ` +
        `${HTTPS_FLOOR} alone ${floorStats.rps.toFixed(0)}/s, p99 ${floorStats.latency.p99.toFixed(2)}ms`,
    );
  }
  return reviews;
}

async function measurePodCreates(cp: ControlPlane, namespaces: { plain: string; labelled: string }, injectorPid: number, plan: AdmissionPlan, log: (line: string) => void): Promise<AdmissionResult['podCreate']> {
  const admin = { cert: cp.admin };
  const watched = { 'kube-apiserver': findProcess('kube-apiserver', cp.dir), injector: injectorPid };
  const create = (namespace: string) => ({
    name: 'pod create',
    path: `/api/v1/namespaces/${namespace}/pods`,
    method: 'POST' as const,
    body: JSON.stringify(dashboardPod()),
    contentType: 'application/json',
  });
  const podCreate: AdmissionResult['podCreate'] = [];
  for (const concurrency of plan.podCreateConcurrencies) {
    const without = await measure(cp.url, create(namespaces.plain), admin, concurrency, plan, watched);
    const withWebhook = await measure(cp.url, create(namespaces.labelled), admin, concurrency, plan, watched);
    podCreate.push({ concurrency, without, with: withWebhook, comparison: compare(without, withWebhook) });
    log(`pod create c=${concurrency}: p50 ${without.latency.p50.toFixed(2)}ms without the webhook, ${withWebhook.latency.p50.toFixed(2)}ms with it`);
  }
  return podCreate;
}

/** The controller provisions the namespace and sets the caBundle; the API server learns the webhook configuration from an informer: wait until a dry-run create comes back injected. */
async function apiServerCallsInjector(clients: AdminClients, namespace: string): Promise<void> {
  await waitFor(
    'the API server to call the injector',
    async () => {
      const pod = await clients.core.createNamespacedPod({ namespace, body: dashboardPod(), dryRun: 'All' });
      return pod.spec?.serviceAccountName === 'chaperone-impersonator';
    },
    60_000,
    200,
  );
}

const mibOf = (bytes: number | undefined) => (bytes === undefined ? '' : `${(bytes / MIB).toFixed(1)} MiB`);

export async function measureAdmission(
  cp: ControlPlane,
  clients: AdminClients,
  plan: AdmissionPlan,
  output: { stderrFile: string; cpuProfileDir?: string },
  log: (line: string) => void,
): Promise<AdmissionResult> {
  const installation = await installInjector(cp, clients);
  const port = await freePort();
  const cgroup = await deploymentCgroup(log);
  const injector = startBundle('injector', [...installation.flags, `--listen=127.0.0.1:${port}`, '--webhook-hosts=127.0.0.1'], { ...output, ...(cgroup ? { cgroup } : {}) });
  try {
    const base = `https://127.0.0.1:${port}`;
    await waitUntilOk(`${base}/healthz`, injector, 'the injector');
    const labelled = await installation.createLabelledNamespace('bench-inject');
    const plain = await createNamespace(clients, 'bench-plain');
    await createWebhookConfiguration(installation, [`${base}/mutate`]);
    await apiServerCallsInjector(clients, labelled);

    const review = reviewOf(dashboardPod(), labelled);
    const answer = await checkInjects(`${base}/mutate`, review);
    const idle = await settledMemory(injector, cgroup);
    const floor = await startHttpsFloor(answer, output.stderrFile);
    let reviews: AdmissionResult['review'];
    try {
      reviews = await measureReviews(base, review, injector.child.pid!, floor, plan, log);
    } finally {
      await floor.stop();
    }
    const after = await settledMemory(injector, cgroup);
    const memory = {
      idleBytes: idle.rss,
      afterReviewsBytes: after.rss,
      ...(cgroup ? { cgroup: { limitBytes: cgroup.limitBytes, idleBytes: idle.cgroup!, afterReviewsBytes: after.cgroup!, oomKills: cgroup.oomKills() } } : {}),
    };
    log(`injector resident memory: ${mibOf(idle.rss)} idle, ${mibOf(after.rss)} ${SETTLE_MS / 1000} s after the reviews; its cgroup charged ${mibOf(idle.cgroup)} and ${mibOf(after.cgroup)}`);
    const podCreate = await measurePodCreates(cp, { plain, labelled }, injector.child.pid!, plan, log);
    return { runtime: { nodeFlags: bundleNodeFlags('injector'), env: bundleImageEnv('injector') }, review: reviews, podCreate, memory };
  } finally {
    await injector.stop();
    await cgroup?.remove();
    await installation.cleanup();
  }
}
