// What an admission decision reads, kept by watches (informer.ts) on every replica, so that an
// AdmissionReview makes no API call: the namespaces' chaperone.dev labels and annotations, what each
// labelled namespace holds (the provisioning check), the installation configurations and the
// CSIDrivers. The webhook serves once every cache has listed (startInjector waits for synced()).
//
// When a cache cannot answer (not listed yet, or its watch failed a while ago: informer.ts) the pod
// is refused, saying why; a namespace none of them has seen yet (created a moment ago) too: the
// injector never guesses. A change reaches the caches as fast as the API server's own watches carry
// it (milliseconds); a pod created in that instant is judged by the state just before it, as it was
// when each admission read the API server (the read could race the write just the same).
import type { KubernetesObject, V1ClusterRole, V1ClusterRoleBinding, V1ConfigMap, V1CSIDriver, V1Namespace, V1Secret, V1ServiceAccount } from '@kubernetes/client-node';
import type { KubeApi, ObjectList } from '../lib/kube-api/client.js';
import type { Logger } from '../lib/log.js';
import { certificateInfo } from '../lib/pki.js';
import { TLS_CERT_KEY } from './certs/feed.js';
import { apiAudiencesOf, type CsiTokenLookup } from './csi-tokens.js';
import { Denial } from './denial.js';
import { Informer } from './informer.js';
import { installationConfigsFrom, type InstallationConfigs } from './installation-config.js';
import { ANNOTATION_PREFIX } from './names.js';
import { decodeData } from './provision/kube.js';
import { impersonatorName, type ProvisioningNames } from './provision/objects.js';
import { missingPieces, type ProvisioningStatus } from './provision/readiness.js';
import type { NamespaceLabels, NamespaceMetadata, Provisioning } from './review.js';

/** How long an admission waits for a cache that cannot answer to list again: well within the webhook's timeoutSeconds (manifests/base). */
export const CACHE_WAIT_MS = 2000;

/** What an admission reads, each from a cache. */
export interface AdmissionLookups {
  namespaceLabels: NamespaceLabels;
  provisioning: Provisioning;
  installationConfigs: InstallationConfigs;
  csiTokens: CsiTokenLookup;
}

/** Only what chaperone reads: its own labels and annotations (a namespace can carry kilobytes of others). */
function ownMetadata(namespace: V1Namespace): NamespaceMetadata {
  const own = (map: Record<string, string> | undefined) => Object.fromEntries(Object.entries(map ?? {}).filter(([key]) => key.startsWith(ANNOTATION_PREFIX)));
  return { labels: own(namespace.metadata?.labels), annotations: own(namespace.metadata?.annotations) };
}

/** The object without its managedFields, which no decision reads and which can be most of its size. */
function trimmed<T extends KubernetesObject>(object: T): T {
  if (!object.metadata?.managedFields) return object;
  return { ...object, metadata: { ...object.metadata, managedFields: undefined } };
}

/** When the serving certificate in the Secret expires (ms), undefined if it holds none that parses. */
function expiryOf(secret: V1Secret | undefined): number | undefined {
  const pem = decodeData(secret?.data)[TLS_CERT_KEY];
  if (!pem) return undefined;
  try {
    return certificateInfo(pem).notAfter.getTime();
  } catch {
    return undefined;
  }
}

export type ProvisionedListener = (namespace: string, clusterScoped: boolean) => void;

/** What the cache does with each informer, whatever it holds. */
type AnyInformer = Pick<Informer<KubernetesObject, unknown>, 'start' | 'synced' | 'staleness' | 'current' | 'onChange' | 'stop'>;

export interface AdmissionCacheOptions {
  api: KubeApi;
  names: ProvisioningNames;
  log: Logger;
}

export class AdmissionCache implements AdmissionLookups {
  private readonly namespaces: Informer<V1Namespace, NamespaceMetadata>;
  private readonly serviceAccounts: Informer<V1ServiceAccount>;
  private readonly configMaps: Informer<V1ConfigMap>;
  private readonly servingSecrets: Informer<V1Secret>;
  private readonly roles: Informer<V1ClusterRole>;
  private readonly bindings: Informer<V1ClusterRoleBinding>;
  private readonly installationSecrets: Informer<V1Secret>;
  private readonly csiDrivers: Informer<V1CSIDriver>;
  private readonly provisioningCaches: AnyInformer[];
  private readonly all: AnyInformer[];
  /** The provisioning status by namespace, until one of its objects changes (or its certificate expires). */
  private readonly statuses = new Map<string, { status: ProvisioningStatus; until: number }>();

