// The namespace reconciler the leader runs: it watches namespaces labelled chaperone.dev/inject=enabled
// and keeps in each the scoped service account, its place in the impersonator ClusterRoleBinding, the
// CA ConfigMap and the sidecar's serving certificate; when the label goes, so does all of it.
//
// Only objects labelled as this installation's are changed or deleted; one of the same name that is
// not is left alone and reported (the readiness check names it). The ClusterRoleBinding's subjects
// are also the record of which namespaces were provisioned, so that a label removed while no
// injector ran is still cleaned up.
import type { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, V1ClusterRoleBinding, V1Namespace, V1ObjectMeta } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.js';
import type { SidecarCas } from '../certs/reconciler.js';
import { readSecret, writeLeafSecret } from '../certs/webhook.js';
import { describeError, isConflict, isNotFound, listWatch, unlessNotFound, type Watching } from './kube.js';
import { INJECT_SELECTOR, isOwn, ownLabels } from './names.js';
import {
  boundNamespaces,
  caConfigMapData,
  sameSubjects,
  serviceAccountSubject,
  sidecarLeafSpec,
  withoutSubject,
  withSubject,
  type ProvisioningNames,
} from './objects.js';

export interface ProvisionerOptions {
  kubeconfig: KubeConfig;
  core: CoreV1Api;
  rbac: RbacAuthorizationV1Api;
  names: ProvisioningNames;
  /** More labels a namespace must carry to be provisioned (a label selector), besides the inject label. */
  namespaceSelector?: string;
  leafValidityMs: number;
  resyncMs: number;
  log: Logger;
}

/** An object of ours by name that this installation did not create. */
class Foreign extends Error {}

const MAX_BACKOFF_MS = 60_000;
const MAX_ATTEMPTS = 5;

