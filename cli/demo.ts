// The demo: chaperone's real path on a local node. A control plane and a node (the kubelet,
// containerd and runc) on this machine; chaperone installed from manifests/base as it ships, the
// injector running from its image; a labelled namespace it provisions; a dashboard pod it injects,
// which runs, its sidecar first; people signing in three ways, kubectl through a port-forward to the
// sidecar, allowed and refused; and the sidecar's audit events. It stays up until Ctrl-C, then
// removes everything it started, from the host too.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureControlPlaneBinaries, ensureKubectl, ensureKubelet, ensureNodePause, KUBERNETES_VERSION } from '../local-cluster/binaries.js';
import type { ControlPlane } from '../local-cluster/control-plane.js';
import { adminClients, type AdminClients } from '../local-cluster/kube.js';
import { INJECTOR_NAMESPACE, installOnNode } from '../local-cluster/installed.js';
import { checkNodePrerequisites, startNode, type LocalNode } from '../local-cluster/node.js';
import { auditEventIn, auditLine, AuditPrinter } from './demo-audit.js';
import { createDashboard, DASHBOARD, dashboardPod, dashboardRunning, NAMESPACE, provisionNamespace, signIn, SIDECAR_PORT, type SignIn } from './demo-cluster.js';
import { followLogs, kubectlName, portForward, type Kubectl } from './demo-kubectl.js';
import { Lifecycle, Stopped } from './demo-lifecycle.js';
import { bad, bold, dim, duration, INDENT, say, stepper, type Step } from './demo-output.js';
import { describeInjection } from './demo-describe.js';
import { kubeconfigCommandLine, kubeconfigOptions, kubectlThroughSidecar, writeKubeconfigs, type People } from './demo-people.js';

/** A node's stop drains its pods, stops the kubelet and containerd and undoes what it made on the host. */
const NODE_STOP_TIMEOUT_MS = 120_000;
const AUDIT_EVENTS_WAIT_MS = 10_000;

export interface Demo {
  dir: string;
  life: Lifecycle;
  step: (title: string) => Step;
  kubectl: Kubectl;
}

interface Ready {
  cp: ControlPlane;
  sidecarUrl: string;
  people: People;
}

async function binaries(demo: Demo): Promise<string> {
  const step = demo.step(`Kubernetes ${KUBERNETES_VERSION}: kube-apiserver, kube-controller-manager, etcd, the kubelet, kubectl`);
  let building = false;
  const log = (line: string) => {
    if (!building) {
      building = true;
      step.say('not built yet: built from source with Go, once per Kubernetes version. This takes about 10 minutes');
      step.say('on 2 cores (a few on 8); later runs start in seconds. Progress:');
    }
    step.say(dim(line));
  };
  try {
    const found = await ensureControlPlaneBinaries(log);
    const kubelet = await ensureKubelet(log);
    await ensureNodePause(log);
    const kubectl = await ensureKubectl(log);
    step.done(found.source === 'environment' ? `from CHAPERONE_KUBE_APISERVER, CHAPERONE_KUBE_CONTROLLER_MANAGER, CHAPERONE_ETCD; the kubelet ${kubelet}` : `${found.source === 'cache' ? 'cached' : 'built'} in ${path.dirname(found.kubeApiserver)}`);
    return kubectl;
  } catch (err) {
    throw new Error(`the build failed: ${(err as Error).message}`, { cause: err });
  }
}

async function node(demo: Demo): Promise<LocalNode> {
  const step = demo.step('A local node and its control plane: etcd, kube-apiserver, kube-controller-manager, the kubelet, containerd, runc');
  const started = await startNode({ log: (line) => step.say(dim(line)) });
  demo.life.defer('the node and its control plane', () => started.stop(), NODE_STOP_TIMEOUT_MS);
  step.say(`node ${started.name}: pods get addresses on bridge ${started.bridge} (${started.address}/24), their own network namespace each`);
  step.say(`kube-apiserver at ${started.controlPlane.url}, the bridge's address, which pods reach as the kubernetes Service; no scheduler (pods name the node)`);
  step.say(`its state, sockets and logs: ${started.dir}`);
  step.done(`Ready; kube-apiserver ${started.controlPlane.version}`);
  return started;
}

async function install(demo: Demo, on: LocalNode): Promise<void> {
  const step = demo.step('chaperone installed as it ships: manifests/base (kubectl apply --server-side -k manifests/base)');
  step.say('the injector and sidecar images built from dist/ as their Dockerfiles lay them out, no Docker, imported into containerd');
  const { deployment, sidecarImage } = await installOnNode(on, demo.dir, { log: (line) => step.say(dim(line)) });
  const injector = deployment.spec!.template.spec!.containers[0]!.image!;
  step.say(`Deployment ${INJECTOR_NAMESPACE}/${deployment.metadata!.name} (${injector}), ${deployment.spec!.replicas} replicas, the shipped RBAC, webhook,`);
  step.say('admission policies, Service, PodDisruptionBudget and NetworkPolicy; its one change: the pods name the node');
  step.done(`every replica Ready; it will inject ${sidecarImage}`);
}

