// The names and labels of what the controller creates, in labelled namespaces and in its own.
import { INJECT_LABEL } from '../names.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'chaperone-injector';
export const PART_OF_LABEL = 'app.kubernetes.io/part-of';
/** The namespace of the injector installation that provisioned an object: two installations never touch each other's. */
export const PROVISIONED_BY_LABEL = 'chaperone.dev/provisioned-by';

/** The label selector of the namespaces to provision. */
export const INJECT_SELECTOR = `${INJECT_LABEL}=enabled`;

/** Keys of the per-namespace ConfigMap and Secret, as the injected pod mounts them (injector/proxy.ts). */
export { ACCESS_POLICY_KEY, IDENTITY_CA_KEY, SERVING_CA_KEY, UPSTREAM_CA_KEY } from '../proxy.js';

/** On the impersonator ClusterRole and ClusterRoleBinding: the namespace they are for. */
export const FOR_NAMESPACE_LABEL = 'chaperone.dev/namespace';

/** Secrets in the injector's own namespace. */
export const SECRETS = {
  /** The CA that signs the injector's own serving certificate (self-managed mode). */
  webhookCa: 'chaperone-webhook-ca',
  /** The injector's serving certificate (self-managed mode). */
  webhookTls: 'chaperone-webhook-tls',
  /** Signs people's client certificates; its key never leaves the injector's namespace. */
  identityCa: 'chaperone-identity-ca',
  /** Signs the sidecars' serving certificates. */
  servingCa: 'chaperone-serving-ca',
} as const;

export type CaKind = 'webhook' | 'identity' | 'serving';
export const CA_KINDS: readonly CaKind[] = ['webhook', 'identity', 'serving'];

export const CA_SECRET: Readonly<Record<CaKind, string>> = {
  webhook: SECRETS.webhookCa,
  identity: SECRETS.identityCa,
  serving: SECRETS.servingCa,
};

export const CA_COMMON_NAME: Readonly<Record<CaKind, string>> = {
  webhook: 'chaperone-injector-ca',
  identity: 'chaperone-identity-ca',
  serving: 'chaperone-serving-ca',
};

export function ownLabels(installation: string): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [PART_OF_LABEL]: 'chaperone', [PROVISIONED_BY_LABEL]: installation };
}

/** Whether this installation created the object (and may change or delete it). */
export function isOwn(labels: Readonly<Record<string, string>> | undefined, installation: string): boolean {
  return labels?.[MANAGED_BY_LABEL] === MANAGED_BY && labels[PROVISIONED_BY_LABEL] === installation;
}
