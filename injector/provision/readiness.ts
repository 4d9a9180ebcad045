// "Can a pod in this namespace start?" — what the injector asks before it admits a pod into a
// labelled namespace, so that a pod whose service account, certificate or CA bundle is not there yet
// is refused with a message that says what is missing, rather than admitted to fail at start.
import type { V1ClusterRole, V1ClusterRoleBinding, V1ConfigMap, V1Namespace, V1Secret, V1ServiceAccount } from '@kubernetes/client-node';
import type { KubeReader } from '../../lib/kube-api/client.js';
import { parsePolicy } from '../../lib/access-policy.js';
import { certificateInfo } from '../../lib/pki.js';
import { TLS_CERT_KEY, TLS_KEY_KEY } from '../certs/feed.js';
import { accessPolicyFor, AccessPolicyError } from './access.js';
import { decodeData } from './kube.js';
import { ACCESS_POLICY_KEY, IDENTITY_CA_KEY, isOwn, SERVING_CA_KEY, UPSTREAM_CA_KEY } from './names.js';
import { bindsOnly, contentDigest, impersonatorName, readStamp, serviceAccountSubject, VERIFIED_ANNOTATION, type ProvisioningNames } from './objects.js';

export interface ProvisioningStatus {
  ready: boolean;
  /** One entry per missing piece, readable on its own. */
  missing: string[];
}

