// What a labelled namespace holds, as pure values: the names, the ConfigMap's content, the sidecar's
// serving certificate request, and its impersonator role and binding.
import type { RbacV1Subject, V1ClusterRoleBinding } from '@kubernetes/client-node';
import type { LeafSpec } from '../certs/leaf.js';
import { trustBundle, type CaSet } from '../certs/ca-set.js';
import { serialisePolicy, type AccessPolicy } from '../../lib/access-policy.js';
import { ACCESS_POLICY_KEY, IDENTITY_CA_KEY, SERVING_CA_KEY } from './names.js';

export interface ProvisioningNames {
  /** The injector's namespace: it labels what it creates with it, and touches nothing labelled otherwise. */
  installation: string;
  serviceAccount: string;
  servingSecret: string;
  caConfigMap: string;
  /** The prefix of each namespace's impersonator ClusterRole and ClusterRoleBinding: `<prefix>:<namespace>`. */
  impersonatorRole: string;
}

/** The ConfigMap the pod mounts: what the dashboard trusts, what signs people's certificates, and the access policy. */
export function caConfigMapData(cas: { identity: CaSet; serving: CaSet }, policy: AccessPolicy): Record<string, string> {
  return { [SERVING_CA_KEY]: trustBundle(cas.serving), [IDENTITY_CA_KEY]: trustBundle(cas.identity), [ACCESS_POLICY_KEY]: serialisePolicy(policy) };
}

/** The sidecar listens on 127.0.0.1:6443 only; `localhost` and `::1` for clients that resolve it. */
export function sidecarLeafSpec(namespace: string, validityMs: number): LeafSpec {
  return { commonName: `chaperone-sidecar.${namespace}`, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], validityMs };
}

/** The namespace's own ClusterRole and ClusterRoleBinding share this name. */
export function impersonatorName(names: ProvisioningNames, namespace: string): string {
  return `${names.impersonatorRole}:${namespace}`;
}

export function serviceAccountSubject(namespace: string, serviceAccount: string): RbacV1Subject {
  return { kind: 'ServiceAccount', namespace, name: serviceAccount };
}

/** Whether the binding grants exactly the namespace's role to exactly its scoped account. */
export function bindsOnly(binding: V1ClusterRoleBinding, role: string, subject: RbacV1Subject): boolean {
  const subjects = binding.subjects ?? [];
  const only = subjects.length === 1 ? subjects[0]! : undefined;
  return binding.roleRef.kind === 'ClusterRole' && binding.roleRef.name === role && only?.kind === subject.kind && only.namespace === subject.namespace && only.name === subject.name;
}
