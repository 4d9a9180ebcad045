// The injector's cost: AdmissionReviews sent straight to it (its production bundle, with its
// controller, installed with the shipped RBAC), how many it refused under load, its memory before and
// after them, and pod creation through the API server in a namespace the webhook is called for
// against one it is not.
import { request } from 'node:https';
import { randomUUID } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { freePort, type ControlPlane } from '../local-cluster/control-plane.js';
import { createNamespace, type AdminClients } from '../local-cluster/kube.js';
import { createWebhookConfiguration, installInjector } from '../local-cluster/provisioned.js';
import { waitFor } from '../local-cluster/wait.js';
import type { LoadPlan } from './overhead.js';
import { measure } from './overhead.js';
import { findProcess, startBundle, waitUntilOk } from './processes.js';
import type { AdmissionResult } from './results.js';
import { compare, MIB } from './stats.js';

/** A dashboard pod as it would be written before injection. */
function dashboardPod(): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'dashboard-', labels: { app: 'dashboard' } },
    spec: {
      containers: [
        {
          name: 'dashboard',
          image: 'ghcr.io/headlamp-k8s/headlamp:v0.30.0',
          args: ['-in-cluster', '-plugins-dir=/headlamp/plugins'],
          ports: [{ name: 'http', containerPort: 4466 }],
          readinessProbe: { httpGet: { path: '/', port: 'http' } },
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
        },
      ],
    },
  };
}

function reviewOf(pod: V1Pod, namespace: string): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: { username: 'bench-admin' },
      object: pod,
      dryRun: false,
    },
  });
}

/** The injector's answers so far that refused a pod (its /metrics), by reason. */
function deniedSoFar(base: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/metrics`, { rejectUnauthorized: false, agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => {
        const lines = text.split('\n').filter((line) => line.startsWith('chaperone_injector_admissions_total{') && line.includes('outcome="denied"'));
        resolve(lines.reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** The injector's resident memory once it has been quiet for a moment. */
async function settledRss(injector: { rss(): number }): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  return injector.rss();
}

const SETTLE_MS = 5000;
/** No denial caused by load at this many concurrent reviews (issue 20). */
const BURST_CONCURRENCY = 200;

/** One review, to make sure the load measures injections, not refusals. */
function checkInjects(url: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', rejectUnauthorized: false, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => {
        const response = res.statusCode === 200 ? (JSON.parse(text) as { response?: { allowed?: boolean; patch?: string } }).response : undefined;
        if (response?.allowed && response.patch) resolve();
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

export async function measureAdmission(
  cp: ControlPlane,
  clients: AdminClients,
  plan: AdmissionPlan,
  output: { stderrFile: string; cpuProfileDir?: string },
  log: (line: string) => void,
): Promise<AdmissionResult> {
  const installation = await installInjector(cp, clients);
  const port = await freePort();
  const injector = startBundle('injector', [...installation.flags, `--listen=127.0.0.1:${port}`, '--webhook-hosts=127.0.0.1'], output);
  try {
    const base = `https://127.0.0.1:${port}`;
    await waitUntilOk(`${base}/healthz`, injector, 'the injector');
    const labelled = await installation.createLabelledNamespace('bench-inject');
    const plain = await createNamespace(clients, 'bench-plain');
    await createWebhookConfiguration(installation, [`${base}/mutate`]);
    // The controller provisions the namespace and sets the caBundle; the API server learns the
    // webhook configuration from an informer: wait until a dry-run create comes back injected.
    await waitFor(
      'the API server to call the injector',
      async () => {
        const pod = await clients.core.createNamespacedPod({ namespace: labelled, body: dashboardPod(), dryRun: 'All' });
        return pod.spec?.serviceAccountName === 'chaperone-impersonator';
      },
      60_000,
      200,
    );

    const review = reviewOf(dashboardPod(), labelled);
    await checkInjects(`${base}/mutate`, review);
    const idleBytes = await settledRss(injector);
    const reviewWorkload = { name: 'AdmissionReview', path: '/mutate', method: 'POST' as const, body: review, contentType: 'application/json' };
    const reviews: AdmissionResult['review'] = [];
    for (const concurrency of [...new Set([...plan.reviewConcurrencies, BURST_CONCURRENCY])]) {
      const deniedBefore = await deniedSoFar(base);
      const stats = await measure(base, reviewWorkload, {}, concurrency, plan, { injector: injector.child.pid! });
      const denied = (await deniedSoFar(base)) - deniedBefore;
      reviews.push({ concurrency, stats, denied });
      log(`AdmissionReview c=${concurrency}: ${stats.rps.toFixed(0)}/s, p50 ${stats.latency.p50.toFixed(2)}ms p99 ${stats.latency.p99.toFixed(2)}ms, ${denied} denied`);
    }
    const memory = { idleBytes, afterReviewsBytes: await settledRss(injector) };
    log(`injector resident memory: ${(memory.idleBytes / MIB).toFixed(1)} MiB idle, ${(memory.afterReviewsBytes / MIB).toFixed(1)} MiB ${SETTLE_MS / 1000} s after the reviews`);

    const admin = { cert: cp.admin };
    const watched = { 'kube-apiserver': findProcess('kube-apiserver', cp.dir), injector: injector.child.pid! };
    const create = (namespace: string) => ({
      name: 'pod create',
      path: `/api/v1/namespaces/${namespace}/pods`,
      method: 'POST' as const,
      body: JSON.stringify(dashboardPod()),
      contentType: 'application/json',
    });
    const podCreate: AdmissionResult['podCreate'] = [];
    for (const concurrency of plan.podCreateConcurrencies) {
      const without = await measure(cp.url, create(plain), admin, concurrency, plan, watched);
      const withWebhook = await measure(cp.url, create(labelled), admin, concurrency, plan, watched);
      podCreate.push({ concurrency, without, with: withWebhook, comparison: compare(without, withWebhook) });
      log(`pod create c=${concurrency}: p50 ${without.latency.p50.toFixed(2)}ms without the webhook, ${withWebhook.latency.p50.toFixed(2)}ms with it`);
    }
    return { review: reviews, podCreate, memory };
  } finally {
    await injector.stop();
    await installation.cleanup();
  }
}