/** The objects as read; undefined: there is none. */
export interface ObservedProvisioning {
  serviceAccount: V1ServiceAccount | undefined;
  role: V1ClusterRole | undefined;
  binding: V1ClusterRoleBinding | undefined;
  configMap: V1ConfigMap | undefined;
  secret: V1Secret | undefined;
  /** The namespace's annotations, whose access policy may be the thing that is wrong. */
  annotations?: Record<string, string> | undefined;
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

function accessPolicyProblem(annotations: Record<string, string> | undefined): string | undefined {
  try {
    // Only whether the annotations make a policy: the mode and served resources do not change that.
    accessPolicyFor(annotations, { mode: 'classic', access: 'dashboard', groups: [], extras: [] }, { core: [], groups: [] });
    return undefined;
  } catch (err) {
    if (err instanceof AccessPolicyError) return `a valid access policy: ${err.message}`;
    throw err;
  }
}

/** What is missing, judged from the objects as read. */
export function missingPieces(observed: ObservedProvisioning, names: ProvisioningNames, namespace: string, now: Date): string[] {
  const missing: string[] = [];
  const own = (labels: Record<string, string> | undefined) => isOwn(labels, names.installation);
  const { serviceAccount, role, binding, configMap, secret } = observed;
  const rbacName = impersonatorName(names, namespace);
  const policyProblem = accessPolicyProblem(observed.annotations);
  if (policyProblem) missing.push(policyProblem);
  if (!serviceAccount) missing.push(`ServiceAccount ${names.serviceAccount}`);
  else if (!own(serviceAccount.metadata?.labels)) missing.push(`ServiceAccount ${names.serviceAccount} (${FOREIGN})`);
  if (!role) missing.push(`ClusterRole ${rbacName}`);
  else if (!own(role.metadata?.labels)) missing.push(`ClusterRole ${rbacName} (${FOREIGN})`);
  if (!binding) missing.push(`ClusterRoleBinding ${rbacName}`);
  else if (!own(binding.metadata?.labels)) missing.push(`ClusterRoleBinding ${rbacName} (${FOREIGN})`);
  else if (!bindsOnly(binding, rbacName, serviceAccountSubject(namespace, names.serviceAccount))) {
    missing.push(`ClusterRoleBinding ${rbacName} binding ClusterRole ${rbacName} to ServiceAccount ${names.serviceAccount} alone`);
  }
  if (!configMap) missing.push(`ConfigMap ${names.caConfigMap}`);
  else if (!own(configMap.metadata?.labels)) missing.push(`ConfigMap ${names.caConfigMap} (${FOREIGN})`);
  else {
    const absent = [SERVING_CA_KEY, IDENTITY_CA_KEY, ACCESS_POLICY_KEY, UPSTREAM_CA_KEY].filter((key) => !configMap.data?.[key]);
    if (absent.length > 0) missing.push(`ConfigMap ${names.caConfigMap} key ${absent.join(' and ')}`);
    else {
      try {
        parsePolicy(configMap.data![ACCESS_POLICY_KEY]!, `ConfigMap ${names.caConfigMap} key ${ACCESS_POLICY_KEY}`);
      } catch (err) {
        missing.push((err as Error).message);
      }
    }
  }
  if (!secret) missing.push(`Secret ${names.servingSecret}`);
  else if (!own(secret.metadata?.labels)) missing.push(`Secret ${names.servingSecret} (${FOREIGN})`);
  else {
    const problem = certificateProblem(secret, now);
    if (problem) missing.push(`Secret ${names.servingSecret} (it ${problem})`);
  }
  if (missing.length === 0 && role) missing.push(...unverified(observed, role, names, rbacName));
  return missing;
}

/**
 * What is there but not what the injector wrote or checked, by the record on the namespace's role
 * (objects.ts, VERIFIED_ANNOTATION): a ServiceAccount someone else created (its tokens are not the
 * scoped ones), a CA bundle, access policy or serving key someone changed. A pod is not injected until
 * the injector has put them back, within seconds.
 */
function unverified(observed: ObservedProvisioning, role: V1ClusterRole, names: ProvisioningNames, rbacName: string): string[] {
  const stamp = readStamp(role.metadata?.annotations);
  if (!stamp) return [`ClusterRole ${rbacName} recording what the injector verified in the namespace (${VERIFIED_ANNOTATION}): it has not verified it yet`];
  const problems: string[] = [];
  const restoring = 'the injector is putting it back';
  if (stamp.serviceAccount !== observed.serviceAccount?.metadata?.uid) problems.push(`ServiceAccount ${names.serviceAccount} (not the account the injector created; ${restoring})`);
  if (stamp.configMap !== contentDigest(observed.configMap)) problems.push(`ConfigMap ${names.caConfigMap} (its content is not what the injector wrote; ${restoring})`);
  if (stamp.secret !== contentDigest(observed.secret)) problems.push(`Secret ${names.servingSecret} (its content is not what the injector wrote; ${restoring})`);
  return problems;
}

/** Reads the namespace and what it holds (six GETs by name, in parallel) and says what is missing. */
export async function checkProvisioning(reader: KubeReader, names: ProvisioningNames, namespace: string, now = new Date()): Promise<ProvisioningStatus> {
  const rbacName = encodeURIComponent(impersonatorName(names, namespace));
  const ns = `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
  const rbac = '/apis/rbac.authorization.k8s.io/v1';
  const [namespaceObject, serviceAccount, role, binding, configMap, secret] = await Promise.all([
    reader.get<V1Namespace>(ns),
    reader.get<V1ServiceAccount>(`${ns}/serviceaccounts/${encodeURIComponent(names.serviceAccount)}`),
    reader.get<V1ClusterRole>(`${rbac}/clusterroles/${rbacName}`),
    reader.get<V1ClusterRoleBinding>(`${rbac}/clusterrolebindings/${rbacName}`),
    reader.get<V1ConfigMap>(`${ns}/configmaps/${encodeURIComponent(names.caConfigMap)}`),
    reader.get<V1Secret>(`${ns}/secrets/${encodeURIComponent(names.servingSecret)}`),
  ]);
  const missing = missingPieces({ serviceAccount, role, binding, configMap, secret, annotations: namespaceObject?.metadata?.annotations }, names, namespace, now);
  return { ready: missing.length === 0, missing };
}

/** The admission message for a pod refused because its namespace is not provisioned yet. */
export function notProvisionedMessage(namespace: string, status: ProvisioningStatus): string {
  return (
    `chaperone cannot inject this pod yet: namespace ${namespace} is labelled for injection but not ready; missing: ${status.missing.join('; ')}. ` +
    'The injector provisions a labelled namespace within seconds; if this persists, see docs/operations.md#troubleshooting'
  );
}
