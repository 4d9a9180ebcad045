// Mocha fixtures: a suite declares what it runs against (`const sidecar = withSidecar({ mode })`), and
// the fixture starts it in a before hook and stops it after the suite: after the suite's own after
// hooks (which clean up what the suite built on it), the last started first. The objects a fixture
// returns are empty until its hook has run: use them in later hooks and in tests, never while declaring.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Context } from 'mocha';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../local-cluster/control-plane.js';
import { adminClients, type AdminClients } from '../../local-cluster/kube.js';
import { createWebhookConfiguration, installInjector, readCaBundles, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { startTestSidecar, type TestSidecar, type TestSidecarOptions } from '../../local-cluster/sidecar.js';
import type { Controller } from '../../injector/controller.js';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import { createLogger } from '../../lib/log.js';
import { applyTokenPolicies, startClusterLikeControlPlane, startInjectorBehindWebhook } from './containment.js';
import { sharedControlPlane } from './shared.js';

/** A control plane may build its binaries first, on a loaded machine (an older release's the longest). */
const SETUP_TIMEOUT_MS = 60 * 60_000;

/** A value, or how to make it when the fixture starts (after the suite's earlier hooks, whose results it may use). */
export type WhenStarted<T> = T | (() => T | Promise<T>);

export interface Cluster {
  cp: ControlPlane;
  clients: AdminClients;
}

export interface Injector {
  installation: InjectorInstallation;
  injector: RunningInjector;
}

/** The value, made now if it was given as how to make it. */
export function valueOf<T>(value: WhenStarted<T>): T | Promise<T> {
  return typeof value === 'function' ? (value as () => T | Promise<T>)() : value;
}

const startedBySuite = new WeakMap<Mocha.Suite, (() => Promise<void>)[]>();

/** What the suite's fixtures started; the first asks for an after hook, added while the suite runs so that it comes after the suite's own. */
function stopsOf(context: Context): (() => Promise<void>)[] {
  const suite = context.test!.parent!;
  let stops = startedBySuite.get(suite);
  if (!stops) {
    const started: (() => Promise<void>)[] = [];
    startedBySuite.set(suite, (stops = started));
    suite.afterAll('stop what the fixtures started', async () => {
      for (let stop = started.pop(); stop; stop = started.pop()) await stop();
    });
  }
  return stops;
}

/** Registers the before hook: `start` fills the fixture's objects and says how to stop what it started. */
function fixture(start: () => Promise<(() => Promise<void>) | undefined>): void {
  before(async function () {
    this.timeout(SETUP_TIMEOUT_MS);
    const stop = await start();
    if (stop) stopsOf(this).push(stop);
  });
}

function fill(cluster: Cluster, cp: ControlPlane): void {
  Object.assign(cluster.cp, cp);
  Object.assign(cluster.clients, adminClients(cp));
}

function emptyCluster(): Cluster {
  return { cp: {} as ControlPlane, clients: {} as AdminClients };
}

/** The control plane every suite shares (started by the first that asks, stopped when mocha ends), and admin clients for it. */
export function withSharedControlPlane(): Cluster {
  const cluster = emptyCluster();
  fixture(async () => {
    fill(cluster, await sharedControlPlane());
    return undefined;
  });
  return cluster;
}

/** A control plane of the suite's own, stopped after the suite. */
export function withControlPlane(options: WhenStarted<ControlPlaneOptions> = {}): Cluster {
  return withOwnControlPlane(async () => startControlPlane(await valueOf(options)));
}

/** A control plane run as clusters run (the Node authorizer, NodeRestriction) with the shipped token policies applied: the containment suites'. */
export function withClusterLikeControlPlane(): Cluster {
  return withOwnControlPlane(async () => {
    const cp = await startClusterLikeControlPlane();
    await applyTokenPolicies(adminClients(cp));
    return cp;
  });
}

function withOwnControlPlane(start: () => Promise<ControlPlane>): Cluster {
  const cluster = emptyCluster();
  fixture(async () => {
    const cp = await start();
    fill(cluster, cp);
    return () => cp.stop();
  });
  return cluster;
}

/** Whatever `start` starts (anything with a stop()), filled into the object returned and stopped after the suite. */
export function withStarted<T extends { stop(): Promise<void> }>(start: () => Promise<T>): T {
  const handle = {} as T;
  fixture(async () => {
    const started = await start();
    Object.assign(handle, started);
    return () => started.stop();
  });
  return handle;
}

/** A sidecar as an injected pod has it (startTestSidecar), on the given control plane or the shared one. */
export function withSidecar(options: WhenStarted<TestSidecarOptions> = {}, cluster?: Cluster): TestSidecar {
  return withStarted(async () => {
    const cp = cluster?.cp ?? (await sharedControlPlane());
    return startTestSidecar(cp, cluster?.clients ?? adminClients(cp), await valueOf(options));
  });
}

/** An installation of the injector (installInjector) and its injector on 127.0.0.1, called through the installation's webhook configuration; stopped after the suite. */
export function withInjector(cluster: Cluster, flags: WhenStarted<string[]> = []): Injector {
  const injector = { installation: {} as InjectorInstallation, injector: {} as RunningInjector };
  fixture(async () => {
    Object.assign(injector.installation, await installInjector(cluster.cp, cluster.clients));
    const running = await startInjectorBehindWebhook(injector.installation, await valueOf(flags));
    Object.assign(injector.injector, running);
    return () => running.stop();
  });
  return injector;
}

export interface ReplicatedInjector extends Injector {
  /** The controller, a replica of its own that the webhook server asks about provisioning. */
  replica: Controller;
}

/**
 * An installation whose controller runs as a replica with these flags, and the webhook server in front
 * of it on 127.0.0.1, once the API server has its caBundle; `prepare` runs before the replica starts
 * (an installation configuration, say). The installation is cleaned up after the suite.
 */
export function withReplicatedInjector(cluster: Cluster, replicaFlags: string[], prepare?: (installation: InjectorInstallation) => Promise<unknown>): ReplicatedInjector {
  const handle = { installation: {} as InjectorInstallation, injector: {} as RunningInjector, replica: {} as Controller };
  fixture(async () => {
    const installation = await installInjector(cluster.cp, cluster.clients);
    Object.assign(handle.installation, installation);
    return () => installation.cleanup();
  });
  fixture(async () => {
    await prepare?.(handle.installation);
    const replica = handle.installation.startReplica(replicaFlags);
    Object.assign(handle.replica, replica);
    await replica.ready();
    const injector = await startInjector(handle.installation.config(['--listen=127.0.0.1:0']), createLogger('injector', 'warn'), { controller: replica });
    Object.assign(handle.injector, injector);
    await createWebhookConfiguration(handle.installation, [`https://127.0.0.1:${injector.port}/mutate`]);
    await waitFor('the caBundle', async () => (await readCaBundles(handle.installation)).bundles[0] !== '');
    return () => injector.stop();
  });
  return handle;
}

/** A control plane of the suite's own and a sidecar on it, both given this audit policy file. */
export function withAuditPolicy(name: string, policy: string): Cluster & { sidecar: TestSidecar } {
  let policyFile = '';
  fixture(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), `chaperone-${name}-`));
    policyFile = path.join(dir, 'policy.yaml');
    await writeFile(policyFile, policy);
    return () => rm(dir, { recursive: true, force: true });
  });
  // The harness passes its own --audit-policy-file first; kube-apiserver takes the last one given.
  return withControlPlaneAndSidecar(() => [`--audit-policy-file=${policyFile}`]);
}

/** A control plane of the suite's own and a sidecar on it, both given these flags (files both read: a policy, an authentication configuration). */
export function withControlPlaneAndSidecar(flags: WhenStarted<string[]>): Cluster & { sidecar: TestSidecar } {
  const cluster = withControlPlane(async () => ({ extraApiserverFlags: await valueOf(flags) }));
  const sidecar = withSidecar(async () => ({ flags: await valueOf(flags) }), cluster);
  return { ...cluster, sidecar };
}
