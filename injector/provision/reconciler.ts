// The namespace reconciler the leader runs: it watches namespaces labelled chaperone.dev/inject=enabled
// and keeps in each the scoped service account, its own impersonator ClusterRole (generated from the
// namespace's access policy) and ClusterRoleBinding, the CA ConfigMap (with the policy) and the
// sidecar's serving certificate; when the label goes, so does all of it.
//
// Only objects labelled as this installation's are changed or deleted; one of the same name that is
// not is left alone and reported (the readiness check names it). The ClusterRoleBindings, labelled with
// their namespace, are also the record of which namespaces were provisioned, so that a label removed
// while no injector ran is still cleaned up.
import type { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, V1ClusterRole, V1ClusterRoleBinding, V1Namespace, V1ObjectMeta } from '@kubernetes/client-node';
import type { AccessPolicy, ImpersonationMode } from '../../lib/access-policy.js';
import type { Logger } from '../../lib/log.js';
import type { SidecarCas } from '../certs/reconciler.js';
import { readSecret, writeLeafSecret } from '../certs/webhook.js';
import { NAMESPACE_EVENTS_NAMESPACE, neverInjected, refusalEvent } from '../namespaces.js';
import { describeError, isConflict, isNotFound, listWatch, unlessNotFound, type Watching } from './kube.js';
import { accessPolicyFor, AccessPolicyError, type AccessDefaults, type ServedResources } from './access.js';
import { detectImpersonationMode, servedResources } from './cluster-support.js';
import { impersonatorRules, sameRules } from './impersonator-role.js';
import { FOR_NAMESPACE_LABEL, INJECT_SELECTOR, isOwn, ownLabels, PROVISIONED_BY_LABEL } from './names.js';
import { bindsOnly, caConfigMapData, impersonatorName, serviceAccountSubject, sidecarLeafSpec, type ProvisioningNames } from './objects.js';

export interface ProvisionerOptions {
  kubeconfig: KubeConfig;
  core: CoreV1Api;
  rbac: RbacAuthorizationV1Api;
  names: ProvisioningNames;
  /** More labels a namespace must carry to be provisioned (a label selector), besides the inject label. */
  namespaceSelector?: string;
  leafValidityMs: number;
  resyncMs: number;
  /** How the scoped accounts impersonate; `auto` is resolved by probing the API server once. */
  impersonation: Omit<AccessDefaults, 'mode'> & { mode: ImpersonationMode | 'auto' };
  log: Logger;
}

/** An object of ours by name that this installation did not create. */
class Foreign extends Error {}

