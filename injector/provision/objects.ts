// What a labelled namespace holds, as pure values: the names, the ConfigMap's content, the sidecar's
// serving certificate request, and the subjects of the shared ClusterRoleBinding.
import type { RbacV1Subject } from '@kubernetes/client-node';
import type { LeafSpec } from '../certs/leaf.js';
import { trustBundle, type CaSet } from '../certs/ca-set.js';
import { IDENTITY_CA_KEY, SERVING_CA_KEY } from './names.js';

export interface ProvisioningNames {
  /** The injector's namespace: it labels what it creates with it, and touches nothing labelled otherwise. */
  installation: string;
  serviceAccount: string;
  servingSecret: string;
  caConfigMap: string;
  /** The impersonator ClusterRole, and the one ClusterRoleBinding that binds every scoped service account to it. */
  impersonatorRole: string;
  impersonatorBinding: string;
}

/** The ConfigMap the pod mounts: what the dashboard trusts, and what signs people's certificates. */
export function caConfigMapData(cas: { identity: CaSet; serving: CaSet }): Record<string, string> {
  return { [SERVING_CA_KEY]: trustBundle(cas.serving), [IDENTITY_CA_KEY]: trustBundle(cas.identity) };
}

/** The sidecar listens on 127.0.0.1:6443 only; `localhost` and `::1` for clients that resolve it. */
export function sidecarLeafSpec(namespace: string, validityMs: number): LeafSpec {
  return { commonName: `chaperone-sidecar.${namespace}`, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], validityMs };
}

export function serviceAccountSubject(namespace: string, serviceAccount: string): RbacV1Subject {
  return { kind: 'ServiceAccount', namespace, name: serviceAccount };
}

const sameSubject = (a: RbacV1Subject, b: RbacV1Subject) => a.kind === b.kind && a.namespace === b.namespace && a.name === b.name;

/** The subjects with this one added (sorted, so that the same set is always written the same way). */
export function withSubject(subjects: readonly RbacV1Subject[], subject: RbacV1Subject): RbacV1Subject[] {
  const all = subjects.some((s) => sameSubject(s, subject)) ? [...subjects] : [...subjects, subject];
  return all.sort((a, b) => `${a.kind}/${a.namespace ?? ''}/${a.name}`.localeCompare(`${b.kind}/${b.namespace ?? ''}/${b.name}`));
}

export function withoutSubject(subjects: readonly RbacV1Subject[], subject: RbacV1Subject): RbacV1Subject[] {
  return subjects.filter((s) => !sameSubject(s, subject));
}

/** The namespaces whose scoped service account the binding names. */
export function boundNamespaces(subjects: readonly RbacV1Subject[] | undefined, serviceAccount: string): string[] {
  return (subjects ?? []).filter((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount && s.namespace).map((s) => s.namespace!);
}

export function sameSubjects(a: readonly RbacV1Subject[] | undefined, b: readonly RbacV1Subject[]): boolean {
  return (a ?? []).length === b.length && b.every((subject, i) => sameSubject(subject, a![i]!));
}
