// The namespace reconciler the leader runs: it watches namespaces labelled chaperone.dev/inject=enabled
// and keeps in each the scoped service account, its own impersonator ClusterRole (generated from the
// namespace's access policy) and ClusterRoleBinding, the CA ConfigMap (with the policy and the
// cluster's CA the sidecar verifies the API server with) and the
// sidecar's serving certificate; when the label goes, so does all of it.
//
// Only objects labelled as this installation's are changed or deleted; one of the same name that is
// not is left alone and reported (the readiness check names it). The ClusterRoleBindings, labelled with
// their namespace, are also the record of which namespaces were provisioned, so that a label removed
// while no injector ran is still cleaned up.
import type { V1ClusterRole, V1ClusterRoleBinding, V1ConfigMap, V1Namespace, V1ObjectMeta } from '@kubernetes/client-node';
import type { KubeApi } from '../../lib/kube-api/client.js';
import type { CoreV1, RbacV1 } from '../../lib/kube-api/resources.js';
import type { AccessPolicy, ImpersonationMode } from '../../lib/access-policy.js';
import type { Logger } from '../../lib/log.js';
import type { SidecarCas } from '../certs/reconciler.js';
import { readSecret, writeLeafSecret } from '../certs/webhook.js';
import { annotationOf } from '../names.js';
import { INSTALLATION_FILE, listenerServicesOf, secretFromObject } from '../../lib/sidecar-config/installation.js';
import { injectorMetrics } from '../metrics.js';
import { NAMESPACE_EVENTS_NAMESPACE, neverInjected, refusalEvent } from '../namespaces.js';
import type { ProvisionedListener } from '../admission-cache.js';
import { describeError, isConflict, isNotFound, listWatch, unlessNotFound, type Watching } from './kube.js';
import { accessPolicyFor, AccessPolicyError, type AccessDefaults, type ServedResources } from './access.js';
import { detectImpersonationMode, servedResources } from './cluster-support.js';
import { impersonatorRules, sameRules } from './impersonator-role.js';
import { FOR_NAMESPACE_LABEL, INJECT_SELECTOR, isOwn, ownLabels, PROVISIONED_BY_LABEL } from './names.js';
import {
  bindsOnly,
  caConfigMapData,
  configReaderRules,
  contentDigest,
  desiredServiceAccount,
  impersonatorName,
  metadataDrift,
  ownMetadataOf,
  readStamp,
  serviceAccountDrift,
  serviceAccountSubject,
  sidecarLeafSpec,
  stampAnnotation,
  VERIFIED_ANNOTATION,
  type ProvisioningNames,
  type VerifiedStamp,
} from './objects.js';

export interface ProvisionerOptions {
  api: KubeApi;
  core: CoreV1;
  rbac: RbacV1;
  names: ProvisioningNames;
  /** More labels a namespace must carry to be provisioned (a label selector), besides the inject label. */
  namespaceSelector?: string;
  leafValidityMs: number;
  resyncMs: number;
  /** The cluster's CA bundle as the injector verifies the API server with it (upstream-ca.ts); undefined while unknown. */
  upstreamCa: () => string | undefined;
  /** Every change of an object of a namespace's provisioning (AdmissionCache.onProvisionedChange). */
  provisionedChanges: (listener: ProvisionedListener) => () => void;
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
  private unfollow: (() => void) | undefined;
  private namespacesListed = false;
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

  /** A new cluster CA bundle: every namespace is brought up to date. */
  upstreamCaChanged(): void {
    if (this.cas) for (const name of this.labelled.keys()) this.enqueue(name);
  }

  /** An installation configuration appeared, changed or went: which Secrets each namespace's account may read follows. */
  installationConfigsChanged(): void {
    this.upstreamCaChanged();
  }