async function dashboard(demo: Demo, clients: AdminClients, on: LocalNode): Promise<void> {
  const step = demo.step(`A dashboard pod in ${NAMESPACE}: what the injector did to it, and the pod running`);
  const before = await clients.core.createNamespacedPod({ namespace: NAMESPACE, body: dashboardPod(on.name, { optOut: true }), dryRun: 'All' });
  const stored = await createDashboard(demo, clients, on, step);
  step.say(dim(`the pod as stored, against the same pod opted out (chaperone.dev/inject=disabled):`));
  for (const line of describeInjection(before, stored)) step.say(line);
  const running = await dashboardRunning(demo, clients, on, step);
  const started = (name: string) => [...(running.status?.initContainerStatuses ?? []), ...(running.status?.containerStatuses ?? [])].find((s) => s.name === name)?.state?.running?.startedAt;
  step.say(`the kubelet started the sidecar at ${started('chaperone')?.toISOString()}, and the app once the sidecar's startup probe passed, at ${started(DASHBOARD)?.toISOString()}`);
  step.done(`pod ${NAMESPACE}/${DASHBOARD} Running and Ready at ${running.status?.podIP} on ${on.name}`);
}

async function forward(demo: Demo, cp: ControlPlane): Promise<string> {
  const step = demo.step('The sidecar from this machine: kubectl port-forward to the pod\'s 127.0.0.1:6443');
  const forwarding = await portForward(demo.kubectl, cp.adminKubeconfig, { namespace: NAMESPACE, pod: DASHBOARD, port: SIDECAR_PORT });
  demo.life.defer('the port-forward', () => forwarding.stop());
  forwarding.child.once('exit', (code) => {
    if (!demo.life.stopping) say(bad(`kubectl port-forward stopped (${code}): the sidecar is out of reach; stop the demo and start it again`));
  });
  step.say(`$ KUBECONFIG=${cp.adminKubeconfig} ${kubectlName(demo.kubectl.binary)} port-forward --address=127.0.0.1 -n ${NAMESPACE} pod/${DASHBOARD} :${SIDECAR_PORT}`);
  step.say(dim('run by the demo as the admin (straight to the API server and the kubelet), until Ctrl-C; the sidecar listens on the pod\'s'));
  step.say(dim('own loopback, where the dashboard reaches it: a port-forward is how a person on this machine gets there'));
  const url = `https://127.0.0.1:${forwarding.port}`;
  step.done(`${url} is the sidecar in pod ${NAMESPACE}/${DASHBOARD}`);
  return url;
}