  constructor(private readonly options: AdmissionCacheOptions) {
    const { api, names, log } = options;
    const informer = <T extends KubernetesObject, V = T>(what: string, path: string, keep: (object: T) => V | undefined, selectors: { fieldSelector?: string } = {}) => {
      return new Informer<T, V>({
        api,
        path,
        ...selectors,
        list: async () => {
          const list = await api.get<ObjectList<T>>(path, selectors);
          if (!list) throw new Error(`the API server serves no ${path}`);
          return list;
        },
        keep,
        what,
        log,
      });
    };
    const byName = (name: string) => ({ fieldSelector: `metadata.name=${name}` });
    const impersonatorPrefix = impersonatorName(names, '');
    const impersonators = <T extends KubernetesObject>(object: T) => (object.metadata?.name?.startsWith(impersonatorPrefix) ? trimmed(object) : undefined);
    this.namespaces = informer('the namespaces', '/api/v1/namespaces', ownMetadata);
    this.serviceAccounts = informer(`the ServiceAccounts ${names.serviceAccount}`, '/api/v1/serviceaccounts', trimmed, byName(names.serviceAccount));
    this.configMaps = informer(`the ConfigMaps ${names.caConfigMap}`, '/api/v1/configmaps', trimmed, byName(names.caConfigMap));
    this.servingSecrets = informer(`the Secrets ${names.servingSecret}`, '/api/v1/secrets', trimmed, byName(names.servingSecret));
    // Every ClusterRole and binding, not only this installation's: one of the same name that it did not create is reported as such.
    this.roles = informer(`the ClusterRoles ${impersonatorPrefix}*`, '/apis/rbac.authorization.k8s.io/v1/clusterroles', impersonators);
    this.bindings = informer(`the ClusterRoleBindings ${impersonatorPrefix}*`, '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', impersonators);
    this.installationSecrets = informer(`the Secrets in ${names.installation}`, `/api/v1/namespaces/${encodeURIComponent(names.installation)}/secrets`, trimmed);
    this.csiDrivers = informer('the CSIDrivers', '/apis/storage.k8s.io/v1/csidrivers', trimmed);
    const provisioning: AnyInformer[] = [this.namespaces, this.serviceAccounts, this.configMaps, this.servingSecrets, this.roles, this.bindings];
    this.provisioningCaches = provisioning;
    this.all = [...provisioning, this.installationSecrets, this.csiDrivers];
    // Keys are namespace/name; the cluster-scoped roles and bindings say their namespace in their name.
    const namespaceOf = (key: string) => {
      const [namespace, name] = key.split('/', 2) as [string, string];
      if (namespace !== '') return namespace;
      return name.startsWith(impersonatorPrefix) ? name.slice(impersonatorPrefix.length) : name;
    };
    for (const cache of provisioning) cache.onChange((key) => this.statuses.delete(namespaceOf(key)));
    for (const cache of [this.serviceAccounts, this.configMaps, this.servingSecrets]) cache.onChange((key) => this.emitProvisioned(namespaceOf(key), false));
    for (const cache of [this.roles, this.bindings]) cache.onChange((key) => this.emitProvisioned(namespaceOf(key), true));
  }

  private readonly provisionedListeners = new Set<ProvisionedListener>();

  /**
   * The Secrets of the injector's namespace as they are now, and then each that changes (undefined:
   * it went): the leader checks the installation configurations from the same watch its webhook reads.
   */
  followInstallationSecrets(listener: (name: string, secret: V1Secret | undefined) => void): () => void {
    for (const secret of [...this.installationSecrets.values()]) listener(secret.metadata!.name!, secret);
    return this.installationSecrets.onChange((key) => {
      const name = key.slice(key.indexOf('/') + 1);
      listener(name, this.installationSecrets.get(name, this.options.names.installation));
    });
  }

  /**
   * Every change of an object of a namespace's provisioning (its ServiceAccount, ConfigMap or Secret;
   * its ClusterRole or ClusterRoleBinding: clusterScoped), by namespace: the reconciler puts back what
   * someone changed from the same watches, rather than keeping watches of its own.
   */
  onProvisionedChange(listener: ProvisionedListener): () => void {
    this.provisionedListeners.add(listener);
    return () => this.provisionedListeners.delete(listener);
  }

  private emitProvisioned(namespace: string, clusterScoped: boolean): void {
    for (const listener of this.provisionedListeners) listener(namespace, clusterScoped);
  }

  start(): void {
    for (const cache of this.all) cache.start();
  }

  /** Resolves once every cache has listed. */
  async synced(): Promise<void> {
    await Promise.all(this.all.map((cache) => cache.synced()));
  }

  /** Why the webhook cannot answer from these caches right now; undefined when it can. */
  staleness(): string | undefined {
    return this.all.map((cache) => cache.staleness()).find((why) => why !== undefined);
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((cache) => cache.stop()));
  }

  readonly namespaceLabels: NamespaceLabels = async (name) => {
    await this.namespaces.current(CACHE_WAIT_MS);
    const metadata = this.namespaces.get(name);
    if (!metadata) {
      throw new Denial('ServiceUnavailable', `chaperone has not seen namespace ${name} yet (created a moment ago?): it refuses its pods until it has; retry`);
    }
    return metadata;
  };

  readonly provisioning: Provisioning = async (namespace) => {
    const { names } = this.options;
    await Promise.all(this.provisioningCaches.map((cache) => cache.current(CACHE_WAIT_MS)));
    const now = Date.now();
    const known = this.statuses.get(namespace);
    if (known && now < known.until) return known.status;
    const secret = this.servingSecrets.get(names.servingSecret, namespace);
    const rbacName = impersonatorName(names, namespace);
    const missing = missingPieces(
      {
        serviceAccount: this.serviceAccounts.get(names.serviceAccount, namespace),
        role: this.roles.get(rbacName),
        binding: this.bindings.get(rbacName),
        configMap: this.configMaps.get(names.caConfigMap, namespace),
        secret,
        annotations: this.namespaces.get(namespace)?.annotations,
      },
      names,
      namespace,
      new Date(now),
    );
    const status = { ready: missing.length === 0, missing };
    this.statuses.set(namespace, { status, until: expiryOf(secret) ?? Number.POSITIVE_INFINITY });
    return status;
  };

  readonly installationConfigs: InstallationConfigs = installationConfigsFrom(async (name) => {
    await this.installationSecrets.current(CACHE_WAIT_MS);
    return this.installationSecrets.get(name, this.options.names.installation);
  });

  readonly csiTokens: CsiTokenLookup = async () => {
    await this.csiDrivers.current(CACHE_WAIT_MS);
    return { drivers: [...this.csiDrivers.values()], apiAudiences: await apiAudiencesOf(this.options.api.connection) };
  };
}