  private startWatching(): void {
    const { api, core, namespaceSelector, log } = this.options;
    const labelSelector = namespaceSelector ? `${INJECT_SELECTOR},${namespaceSelector}` : INJECT_SELECTOR;
    this.followOwnObjects();
    this.watching = listWatch<V1Namespace>({
      api,
      path: '/api/v1/namespaces',
      labelSelector,
      list: () => core.listNamespace({ labelSelector }),
      onList: (items) => {
        const before = [...this.labelled.keys()];
        this.labelled = new Map(items.map((ns) => [ns.metadata!.name!, ns]));
        this.namespacesListed = true;
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

  /**
   * What it provisions, followed so that a change by anyone (an administrator, a system component;
   * the ValidatingAdmissionPolicy keeps everyone else out) is repaired within seconds, not at the next
   * resync: the ServiceAccount, ConfigMap and Secret by name in every namespace, and the impersonator
   * ClusterRoles and ClusterRoleBindings, from the watches every replica keeps for its webhook
   * (admission-cache.ts). A change only says which namespace to reconcile; the reconciler reads what
   * it needs itself.
   */
  private followOwnObjects(): void {
    this.unfollow = this.options.provisionedChanges((namespace, clusterScoped) => {
      // Until the labelled namespaces are known, every namespace would look unlabelled (and be cleaned
      // up): their first list reconciles everything anyway.
      if (!this.namespacesListed) return;
      // Labelled: put back what changed. Not labelled: only a leftover role or binding of ours needs anything (removing).
      if (this.labelled.has(namespace) || clusterScoped) this.enqueue(namespace);
    });
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
      injectorMetrics.provisioningErrors.inc({ action: ns ? 'provision' : 'cleanup' });
      // Waiting on a person (a foreign object, a wrong annotation): the next change or resync brings it back.
      const retryMs = err instanceof Foreign || err instanceof AccessPolicyError ? resyncMs : Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
      log.warn({ namespace: name, err: describeError(err), retryMs }, ns ? 'could not provision the namespace' : 'could not clean up the namespace');
      this.enqueue(name, retryMs);
    }
  }

  /**
   * Returns when the serving certificate is next due for renewal.
   *
   * Nothing in the namespace is trusted for being there: an object of one of its names that this
   * installation did not verify (a squat from before the label, or from before the
   * ValidatingAdmissionPolicy existed, whatever labels it carries) is written over, or for the
   * ServiceAccount, whose tokens would become powerful once bound, replaced. What it verified it
   * records on the namespace's ClusterRole ({@link VERIFIED_ANNOTATION}), which nobody in the namespace
   * can write; the webhook injects pods only while that record matches what is there.
   */
  private async provision(namespace: string): Promise<number> {
    const { rbac, names, log } = this.options;
    const cas = this.cas!;
    const created: string[] = [];
    const repaired: string[] = [];
    const name = impersonatorName(names, namespace);

    const role = await unlessNotFound(rbac.readClusterRole({ name }));
    if (role) this.mustOwn(role, 'ClusterRole', namespace);
    // undefined: a namespace an earlier version of the injector provisioned, which recorded nothing.
    const stamp = role ? readStamp(role.metadata?.annotations) : undefined;

    let policy: AccessPolicy;
    try {
      policy = await this.policyFor(namespace);
    } catch (err) {
      // Fail closed: a policy that cannot be read grants nothing, rather than leaving the last one in force.
      if (err instanceof AccessPolicyError && (await this.deleteOwn('binding', namespace))) log.warn({ namespace }, 'unbound the scoped service account until the access policy is fixed');
      throw err;
    }
    const serviceAccount = await this.applyServiceAccount(namespace, role !== undefined, stamp, created, repaired);
    // The role before the binding, so that a narrower policy is in force before anything is granted.
    // It records the account's uid before the account is bound: only that account is ever the scoped one.
    const applied = await this.applyRole(namespace, policy, role, { ...stamp, serviceAccount });
    if (applied.created) created.push(`ClusterRole ${name}`);
    if (await this.applyBinding(namespace)) created.push(`ClusterRoleBinding ${name}`);
    created.push(...(await this.applyConfigReader(namespace)));

    const configMap = await this.applyConfigMap(namespace, caConfigMapData(cas, policy, this.options.upstreamCa()), stamp, created, repaired);
    const secret = await this.applySecret(namespace, stamp, created, repaired);

    const verified: VerifiedStamp = { serviceAccount, configMap, secret: secret.digest };
    if (applied.role.metadata?.annotations?.[VERIFIED_ANNOTATION] !== stampAnnotation(verified)) {
      await rbac.replaceClusterRole({ name, body: { ...applied.role, metadata: { ...applied.role.metadata, annotations: { ...applied.role.metadata?.annotations, [VERIFIED_ANNOTATION]: stampAnnotation(verified) } } } });
    }

    if (created.length > 0) log.info({ namespace, created, policy: `${policy.mode}, ${policy.access}` }, 'provisioned the namespace');
    if (repaired.length > 0) log.warn({ namespace, repaired }, 'put back what someone changed in the namespace');
    injectorMetrics.repaired(repaired);
    return secret.renewAt;
  }

  /**
   * The scoped ServiceAccount: created; repaired in place when someone changed it (its uid, and so
   * every running sidecar's token, stays); replaced only when it is not the account this installation
   * created. Returns its uid.
   */
  private async applyServiceAccount(namespace: string, provisionedBefore: boolean, stamp: VerifiedStamp | undefined, created: string[], repaired: string[]): Promise<string> {
    const { core, names, log } = this.options;
    const labels = this.labels;
    const what = `ServiceAccount ${names.serviceAccount}`;
    let account = await unlessNotFound(core.readNamespacedServiceAccount({ name: names.serviceAccount, namespace }));
    if (account) {
      const uid = account.metadata?.uid ?? '';
      // An earlier injector recorded no uid: the account it bound is the one pods use (trusted once, then recorded).
      const verified = stamp?.serviceAccount !== undefined ? stamp.serviceAccount === uid : provisionedBefore && stamp === undefined;
      // Someone else's account from before the namespace was provisioned, not claiming to be ours: left alone.
      if (!verified && stamp?.serviceAccount === undefined) this.mustOwn(account, 'ServiceAccount', namespace);
      if (!verified) {
        // Not the account this installation created (a squat, whatever its labels): tokens minted for it
        // must never become scoped tokens, so it goes, and a new account (a new uid) takes its place.
        await core.deleteNamespacedServiceAccount({ name: names.serviceAccount, namespace, body: { preconditions: { uid } } }).catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
        log.warn({ namespace, uid }, 'replaced a ServiceAccount this installation did not create');
        repaired.push(`${what} (not the one this installation created: replaced)`);
        account = undefined;
      } else {
        const drift = serviceAccountDrift(account, labels);
        if (drift.length > 0) {
          account = await core.replaceNamespacedServiceAccount({ name: names.serviceAccount, namespace, body: desiredServiceAccount(account.metadata!, labels) });
          repaired.push(`${what} (${drift.join(', ')}; the same account)`);
        }
      }
    }
    if (!account) {
      // The pod mounts a token of it only into the sidecar; nothing else gets one by default.
      account = await core.createNamespacedServiceAccount({ namespace, body: desiredServiceAccount({ name: names.serviceAccount }, labels) });
      const replaced = repaired.some((r) => r.startsWith(what));
      // Deleted by someone above the namespace: a new account, whose tokens the kubelet must fetch anew.
      if (!replaced && stamp?.serviceAccount !== undefined) repaired.push(`${what} (deleted: a new account; running sidecars need new tokens)`);
      else if (!replaced) created.push(what);
    }
    return account.metadata?.uid ?? '';
  }

  /** The CA ConfigMap, exactly as the injector writes it, whatever was there; returns the digest of its content. */
  private async applyConfigMap(namespace: string, data: Record<string, string>, stamp: VerifiedStamp | undefined, created: string[], repaired: string[]): Promise<string> {
    const { core, names, log } = this.options;
    const labels = this.labels;
    const name = names.caConfigMap;
    let configMap = await unlessNotFound(core.readNamespacedConfigMap({ name, namespace }));
    // One of this name from before the namespace was provisioned, not claiming to be ours: someone else's.
    if (configMap && stamp?.configMap === undefined) this.mustOwn(configMap, 'ConfigMap', namespace);
    const body = (metadata: V1ObjectMeta): V1ConfigMap => ({ metadata: ownMetadataOf(metadata, labels), data });
    if (configMap) {
      const wrong = [...metadataDrift(configMap.metadata, labels), ...(contentDigest(configMap) !== contentDigest({ data }) ? ['content'] : []), ...(configMap.immutable ? ['immutable'] : [])];
      if (wrong.length > 0) {
        const trusted = stamp?.configMap !== undefined && stamp.configMap === contentDigest(configMap);
        if (configMap.immutable) {
          await this.deleteExactly('ConfigMap', namespace, name, configMap.metadata);
          configMap = undefined;
        } else configMap = await core.replaceNamespacedConfigMap({ name, namespace, body: body(configMap.metadata!) });
        // The injector's own change (new CA bundles, a new policy) is an update; anything else a repair.
        if (trusted && !wrong.some((w) => w !== 'content')) log.info({ namespace }, 'updated the CA bundles and access policy');
        else repaired.push(`ConfigMap ${name} (${wrong.join(', ')})`);
      }
    }
    if (!configMap) {
      const deleted = stamp?.configMap !== undefined && !repaired.some((r) => r.startsWith(`ConfigMap ${name}`));
      configMap = await core.createNamespacedConfigMap({ namespace, body: body({ name }) });
      if (deleted) repaired.push(`ConfigMap ${name} (deleted)`);
      else if (!repaired.some((r) => r.startsWith(`ConfigMap ${name}`))) created.push(`ConfigMap ${name}`);
    }
    return contentDigest(configMap);
  }

  /**
   * The sidecars' serving Secret. A key the injector did not write (its content is not the one it
   * recorded) is never kept, even under a certificate its CA signed (copied from another namespace):
   * a new key and certificate are issued.
   */
  private async applySecret(namespace: string, stamp: VerifiedStamp | undefined, created: string[], repaired: string[]): Promise<{ digest: string; renewAt: number }> {
    const { core, names, log } = this.options;
    const labels = this.labels;
    const name = names.servingSecret;
    const what = `Secret ${name}`;
    let secret = await readSecret(core, namespace, name);
    if (secret && stamp?.secret === undefined) this.mustOwn(secret, 'Secret', namespace);
    const wrong: string[] = [];
    if (secret) {
      const trusted = stamp?.secret !== undefined && stamp.secret === contentDigest(secret);
      // No record at all: an earlier injector's namespace (re-issued once, quietly), else a squat.
      if (!trusted && stamp !== undefined) wrong.push(stamp.secret === undefined ? 'not written by this installation' : 'content');
      if (secret.type !== 'kubernetes.io/tls' || secret.immutable) {
        // Neither can change in place.
        wrong.push(secret.type !== 'kubernetes.io/tls' ? `type ${secret.type ?? ''}` : 'immutable');
        await this.deleteExactly('Secret', namespace, name, secret.metadata);
        secret = undefined;
      } else {
        const drift = metadataDrift(secret.metadata, labels);
        wrong.push(...drift);
        secret = { ...secret, metadata: ownMetadataOf(secret.metadata, labels), ...(trusted ? {} : { data: {} }) };
        if (drift.length > 0 && trusted) secret = await core.replaceNamespacedSecret({ name, namespace, body: secret });
      }
    } else if (stamp?.secret !== undefined) wrong.push('deleted');
    const spec = sidecarLeafSpec(namespace, this.options.leafValidityMs, await this.listenerServices(namespace));
    const leaf = await writeLeafSecret({ core, namespace, name, labels }, secret, this.cas!.serving, spec, new Date());
    if (wrong.length > 0) repaired.push(`${what} (${wrong.join(', ')}: a new key and certificate)`);
    else if (!secret) created.push(what);
    else if (leaf.issued) log.info({ namespace, why: leaf.issued }, "renewed the sidecars' serving certificate");
    const written = await core.readNamespacedSecret({ name, namespace });
    return { digest: contentDigest(written), renewAt: leaf.renewAt.getTime() };
  }

  /** Deletes the object only if it is still exactly the one read (uid and resourceVersion). */
  private async deleteExactly(kind: 'ConfigMap' | 'Secret', namespace: string, name: string, metadata: V1ObjectMeta | undefined): Promise<void> {
    const { core } = this.options;
    const body = { preconditions: { uid: metadata?.uid ?? '', resourceVersion: metadata?.resourceVersion ?? '' } };
    const remove = kind === 'ConfigMap' ? core.deleteNamespacedConfigMap({ name, namespace, body }) : core.deleteNamespacedSecret({ name, namespace, body });
    await remove.catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
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
    removed.push(...(await this.deleteConfigReader(namespace)));
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
    const { impersonation, api, log } = this.options;
    if (impersonation.mode !== 'auto') return impersonation.mode;
    if (!this.mode) {
      const detected = await detectImpersonationMode(api);
      if (detected.mode !== this.lastMode) log.info({ mode: detected.mode, because: detected.because }, 'impersonation mode');
      this.mode = this.lastMode = detected.mode;
    }
    return this.mode;
  }

  private async policyFor(namespace: string): Promise<AccessPolicy> {
    const { impersonation, api } = this.options;
    const annotations = this.labelled.get(namespace)?.metadata?.annotations;
    const defaults = { ...impersonation, mode: await this.impersonationMode() };
    // A bad annotation is reported without asking for the served resources; a custom policy does not need them.
    const policy = accessPolicyFor(annotations, defaults, { core: [], groups: [] });
    if (policy.access === 'custom') return policy;
    if (!this.served || Date.now() - this.served.at > SERVED_RESOURCES_TTL_MS) this.served = { at: Date.now(), resources: await servedResources(api) };
    return accessPolicyFor(annotations, defaults, this.served.resources);
  }

  private ownMetadata(namespace: string): V1ObjectMeta {
    return { name: impersonatorName(this.options.names, namespace), labels: { ...this.labels, [FOR_NAMESPACE_LABEL]: namespace } };
  }

  /**
   * Creates or updates the namespace's role to the policy's rules, recording the scoped account's uid
   * on it; returns the role as written and whether it was created.
   */
  private async applyRole(namespace: string, policy: AccessPolicy, role: V1ClusterRole | undefined, stamp: VerifiedStamp): Promise<{ role: V1ClusterRole; created: boolean }> {
    const { rbac, log } = this.options;
    const name = impersonatorName(this.options.names, namespace);
    const rules = impersonatorRules(policy);
    const annotations = { [VERIFIED_ANNOTATION]: stampAnnotation(stamp) };
    if (!role) {
      return { role: await rbac.createClusterRole({ body: { metadata: { ...this.ownMetadata(namespace), annotations }, rules } }), created: true };
    }
    const recorded = readStamp(role.metadata?.annotations);
    if (sameRules(role.rules ?? [], rules) && recorded?.serviceAccount === stamp.serviceAccount) return { role, created: false };
    const written = await rbac.replaceClusterRole({ name, body: { ...role, metadata: { ...role.metadata, annotations: { ...role.metadata?.annotations, ...annotations } }, rules } });
    if (!sameRules(role.rules ?? [], rules)) log.info({ namespace, mode: policy.mode, access: policy.access }, 'updated the impersonator role to the access policy');
    return { role: written, created: false };
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

  /**
   * The Role and RoleBinding (in the injector's namespace) that let the scoped account read the
   * installation configuration the Namespace uses: created, or put back as they must be. Returns what it created or replaced.
   */
  private async applyConfigReader(namespace: string): Promise<string[]> {
    const { rbac, names } = this.options;
    const name = impersonatorName(names, namespace);
    const where = names.installation;
    const named = this.sidecarConfigOf(namespace);
    const role = await unlessNotFound(rbac.readNamespacedRole({ name, namespace: where }));
    if (role) this.mustOwn(role, 'Role', namespace);
    // The Secret named now and those named before (pods admitted then read theirs until recreated);
    // each only while it is an installation configuration: the annotation may name any Secret here,
    // the injector's CA keys included, and the injector must not grant what its caller could not read.
    const granted: string[] = [];
    for (const secret of new Set([named, ...(role?.rules ?? []).flatMap((rule) => rule.resourceNames ?? [])])) {
      if (await this.isInstallationConfig(secret)) granted.push(secret);
    }
    const changed: string[] = [];
    if (granted.length === 0) {
      if (role) changed.push(...(await this.deleteConfigReader(namespace)).map((what) => `${what} removed (no installation configuration to read)`));
      return changed;
    }
    const rules = configReaderRules(granted.sort());
    if (!role) {
      await rbac.createNamespacedRole({ namespace: where, body: { metadata: this.ownMetadata(namespace), rules } });
      changed.push(`Role ${where}/${name}`);
    } else if (!sameRules(role.rules ?? [], rules)) {
      await rbac.replaceNamespacedRole({ name, namespace: where, body: { ...role, rules } });
      changed.push(`Role ${where}/${name} (now for Secrets ${granted.join(', ')})`);
    }
    const subject = serviceAccountSubject(namespace, names.serviceAccount);
    const binding = await unlessNotFound(rbac.readNamespacedRoleBinding({ name, namespace: where }));
    if (binding) {
      this.mustOwn(binding, 'RoleBinding', namespace);
      if (bindsOnly(binding, name, subject, 'Role')) return changed;
      await rbac.deleteNamespacedRoleBinding({ name, namespace: where, body: { preconditions: { resourceVersion: binding.metadata?.resourceVersion ?? '' } } });
    }
    try {
      await rbac.createNamespacedRoleBinding({ namespace: where, body: { metadata: this.ownMetadata(namespace), roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name }, subjects: [subject] } });
      changed.push(`RoleBinding ${where}/${name}`);
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
    return changed;
  }

  /** The installation configuration the namespace uses: its Namespace's annotation, or the injector's default. */
  private sidecarConfigOf(namespace: string): string {
    return this.labelled.get(namespace)?.metadata?.annotations?.[annotationOf('sidecar-config')] ?? this.options.names.sidecarConfig;
  }

  /** The Services the namespace's installation configuration reaches the sidecars' extra listener through (docs/listeners.md). */
  private async listenerServices(namespace: string): Promise<string[]> {
    const secret = await unlessNotFound(this.options.core.readNamespacedSecret({ name: this.sidecarConfigOf(namespace), namespace: this.options.names.installation }));
    return secret ? listenerServicesOf(secretFromObject(secret)) : [];
  }

  /** Whether the Secret (in the injector's namespace) is an installation configuration: it has a sidecar.yaml. */
  private async isInstallationConfig(secret: string): Promise<boolean> {
    const found = await unlessNotFound(this.options.core.readNamespacedSecret({ name: secret, namespace: this.options.names.installation }));
    return found?.data?.[INSTALLATION_FILE] !== undefined;
  }

  private async deleteConfigReader(namespace: string): Promise<string[]> {
    const { rbac, names } = this.options;
    const name = impersonatorName(names, namespace);
    const where = names.installation;
    const removed: string[] = [];
    const binding = await unlessNotFound(rbac.readNamespacedRoleBinding({ name, namespace: where }));
    if (binding && isOwn(binding.metadata?.labels, names.installation)) {
      await unlessNotFound(rbac.deleteNamespacedRoleBinding({ name, namespace: where, body: { preconditions: { resourceVersion: binding.metadata?.resourceVersion ?? '' } } }));
      removed.push(`RoleBinding ${where}/${name}`);
    }
    const role = await unlessNotFound(rbac.readNamespacedRole({ name, namespace: where }));
    if (role && isOwn(role.metadata?.labels, names.installation)) {
      await unlessNotFound(rbac.deleteNamespacedRole({ name, namespace: where, body: { preconditions: { resourceVersion: role.metadata?.resourceVersion ?? '' } } }));
      removed.push(`Role ${where}/${name}`);
    }
    return removed;
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
    this.unfollow?.();
    await this.watching?.stop();
    await this.working;
  }
}