/** Prints the events so far, then each as it comes, until the demo stops. */
async function auditEvents(demo: Demo, cp: ControlPlane, expected: number): Promise<void> {
  const step = demo.step("The sidecar's audit events, one per request, from its container's log (the API server's own log has the same auditIDs)");
  const printer = new AuditPrinter((event) => say(`${INDENT}${auditLine(event)}`));
  const logs = followLogs(demo.kubectl, cp.adminKubeconfig, ['-n', NAMESPACE, DASHBOARD, '-c', 'chaperone'], (line) => {
    const event = auditEventIn(line);
    if (event) printer.add(event);
  });
  demo.life.defer("following the sidecar's log", () => logs.stop());
  // The sidecar writes an event as the response ends, a moment after kubectl saw it, and the log takes a moment more.
  const deadline = Date.now() + AUDIT_EVENTS_WAIT_MS;
  while (printer.waiting < expected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  printer.flush();
  step.done(`KUBECONFIG=${cp.adminKubeconfig} ${kubectlName(demo.kubectl.binary)} logs -n ${NAMESPACE} ${DASHBOARD} -c chaperone`);
}

/** The node, chaperone installed on it, sign-in, the namespace and the running dashboard pod. */
async function cluster(demo: Demo): Promise<{ cp: ControlPlane; clients: AdminClients; ways: SignIn }> {
  const local = await node(demo);
  const clients = adminClients(local.controlPlane);
  demo.life.checkpoint();
  await install(demo, local);
  demo.life.checkpoint();
  const ways = await signIn(demo, clients, local);
  demo.life.checkpoint();
  await provisionNamespace(demo, clients, local);
  demo.life.checkpoint();
  await dashboard(demo, clients, local);
  demo.life.checkpoint();
  return { cp: local.controlPlane, clients, ways };
}

async function start(demo: Demo): Promise<Ready> {
  const started = Date.now();
  checkNodePrerequisites();
  demo.kubectl.binary = await binaries(demo);
  demo.life.checkpoint();
  const { cp, clients, ways } = await cluster(demo);
  const sidecarUrl = await forward(demo, cp);
  demo.life.checkpoint();
  const written = await writeKubeconfigs(demo, { cp, clients }, sidecarUrl, ways);
  demo.life.checkpoint();
  const commands = await kubectlThroughSidecar(demo, written);
  await auditEvents(demo, cp, commands);
  say();
  say(`${bold('The demo is ready')} ${dim(`(in ${duration(Date.now() - started)})`)}. Try it by hand, in another terminal:`);
  return { cp, sidecarUrl, people: written };
}

function printHowTo(demo: Demo, ready: Ready): void {
  const kubectl = kubectlName(demo.kubectl.binary);
  const { people: files, cp } = ready;
  const carol = path.join(demo.dir, 'carol.kubeconfig');
  const lines = [
    dim('# alice may look, bob may not; watches stream through the sidecar too'),
    `KUBECONFIG=${files.alice} ${kubectl} get pods -n ${NAMESPACE}`,
    `KUBECONFIG=${files.bob} ${kubectl} get pods -n ${NAMESPACE}`,
    dim('# carol (OIDC) and dave (the webhook): who the API server thinks they are'),
    `KUBECONFIG=${files.carol} ${kubectl} auth whoami`,
    `KUBECONFIG=${files.dave} ${kubectl} auth whoami`,
    `KUBECONFIG=${files.alice} ${kubectl} get configmaps -n ${NAMESPACE} --watch`,
    dim("# let bob view too, as the cluster's admin (straight to the API server); the sidecar remembers a refusal for 10s"),
    `KUBECONFIG=${cp.adminKubeconfig} ${kubectl} create rolebinding bob-view -n ${NAMESPACE} --clusterrole=view --user=bob`,
    dim('# a kubeconfig for carol, who may do nothing until someone grants her a role (run in this repository)'),
    kubeconfigCommandLine(kubeconfigOptions(cp, ready.sidecarUrl, { user: 'carol', groups: [], output: carol })),
    `KUBECONFIG=${carol} ${kubectl} auth can-i --list -n ${NAMESPACE}`,
    dim('# what runs on the node, as the admin'),
    `KUBECONFIG=${cp.adminKubeconfig} ${kubectl} get pods -A -o wide`,
  ];
  for (const line of lines) say(`${INDENT}${line}`);
  say();
  say(`${INDENT}the sidecar's audit events and log: KUBECONFIG=${cp.adminKubeconfig} ${kubectl} logs -n ${NAMESPACE} ${DASHBOARD} -c chaperone`);
  say(`${INDENT}the injector's log:                  KUBECONFIG=${cp.adminKubeconfig} ${kubectl} logs -n ${INJECTOR_NAMESPACE} deployment/chaperone-injector`);
  say(`${INDENT}the API server's audit log:          ${cp.auditLog}`);
  say();
  say(`Press Ctrl-C to stop; everything the demo started is removed. Audit events as they happen:`);
}

/** What went wrong, said plainly; a port in use is named as such. */
function explain(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/EADDRINUSE|address already in use/i.test(message)) return `a port the demo needs is already in use: ${message}\nStop what holds it and run the demo again.`;
  return message;
}

async function run(): Promise<number> {
  const life = new Lifecycle();
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-demo-'));
  life.defer("the demo's files", () => rm(dir, { recursive: true, force: true }));
  const demo: Demo = { dir, life, step: stepper(), kubectl: { binary: 'kubectl', cacheDir: path.join(dir, 'kube-cache') } };
  say(`${bold('chaperone demo')}: the injector and a dashboard pod with its sidecar, running on a local node (kubelet, containerd, runc).`);
  say(dim(`Its files: ${dir}`));
  say();
  let code = 0;
  try {
    const ready = await start(demo);
    life.markRunning();
    printHowTo(demo, ready);
    await life.stopRequested;
  } catch (err) {
    // A terminal's Ctrl-C stops the control plane's processes too, failing the step under way.
    if (!(err instanceof Stopped) && !life.stopping) {
      code = 1;
      say();
      say(`${bad('✗ the demo could not start:')} ${explain(err)}`);
    }
  }
  await life.cleanUp();
  say(code === 0 ? 'stopped; nothing the demo started is left.' : 'cleaned up.');
  return code;
}

export async function runDemo(): Promise<void> {
  process.exit(await run());
}
