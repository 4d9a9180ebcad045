// What a labelled namespace holds, as pure values: the names, the ConfigMap's content, the sidecar's
// serving certificate request, its impersonator role and binding, and the record of what the injector
// verified there (on the role, where nobody in the namespace can write).
import { createHash } from 'node:crypto';
import type { RbacV1Subject, V1ClusterRoleBinding, V1ObjectMeta, V1PolicyRule, V1RoleBinding, V1ServiceAccount } from '@kubernetes/client-node';
import type { LeafSpec } from '../certs/leaf.js';
import { trustBundle, type CaSet } from '../certs/ca-set.js';
import { serialisePolicy, type AccessPolicy } from '../../lib/access-policy.js';
import { serviceDnsNames } from '../../lib/sidecar-config/listener.js';
import { ACCESS_POLICY_KEY, IDENTITY_CA_KEY, SERVING_CA_KEY, UPSTREAM_CA_KEY } from './names.js';

export interface ProvisioningNames {
  /** The injector's namespace: it labels what it creates with it, and touches nothing labelled otherwise. */
  installation: string;
  serviceAccount: string;
  servingSecret: string;
  caConfigMap: string;
  /** The prefix of each namespace's impersonator ClusterRole and ClusterRoleBinding: `<prefix>:<namespace>`. */
  impersonatorRole: string;
  /** The installation configuration's Secret (in the injector's namespace) unless the Namespace's annotation names another. */
  sidecarConfig: string;
}

/**
 * The rule that lets a namespace's scoped account read its installation configurations: in the
 * injector's namespace (a Role there, bound to the account by a RoleBinding of the same name), those
 * Secrets, nothing else.
 */
export function configReaderRules(secrets: string[]): V1PolicyRule[] {
  return [{ apiGroups: [''], resources: ['secrets'], resourceNames: secrets, verbs: ['get', 'list', 'watch'] }];
}

/**
 * The ConfigMap the pod mounts: what the dashboard trusts, what signs people's certificates, the access
 * policy, and the cluster's CA the sidecar verifies the API server with (`upstreamCa`: the injector's
 * own; left out while it is not known, which the readiness check reports).
 */
export function caConfigMapData(cas: { identity: CaSet; serving: CaSet }, policy: AccessPolicy, upstreamCa: string | undefined): Record<string, string> {
  return {
    [SERVING_CA_KEY]: trustBundle(cas.serving),
    [IDENTITY_CA_KEY]: trustBundle(cas.identity),
    [ACCESS_POLICY_KEY]: serialisePolicy(policy),
    ...(upstreamCa ? { [UPSTREAM_CA_KEY]: upstreamCa } : {}),
  };
}

/**
 * The sidecar listens on 127.0.0.1:6443 (`localhost` and `::1` for clients that resolve it), and on
 * the installation's extra listener, reached through these Services of the namespace: their names in
 * the namespace only (docs/listeners.md says why).
 */
export function sidecarLeafSpec(namespace: string, validityMs: number, listenerServices: readonly string[] = []): LeafSpec {
  return { commonName: `chaperone-sidecar.${namespace}`, dnsNames: ['localhost', ...serviceDnsNames(listenerServices, namespace)], ipAddresses: ['127.0.0.1', '::1'], validityMs };
}

/** The namespace's own ClusterRole and ClusterRoleBinding share this name. */
export function impersonatorName(names: ProvisioningNames, namespace: string): string {
  return `${names.impersonatorRole}:${namespace}`;
}

export function serviceAccountSubject(namespace: string, serviceAccount: string): RbacV1Subject {
  return { kind: 'ServiceAccount', namespace, name: serviceAccount };
}

/** Whether the binding grants exactly the namespace's role to exactly its scoped account. */
export function bindsOnly(binding: V1ClusterRoleBinding | V1RoleBinding, role: string, subject: RbacV1Subject, roleKind: 'ClusterRole' | 'Role' = 'ClusterRole'): boolean {
  const subjects = binding.subjects ?? [];
  const only = subjects.length === 1 ? subjects[0]! : undefined;
  return binding.roleRef.kind === roleKind && binding.roleRef.name === role && only?.kind === subject.kind && only.namespace === subject.namespace && only.name === subject.name;
}