const MAX_BACKOFF_MS = 60_000;
/** Events expire after an hour (the API server's --event-ttl): a refused label is said again as often. */
const REFUSAL_EVENT_INTERVAL_MS = 55 * 60_000;
const SERVED_RESOURCES_TTL_MS = 30_000;

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
  private mode: ImpersonationMode | undefined;
  private lastMode: ImpersonationMode | undefined;
  private served: { at: number; resources: ServedResources } | undefined;
  private readonly refusedAt = new Map<string, number>();

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

  /** Every labelled namespace again, and every namespace that still has a binding of ours but is not labelled. */
  private async resync(): Promise<void> {
    // Probe the mode again: a cluster upgraded (or its feature gate turned on) moves every namespace to it.
    this.mode = undefined;
    for (const name of this.labelled.keys()) this.enqueue(name);
    try {
      const bindings = await this.options.rbac.listClusterRoleBinding({ labelSelector: `${PROVISIONED_BY_LABEL}=${this.options.names.installation}` });
      for (const binding of bindings.items) {
        const name = binding.metadata?.labels?.[FOR_NAMESPACE_LABEL];
        if (name && !this.labelled.has(name) && isOwn(binding.metadata?.labels, this.options.names.installation)) this.enqueue(name);
      }
    } catch (err) {
      this.options.log.warn({ err: describeError(err) }, 'could not list the impersonator ClusterRoleBindings');
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
    // Never provisioned, whatever its labels (kube-system, ..., the injector's own): the label is refused, visibly.
    const never = neverInjected(name, this.options.names.installation);
    if (!ns) this.refusedAt.delete(name);
    try {
      if (ns && never) await this.refuse(ns, never);
      if (ns && !ns.metadata?.deletionTimestamp && !never) {
        const renewAt = await this.provision(name);
        this.enqueue(name, Math.min(resyncMs, Math.max(0, renewAt - Date.now() + 50)));
      } else {
        await this.unprovision(name);
      }
      this.failures.delete(name);
    } catch (err) {
      const failures = (this.failures.get(name) ?? 0) + 1;
      this.failures.set(name, failures);
      // Waiting on a person (a foreign object, a wrong annotation): the next change or resync brings it back.
      const retryMs = err instanceof Foreign || err instanceof AccessPolicyError ? resyncMs : Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
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

    let policy: AccessPolicy;
    try {
      policy = await this.policyFor(namespace);
    } catch (err) {
      // Fail closed: a policy that cannot be read grants nothing, rather than leaving the last one in force.
      if (err instanceof AccessPolicyError && (await this.deleteOwn('binding', namespace))) log.warn({ namespace }, 'unbound the scoped service account until the access policy is fixed');
      throw err;
    }
    // The role before the binding, so that a narrower policy is in force before anything is granted.
    if (await this.applyRole(namespace, policy)) created.push(`ClusterRole ${impersonatorName(names, namespace)}`);
    if (await this.applyBinding(namespace)) created.push(`ClusterRoleBinding ${impersonatorName(names, namespace)}`);

    const data = caConfigMapData(cas, policy);
    const configMap = await unlessNotFound(core.readNamespacedConfigMap({ name: names.caConfigMap, namespace }));
    if (!configMap) {
      await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: names.caConfigMap, labels }, data } });
      created.push(`ConfigMap ${names.caConfigMap}`);
    } else {
      this.mustOwn(configMap, 'ConfigMap', namespace);
      if (Object.entries(data).some(([key, value]) => configMap.data?.[key] !== value)) {
        await core.replaceNamespacedConfigMap({ name: names.caConfigMap, namespace, body: { ...configMap, data: { ...configMap.data, ...data } } });
        log.info({ namespace }, 'updated the CA bundles and access policy');
      }
    }

    const secret = await readSecret(core, namespace, names.servingSecret);
    if (secret) this.mustOwn(secret, 'Secret', namespace);
    const leaf = await writeLeafSecret({ core, namespace, name: names.servingSecret, labels }, secret, cas.serving, sidecarLeafSpec(namespace, this.options.leafValidityMs), new Date());
    if (leaf.issued && secret) log.info({ namespace, why: leaf.issued }, "renewed the sidecars' serving certificate");
    if (!secret) created.push(`Secret ${names.servingSecret}`);

    if (created.length > 0) log.info({ namespace, created, policy: `${policy.mode}, ${policy.access}` }, 'provisioned the namespace');
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
    if (await this.deleteOwn('binding', namespace)) removed.push(`ClusterRoleBinding ${impersonatorName(names, namespace)}`);
    if (await this.deleteOwn('role', namespace)) removed.push(`ClusterRole ${impersonatorName(names, namespace)}`);
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

  /** A Warning event on the namespace (at most one an hour) and a log line; the caller unprovisions it. */
  private async refuse(ns: V1Namespace, why: string): Promise<void> {
    const name = ns.metadata!.name!;
    const last = this.refusedAt.get(name);
    if (last !== undefined && Date.now() - last < REFUSAL_EVENT_INTERVAL_MS) return;
    const { core, log, names } = this.options;
    log.warn({ namespace: name, why }, 'refused to provision a namespace labelled for injection');
    try {
      await core.createNamespacedEvent({ namespace: NAMESPACE_EVENTS_NAMESPACE, body: refusalEvent(ns, why, names.installation) });
      this.refusedAt.set(name, Date.now());
    } catch (err) {
      log.warn({ namespace: name, err: describeError(err) }, 'could not record the refusal as an event');
    }
  }

  private mustOwn(object: { metadata?: V1ObjectMeta }, kind: string, namespace: string): void {
    if (!isOwn(object.metadata?.labels, this.options.names.installation)) {
      const where = kind.startsWith('Cluster') ? `${kind} ${object.metadata?.name ?? ''} (for namespace ${namespace})` : `${kind} ${namespace}/${object.metadata?.name ?? ''}`;
      throw new Foreign(`${where} was not created by this chaperone installation`);
    }
  }

  private async impersonationMode(): Promise<ImpersonationMode> {
    const { impersonation, kubeconfig, log } = this.options;
    if (impersonation.mode !== 'auto') return impersonation.mode;
    if (!this.mode) {
      const detected = await detectImpersonationMode(kubeconfig);
      if (detected.mode !== this.lastMode) log.info({ mode: detected.mode, because: detected.because }, 'impersonation mode');
      this.mode = this.lastMode = detected.mode;
    }
    return this.mode;
  }

  private async policyFor(namespace: string): Promise<AccessPolicy> {
    const { impersonation, kubeconfig } = this.options;
    const annotations = this.labelled.get(namespace)?.metadata?.annotations;
    const defaults = { ...impersonation, mode: await this.impersonationMode() };
    // A bad annotation is reported without asking for the served resources; a custom policy does not need them.
    const policy = accessPolicyFor(annotations, defaults, { core: [], groups: [] });
    if (policy.access === 'custom') return policy;
    if (!this.served || Date.now() - this.served.at > SERVED_RESOURCES_TTL_MS) this.served = { at: Date.now(), resources: await servedResources(kubeconfig) };
    return accessPolicyFor(annotations, defaults, this.served.resources);
  }

  private ownMetadata(namespace: string): V1ObjectMeta {
    return { name: impersonatorName(this.options.names, namespace), labels: { ...this.labels, [FOR_NAMESPACE_LABEL]: namespace } };
  }

  /** Creates or updates the namespace's role to the policy's rules; true when created. */
  private async applyRole(namespace: string, policy: AccessPolicy): Promise<boolean> {
    const { rbac, log } = this.options;
    const name = impersonatorName(this.options.names, namespace);
    const rules = impersonatorRules(policy);
    const role = await unlessNotFound(rbac.readClusterRole({ name }));
    if (!role) {
      await rbac.createClusterRole({ body: { metadata: this.ownMetadata(namespace), rules } });
      return true;
    }
    this.mustOwn(role, 'ClusterRole', namespace);
    if (sameRules(role.rules ?? [], rules)) return false;
    await rbac.replaceClusterRole({ name, body: { ...role, rules } });
    log.info({ namespace, mode: policy.mode, access: policy.access }, 'updated the impersonator role to the access policy');
    return false;
  }

  /** Creates the namespace's binding, or recreates one that binds anything else; true when created. */
  private async applyBinding(namespace: string): Promise<boolean> {
    const { rbac, names } = this.options;
    const name = impersonatorName(names, namespace);
    const subject = serviceAccountSubject(namespace, names.serviceAccount);
    const body: V1ClusterRoleBinding = {
      metadata: this.ownMetadata(namespace),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [subject],
    };
    const binding = await unlessNotFound(rbac.readClusterRoleBinding({ name }));
    if (binding) {
      this.mustOwn(binding, 'ClusterRoleBinding', namespace);
      if (bindsOnly(binding, name, subject)) return false;
      // A roleRef cannot change; subjects could, but one object that is exactly ours is simpler to trust.
      await rbac.deleteClusterRoleBinding({ name, body: { preconditions: { resourceVersion: binding.metadata?.resourceVersion ?? '' } } });
    }
    try {
      await rbac.createClusterRoleBinding({ body });
    } catch (err) {
      if (!isConflict(err)) throw err;
      return false; // created meanwhile: the next pass checks it
    }
    return true;
  }

  /** Deletes the namespace's role or binding if it is ours; true when something was deleted. */
  private async deleteOwn(kind: 'role' | 'binding', namespace: string): Promise<boolean> {
    const { rbac, names } = this.options;
    const name = impersonatorName(names, namespace);
    const object: V1ClusterRole | V1ClusterRoleBinding | undefined =
      kind === 'role' ? await unlessNotFound(rbac.readClusterRole({ name })) : await unlessNotFound(rbac.readClusterRoleBinding({ name }));
    if (!object || !isOwn(object.metadata?.labels, names.installation)) return false;
    const body = { preconditions: { resourceVersion: object.metadata?.resourceVersion ?? '' } };
    try {
      if (kind === 'role') await rbac.deleteClusterRole({ name, body });
      else await rbac.deleteClusterRoleBinding({ name, body });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
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


