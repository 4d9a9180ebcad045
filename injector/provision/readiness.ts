// "Can a pod in this namespace start?" — what the injector asks before it admits a pod into a
// labelled namespace, so that a pod whose service account, certificate or CA bundle is not there yet
// is refused with a message that says what is missing, rather than admitted to fail at start.
import type { CoreV1Api, RbacAuthorizationV1Api, V1ClusterRoleBinding, V1ConfigMap, V1Secret, V1ServiceAccount } from '@kubernetes/client-node';
import { certificateInfo } from '../../lib/pki.js';
import { TLS_CERT_KEY, TLS_KEY_KEY } from '../certs/feed.js';
import { decodeData, unlessNotFound } from './kube.js';
import { IDENTITY_CA_KEY, isOwn, SERVING_CA_KEY } from './names.js';
import { boundNamespaces, type ProvisioningNames } from './objects.js';

export interface ProvisioningStatus {
  ready: boolean;
  /** One entry per missing piece, readable on its own. */
  missing: string[];
}

/** The objects as read; undefined: there is none. */
export interface ObservedProvisioning {
  serviceAccount: V1ServiceAccount | undefined;
  binding: V1ClusterRoleBinding | undefined;
  configMap: V1ConfigMap | undefined;
  secret: V1Secret | undefined;
}

const FOREIGN = 'exists, but this chaperone installation did not create it and leaves it alone';

function certificateProblem(secret: V1Secret, now: Date): string | undefined {
  const data = decodeData(secret.data);
  if (!data[TLS_CERT_KEY] || !data[TLS_KEY_KEY]) return `has no ${TLS_CERT_KEY} or ${TLS_KEY_KEY}`;
  try {
    const { notAfter } = certificateInfo(data[TLS_CERT_KEY]);
    return notAfter.getTime() <= now.getTime() ? `holds a certificate that expired at ${notAfter.toISOString()}` : undefined;
  } catch {
    return `has a ${TLS_CERT_KEY} that is not a certificate`;
  }
}

/** What is missing, judged from the objects as read. */
export function missingPieces(observed: ObservedProvisioning, names: ProvisioningNames, namespace: string, now: Date): string[] {
  const missing: string[] = [];
  const own = (labels: Record<string, string> | undefined) => isOwn(labels, names.installation);
  const { serviceAccount, binding, configMap, secret } = observed;
  if (!serviceAccount) missing.push(`ServiceAccount ${names.serviceAccount}`);
  else if (!own(serviceAccount.metadata?.labels)) missing.push(`ServiceAccount ${names.serviceAccount} (${FOREIGN})`);
  if (!binding) missing.push(`ClusterRoleBinding ${names.impersonatorBinding}`);
  else if (!boundNamespaces(binding.subjects, names.serviceAccount).includes(namespace)) {
    missing.push(`ServiceAccount ${names.serviceAccount} among the subjects of ClusterRoleBinding ${names.impersonatorBinding}`);
  }
  if (!configMap) missing.push(`ConfigMap ${names.caConfigMap}`);
  else if (!own(configMap.metadata?.labels)) missing.push(`ConfigMap ${names.caConfigMap} (${FOREIGN})`);
  else {
    const absent = [SERVING_CA_KEY, IDENTITY_CA_KEY].filter((key) => !configMap.data?.[key]);
    if (absent.length > 0) missing.push(`ConfigMap ${names.caConfigMap} key ${absent.join(' and ')}`);
  }
  if (!secret) missing.push(`Secret ${names.servingSecret}`);
  else if (!own(secret.metadata?.labels)) missing.push(`Secret ${names.servingSecret} (${FOREIGN})`);
  else {
    const problem = certificateProblem(secret, now);
    if (problem) missing.push(`Secret ${names.servingSecret} (it ${problem})`);
  }
  return missing;
}

export interface ProvisioningApis {
  core: CoreV1Api;
  rbac: RbacAuthorizationV1Api;
}

/** Reads what the namespace holds (four GETs by name, in parallel) and says what is missing. */
export async function checkProvisioning(apis: ProvisioningApis, names: ProvisioningNames, namespace: string, now = new Date()): Promise<ProvisioningStatus> {
  const { core, rbac } = apis;
  const [serviceAccount, binding, configMap, secret] = await Promise.all([
    unlessNotFound(core.readNamespacedServiceAccount({ name: names.serviceAccount, namespace })),
    unlessNotFound(rbac.readClusterRoleBinding({ name: names.impersonatorBinding })),
    unlessNotFound(core.readNamespacedConfigMap({ name: names.caConfigMap, namespace })),
    unlessNotFound(core.readNamespacedSecret({ name: names.servingSecret, namespace })),
  ]);
  const missing = missingPieces({ serviceAccount, binding, configMap, secret }, names, namespace, now);
  return { ready: missing.length === 0, missing };
}

/** The admission message for a pod refused because its namespace is not provisioned yet. */
export function notProvisionedMessage(namespace: string, status: ProvisioningStatus): string {
  return (
    `chaperone cannot inject this pod yet: namespace ${namespace} is labelled for injection but not ready; missing: ${status.missing.join('; ')}. ` +
    'The injector provisions a labelled namespace within seconds; if this persists, see docs/operations.md#troubleshooting'
  );
}
