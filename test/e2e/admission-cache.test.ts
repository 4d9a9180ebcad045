// The webhook answers from caches kept by watches, never from a read per admission (issue 20): the API
// server's audit log is the judge of what the injector's own account asked while pods were created.
// Then the caches' rules: a change reaches the next pod; with the API server gone they are trusted
// for a few seconds and then refused, naming the failed watch; once it is back they list again by
// themselves and what changed meanwhile counts. A control plane of this suite's own, since it is
// stopped and started again.
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { PatchStrategy, setHeaderOptions, type V1Pod, type V1Volume } from '@kubernetes/client-node';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import { STALE_AFTER_MS } from '../../injector/informer.js';
import { startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, readAuditEvents, waitForAuditEvents, type AdminClients, type AuditEvent } from '../../local-cluster/kube.js';
import { createWebhookConfiguration, installInjector, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { serviceAccountUsername } from '../../local-cluster/audit-join.js';
import { admissionReview, silentLog } from '../unit/injector/helpers.js';

const PODS = 30;

function dashboardPod(name: string, volumes: V1Volume[] = []): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }], volumes } };
}

/** An AdmissionReview straight to the injector: its answer, or the HTTP error. */
function postReview(port: number, body: unknown): Promise<{ allowed?: boolean; patch?: string; status?: { code: number; message: string } }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/mutate', method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve((JSON.parse(text) as { response: never }).response) : reject(new Error(`HTTP ${res.statusCode}: ${text}`))));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const received = (event: AuditEvent) => new Date((event as AuditEvent & { requestReceivedTimestamp: string }).requestReceivedTimestamp);
/** A request other than a watch (the caches) or of its Lease (leader election, on a timer of its own). */
const asksSomething = (event: AuditEvent) => event.verb !== 'watch' && event.objectRef?.resource !== 'leases';