export class NamespaceProvisioner {
  private cas: SidecarCas | undefined;
  private labelled = new Map<string, V1Namespace>();
  private watching: Watching | undefined;
  private readonly due = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly queue = new Set<string>();
  private readonly failures = new Map<string, number>();
  private working: Promise<void> | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: ProvisionerOptions) {}

  private get labels(): Record<string, string> {
    return ownLabels(this.options.names.installation);
  }

  /** New CA bundles (or the first): every namespace is brought up to date. */
  setCas(cas: SidecarCas): void {
    const first = !this.cas;
    this.cas = cas;
    if (first) this.startWatching();
    else for (const name of this.labelled.keys()) this.enqueue(name);
  }

  private startWatching(): void {
    const { kubeconfig, core, namespaceSelector, log } = this.options;
    const labelSelector = namespaceSelector ? `${INJECT_SELECTOR},${namespaceSelector}` : INJECT_SELECTOR;
    this.watching = listWatch<V1Namespace>({
      kubeconfig,
      path: '/api/v1/namespaces',
      labelSelector,
      list: () => core.listNamespace({ labelSelector }),
      onList: (items) => {
        const before = [...this.labelled.keys()];
        this.labelled = new Map(items.map((ns) => [ns.metadata!.name!, ns]));
        for (const name of new Set([...before, ...this.labelled.keys()])) this.enqueue(name);
        void this.resync();
      },
      onEvent: (type, ns) => {
        const name = ns.metadata!.name!;
        if (type === 'DELETED') this.labelled.delete(name);
        else this.labelled.set(name, ns);
        this.enqueue(name);
      },
      log,
      what: `namespaces labelled ${labelSelector}`,
    });
    this.resyncTimer = setInterval(() => void this.resync(), this.options.resyncMs);
  }

  /** Every labelled namespace again, and every namespace the binding still names but is not labelled. */
  private async resync(): Promise<void> {
    for (const name of this.labelled.keys()) this.enqueue(name);
    try {
      const binding = await this.options.rbac.readClusterRoleBinding({ name: this.options.names.impersonatorBinding });
      for (const name of boundNamespaces(binding.subjects, this.options.names.serviceAccount)) if (!this.labelled.has(name)) this.enqueue(name);
    } catch (err) {
      if (!isNotFound(err)) this.options.log.warn({ err: describeError(err) }, 'could not read the impersonator ClusterRoleBinding');
    }
  }

  /** Reconciles the namespace after `delayMs` (or sooner, if it is due sooner already). */
  enqueue(name: string, delayMs = 0): void {
    if (this.stopped) return;
    const at = Date.now() + delayMs;
    const existing = this.due.get(name);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.due.delete(name);
      this.queue.add(name);
      this.work();
    }, delayMs);
    this.due.set(name, { at, timer });
  }

  private work(): void {
    if (this.working || this.stopped) return;
    this.working = (async () => {
      while (!this.stopped && this.queue.size > 0) {
        const name = this.queue.values().next().value!;
        this.queue.delete(name);
        await this.reconcile(name);
      }
    })().finally(() => (this.working = undefined));
  }

  private async reconcile(name: string): Promise<void> {
    const { log, resyncMs } = this.options;
    const ns = this.labelled.get(name);
    try {
      if (ns && !ns.metadata?.deletionTimestamp) {
        const renewAt = await this.provision(name);
        this.enqueue(name, Math.min(resyncMs, Math.max(0, renewAt - Date.now() + 50)));
      } else {
        await this.unprovision(name);
      }
      this.failures.delete(name);
    } catch (err) {
      const failures = (this.failures.get(name) ?? 0) + 1;
      this.failures.set(name, failures);
      const retryMs = err instanceof Foreign ? resyncMs : Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
      log.warn({ namespace: name, err: describeError(err), retryMs }, ns ? 'could not provision the namespace' : 'could not clean up the namespace');
      this.enqueue(name, retryMs);
    }
  }

  /** Returns when the serving certificate is next due for renewal. */
  private async provision(namespace: string): Promise<number> {
    const { core, names, log } = this.options;
    const cas = this.cas!;
    const labels = this.labels;
    const created: string[] = [];

    const account = await unlessNotFound(core.readNamespacedServiceAccount({ name: names.serviceAccount, namespace }));
    if (account) this.mustOwn(account, 'ServiceAccount', namespace);
    else {
      // The pod mounts a token of it only into the sidecar; nothing else gets one by default.
      await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: names.serviceAccount, labels }, automountServiceAccountToken: false } });
      created.push(`ServiceAccount ${names.serviceAccount}`);
    }

    const data = caConfigMapData(cas);
    const configMap = await unlessNotFound(core.readNamespacedConfigMap({ name: names.caConfigMap, namespace }));
    if (!configMap) {
      await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: names.caConfigMap, labels }, data } });
      created.push(`ConfigMap ${names.caConfigMap}`);
    } else {
      this.mustOwn(configMap, 'ConfigMap', namespace);
      if (Object.entries(data).some(([key, value]) => configMap.data?.[key] !== value)) {
        await core.replaceNamespacedConfigMap({ name: names.caConfigMap, namespace, body: { ...configMap, data: { ...configMap.data, ...data } } });
        log.info({ namespace }, 'updated the CA bundles');
      }
    }

    const secret = await readSecret(core, namespace, names.servingSecret);
    if (secret) this.mustOwn(secret, 'Secret', namespace);
    const leaf = await writeLeafSecret({ core, namespace, name: names.servingSecret, labels }, secret, cas.serving, sidecarLeafSpec(namespace, this.options.leafValidityMs), new Date());
    if (leaf.issued && secret) log.info({ namespace, why: leaf.issued }, "renewed the sidecars' serving certificate");
    if (!secret) created.push(`Secret ${names.servingSecret}`);

    if (await this.updateBinding(namespace, 'add')) created.push(`ClusterRoleBinding ${names.impersonatorBinding} subject`);
    if (created.length > 0) log.info({ namespace, created }, 'provisioned the namespace');
    return leaf.renewAt.getTime();
  }

  private async unprovision(namespace: string): Promise<void> {
    const { core, names, log } = this.options;
    const removed: string[] = [];
    const reads: [string, () => Promise<{ metadata?: { labels?: Record<string, string>; resourceVersion?: string } }>, (rv: string) => Promise<unknown>][] = [
      [
        `ServiceAccount ${names.serviceAccount}`,
        () => core.readNamespacedServiceAccount({ name: names.serviceAccount, namespace }),
        (rv) => core.deleteNamespacedServiceAccount({ name: names.serviceAccount, namespace, body: { preconditions: { resourceVersion: rv } } }),
      ],
      [
        `ConfigMap ${names.caConfigMap}`,
        () => core.readNamespacedConfigMap({ name: names.caConfigMap, namespace }),
        (rv) => core.deleteNamespacedConfigMap({ name: names.caConfigMap, namespace, body: { preconditions: { resourceVersion: rv } } }),
      ],
      [
        `Secret ${names.servingSecret}`,
        () => core.readNamespacedSecret({ name: names.servingSecret, namespace }),
        (rv) => core.deleteNamespacedSecret({ name: names.servingSecret, namespace, body: { preconditions: { resourceVersion: rv } } }),
      ],
    ];
    // The binding first: from then on the account can do nothing, whatever is left.
    if (await this.updateBinding(namespace, 'remove')) removed.push(`ClusterRoleBinding ${names.impersonatorBinding} subject`);
    for (const [what, read, remove] of reads) {
      const object = await unlessNotFound(read());
      if (!object || !isOwn(object.metadata?.labels, names.installation)) continue;
      try {
        await remove(object.metadata?.resourceVersion ?? '');
        removed.push(what);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    if (removed.length > 0) log.info({ namespace, removed }, 'removed what the namespace was provisioned with');
  }

  private mustOwn(object: { metadata?: V1ObjectMeta }, kind: string, namespace: string): void {
    if (!isOwn(object.metadata?.labels, this.options.names.installation)) {
      throw new Foreign(`${kind} ${namespace}/${object.metadata?.name ?? ''} was not created by this chaperone installation`);
    }
  }

  /** Adds or removes the namespace's account in the shared binding; true when the binding changed. */
  private async updateBinding(namespace: string, change: 'add' | 'remove'): Promise<boolean> {
    const { rbac, names } = this.options;
    const subject = serviceAccountSubject(namespace, names.serviceAccount);
    let lastError: unknown;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const binding = await unlessNotFound(rbac.readClusterRoleBinding({ name: names.impersonatorBinding }));
      if (!binding) {
        if (change === 'remove') return false;
        const body: V1ClusterRoleBinding = {
          metadata: { name: names.impersonatorBinding, labels: this.labels },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: names.impersonatorRole },
          subjects: [subject],
        };
        try {
          await rbac.createClusterRoleBinding({ body });
          return true;
        } catch (err) {
          if (!isConflict(err)) throw err;
          lastError = err;
          continue;
        }
      }
      if (binding.roleRef.name !== names.impersonatorRole || !isOwn(binding.metadata?.labels, names.installation)) {
        throw new Foreign(`ClusterRoleBinding ${names.impersonatorBinding} was not created by this chaperone installation (or binds another role)`);
      }
      const subjects = change === 'add' ? withSubject(binding.subjects ?? [], subject) : withoutSubject(binding.subjects ?? [], subject);
      if (sameSubjects(binding.subjects, subjects)) return false;
      try {
        await rbac.replaceClusterRoleBinding({ name: names.impersonatorBinding, body: { ...binding, subjects } });
        return true;
      } catch (err) {
        if (!isConflict(err)) throw err;
        lastError = err;
      }
    }
    throw new Error(`ClusterRoleBinding ${names.impersonatorBinding} kept changing under us: ${describeError(lastError)}`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    for (const { timer } of this.due.values()) clearTimeout(timer);
    this.due.clear();
    await this.watching?.stop();
    await this.working;
  }
}