/**
 * On the namespace's impersonator ClusterRole: what the injector created or checked in the namespace
 * last (JSON, {@link VerifiedStamp}). A ClusterRole is out of reach of everyone in the namespace, so
 * this says which ServiceAccount is the injector's (its uid) and what the ConfigMap and Secret held
 * when the injector last wrote or checked them, and the webhook admits pods only while all three
 * still match (readiness.ts).
 */
export const VERIFIED_ANNOTATION = 'chaperone.dev/verified';

export interface VerifiedStamp {
  /** The uid of the ServiceAccount the injector created: only its tokens are the scoped ones. */
  serviceAccount?: string;
  /** contentDigest of the CA ConfigMap as the injector wrote it. */
  configMap?: string;
  /** contentDigest of the serving Secret as the injector wrote it. */
  secret?: string;
}

/** What a ConfigMap or Secret gives a pod that mounts it: its type and every key's value. */
export function contentDigest(object: { type?: string; data?: Record<string, string>; binaryData?: Record<string, string> } | undefined): string {
  const entries = (map: Record<string, string> | undefined) => Object.entries(map ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const canonical = JSON.stringify([object?.type ?? '', entries(object?.data), entries(object?.binaryData)]);
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}

/** The stamp on a role; undefined when there is none (a namespace an earlier injector provisioned), {} when it is unreadable. */
export function readStamp(annotations: Record<string, string> | undefined): VerifiedStamp | undefined {
  const text = annotations?.[VERIFIED_ANNOTATION];
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const field = (key: keyof VerifiedStamp) => (typeof value[key] === 'string' ? { [key]: value[key] } : {});
    return { ...field('serviceAccount'), ...field('configMap'), ...field('secret') };
  } catch {
    return {};
  }
}

export function stampAnnotation(stamp: VerifiedStamp): string {
  return JSON.stringify({ serviceAccount: stamp.serviceAccount, configMap: stamp.configMap, secret: stamp.secret });
}

/**
 * Metadata exactly as the injector writes it: its labels, nothing else that could change what the
 * object does (no annotations, owners, whose deletion would take it along, or finalizers, which would
 * keep it from going).
 */
export function ownMetadataOf(metadata: V1ObjectMeta | undefined, labels: Record<string, string>): V1ObjectMeta {
  return { name: metadata?.name, namespace: metadata?.namespace, uid: metadata?.uid, resourceVersion: metadata?.resourceVersion, labels };
}

/** What about the object's metadata is not as the injector writes it (empty: nothing). */
export function metadataDrift(metadata: V1ObjectMeta | undefined, labels: Record<string, string>): string[] {
  const drift: string[] = [];
  const theirs = metadata?.labels ?? {};
  if (Object.keys(theirs).length !== Object.keys(labels).length || Object.entries(labels).some(([key, value]) => theirs[key] !== value)) drift.push('labels');
  if (Object.keys(metadata?.annotations ?? {}).length > 0) drift.push('annotations');
  if ((metadata?.ownerReferences ?? []).length > 0) drift.push('owner references');
  if ((metadata?.finalizers ?? []).length > 0) drift.push('finalizers');
  return drift;
}

/** The scoped ServiceAccount as the injector creates it: no token for pods that do not ask, no Secrets of its own. */
export function desiredServiceAccount(metadata: V1ObjectMeta, labels: Record<string, string>): V1ServiceAccount {
  return { metadata: ownMetadataOf(metadata, labels), automountServiceAccountToken: false };
}

/** What about the ServiceAccount is not as the injector writes it (empty: nothing); repaired in place, keeping its uid. */
export function serviceAccountDrift(account: V1ServiceAccount, labels: Record<string, string>): string[] {
  const drift = metadataDrift(account.metadata, labels);
  if (account.automountServiceAccountToken !== false) drift.push('automountServiceAccountToken');
  if ((account.secrets ?? []).length > 0) drift.push('secrets');
  if ((account.imagePullSecrets ?? []).length > 0) drift.push('imagePullSecrets');
  return drift;
}