describe('the admission path reads caches, not the API server (own control plane)', function () {
  this.timeout(240_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let installation: InjectorInstallation;
  let injector: RunningInjector;
  let namespace: string;
  let injectorUser: string;

  const injected = (pod: V1Pod) => pod.spec?.serviceAccountName === 'chaperone-impersonator' && pod.spec.initContainers?.some((c) => c.name === 'chaperone') === true;
  const reviewOf = (name: string) => admissionReview({ object: dashboardPod(name), namespace });
  /** A sidecar image the injector allows, set on the namespace (what its sidecars run: cluster administrators' to say). */
  const imageOf = (digit: string) => `ghcr.io/chaperone-dev/chaperone-sidecar@sha256:${digit.repeat(64)}`;
  const setImage = (image: string) =>
    clients.core.patchNamespace({ name: namespace, body: { metadata: { annotations: { 'chaperone.dev/image': image } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  /** The sidecar image of a pod created (not stored) now, or undefined if it was not injected. */
  const sidecarImage = async (name: string) => {
    const pod = await clients.core.createNamespacedPod({ namespace, body: dashboardPod(name), dryRun: 'All' });
    return injected(pod) ? pod.spec!.initContainers!.find((c) => c.name === 'chaperone')!.image : undefined;
  };

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await startControlPlane();
    clients = adminClients(cp);
    installation = await installInjector(cp, clients);
    injectorUser = serviceAccountUsername(installation.namespace, 'chaperone-injector');
    // No resync within the test: what the injector asks while pods are created is the admissions' alone (and its Lease).
    injector = await startInjector(installation.config(['--listen=127.0.0.1:0', '--webhook-hosts=127.0.0.1', '--resync-interval=30m']), silentLog);
    await createWebhookConfiguration(installation, [`https://127.0.0.1:${injector.port}/mutate`]);
    namespace = await installation.createLabelledNamespace('cached');
    await waitFor(
      'the API server to call the injector, and the namespace to be provisioned',
      async () => injected(await clients.core.createNamespacedPod({ namespace, body: dashboardPod('probe'), dryRun: 'All' })),
      60_000,
      200,
    );
  });

  after(async function () {
    await injector?.stop();
    await installation?.cleanup();
    await cp?.stop();
  });

  it(`makes no API call for ${PODS} pods created through the API server: the audit log has no request of its account but watches and its Lease`, async function () {
    // The controller's own work after provisioning (it reads back what it wrote) is over first: nothing of it for 3s.
    await waitFor(
      'the controller to settle',
      async () => {
        const latest = (await readAuditEvents(cp)).filter((event) => event.user.username === injectorUser && asksSomething(event)).map(received).at(-1);
        return latest !== undefined && Date.now() - latest.getTime() > 3000;
      },
      60_000,
      500,
    );
    const start = new Date();
    const claims = [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }];
    const created: V1Pod[] = [];
    for (let i = 0; i < PODS; i++) {
      // Every other pod has a claim, so that the CSIDrivers are judged too.
      created.push(await clients.core.createNamespacedPod({ namespace, body: dashboardPod(`cached-${i}`, i % 2 === 0 ? claims : []) }));
    }
    const end = new Date();
    assert.equal(created.filter(injected).length, PODS, 'every pod went through the webhook and was injected');
    const last = created.at(-1)!.metadata!.name!;
    const creates = await waitForAuditEvents(cp, (event) => event.verb === 'create' && event.objectRef?.resource === 'pods' && event.objectRef.name === last && event.stage === 'ResponseComplete');
    assert.equal(creates.length, 1, 'the audit log has the last create');

    const all = await readAuditEvents(cp);
    const mine = all.filter((event) => event.user.username === injectorUser);
    // The filter finds the injector: its first lists are there, before the window.
    assert.ok(mine.some((event) => event.verb === 'list' && event.objectRef?.resource === 'namespaces'), `the injector's own list of namespaces is in the audit log as ${injectorUser}`);
    const during = mine.filter((event) => event.stage === 'ResponseComplete' && received(event) >= start && received(event) <= end);
    const asked = during.filter(asksSomething);
    assert.deepEqual(
      asked.map((event) => `${event.verb} ${event.requestURI}`),
      [],
      `while ${PODS} pods were admitted, the injector asked the API server nothing but watches and its Lease`,
    );
  });

  it('takes a change of the namespace at the next pod (its watch)', async function () {
    await setImage(imageOf('b'));
    await waitFor('the next pod to get the image the namespace names', async () => (await sidecarImage('after-change')) === imageOf('b'));
  });

  it(`with the API server gone, trusts its caches for ${STALE_AFTER_MS / 1000}s and then refuses, naming the failed watch; once it is back, lists again and injects`, async function () {
    const before = await postReview(injector.port, reviewOf('before-stop'));
    assert.equal(before.allowed, true);
    assert.ok(before.patch, 'injected while the API server is up');

    await cp.stopApiserver({ kill: true });
    let refusal: Awaited<ReturnType<typeof postReview>>;
    try {
      refusal = await waitFor(
        'the injector to refuse on stale caches',
        async () => {
          const answer = await postReview(injector.port, reviewOf('while-down'));
          // Until then, it injects from what its caches hold.
          assert.ok(answer.allowed === false || answer.patch, `injected or refused, nothing in between: ${JSON.stringify(answer)}`);
          return answer.allowed === false && answer;
        },
        STALE_AFTER_MS + 20_000,
        500,
      );
    } finally {
      await cp.startApiserver();
    }
    assert.equal(refusal.status?.code, 500);
    const failedFor = /^chaperone cannot tell whether namespace \S+ is labelled chaperone\.dev\/inject=enabled: the injector's watch of the namespaces has failed for (\d+)s: /.exec(refusal.status.message);
    assert.ok(failedFor, refusal.status.message);
    assert.ok(Number(failedFor[1]) * 1000 >= STALE_AFTER_MS, `refused only once the watch had failed for ${STALE_AFTER_MS}ms: ${refusal.status.message}`);

    // A change made as the API server comes back, before the injector has listed again, counts.
    await setImage(imageOf('c'));
    await waitFor('pods to be injected again, with the image named after the restart', async () => (await sidecarImage('after-restart')) === imageOf('c'), 60_000, 250);
  });
});
