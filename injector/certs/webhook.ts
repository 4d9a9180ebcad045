// The injector's own side of TLS, as the leader keeps it: the serving certificate in a Secret, and
// the caBundle of the MutatingWebhookConfiguration (or, with cert-manager, the annotation that has
// cert-manager's cainjector keep it).
import { isIP } from 'node:net';
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import type { AdmissionRegistrationV1, CoreV1 } from '../../lib/kube-api/resources.js';
import type { CertificateAndKey } from '../../lib/pki.js';
import { decodeData, encodeData, unlessNotFound } from '../provision/kube.js';
import { renewalTime, trustBundle, type CaSet } from './ca-set.js';
import { TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY } from './feed.js';
import { issueServingLeaf, leafRenewalReason, type LeafSpec } from './leaf.js';

export const CERT_MANAGER_INJECT_ANNOTATION = 'cert-manager.io/inject-ca-from';

export interface WebhookService {
  namespace: string;
  service: string;
  /** More DNS names or IP addresses the API server may use to reach the injector. */
  hosts: readonly string[];
  validityMs: number;
}

/** The names a Service's clients use, as the API server resolves clientConfig.service. */
export function webhookLeafSpec(options: WebhookService): LeafSpec {
  const { service, namespace } = options;
  const dnsNames = [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
  const ipAddresses: string[] = [];
  for (const host of options.hosts) (isIP(host) ? ipAddresses : dnsNames).push(host);
  return { commonName: `${service}.${namespace}.svc`, dnsNames: [...new Set(dnsNames)], ipAddresses: [...new Set(ipAddresses)], validityMs: options.validityMs };
}

export interface TlsSecretRef {
  core: CoreV1;
  namespace: string;
  name: string;
  labels: Record<string, string>;
}

export interface LeafOutcome {
  /** Why a new certificate was issued, if one was. */
  issued?: string;
  renewAt: Date;
}

/** A kubernetes.io/tls Secret's content: the leaf and the bundle that verifies it. */
export function tlsSecretData(leaf: CertificateAndKey, bundle: string): Record<string, string> {
  return { [TLS_CERT_KEY]: leaf.certPem, [TLS_KEY_KEY]: leaf.keyPem, [TLS_CA_KEY]: bundle };
}

/**
 * Keeps a serving certificate from the CA set's active CA in a kubernetes.io/tls Secret, renewed
 * before it expires and re-issued when the CA rotates. `existing` is the Secret as read (undefined: none).
 */
export async function writeLeafSecret(ref: TlsSecretRef, existing: V1Secret | undefined, cas: CaSet, spec: LeafSpec, now: Date): Promise<LeafOutcome> {
  const { core, namespace, name } = ref;
  const data = decodeData(existing?.data);
  const current = { certPem: data[TLS_CERT_KEY], keyPem: data[TLS_KEY_KEY] };
  const reason = leafRenewalReason(current, cas.active, spec, now);
  const bundle = trustBundle(cas);
  if (!reason && data[TLS_CA_KEY] === bundle) return { renewAt: renewalTime(current.certPem!) };
  const leaf = reason ? issueServingLeaf(cas.active, spec, now) : (current as CertificateAndKey);
  const body: V1Secret = {
    ...existing,
    metadata: { ...existing?.metadata, name, namespace, labels: { ...existing?.metadata?.labels, ...ref.labels } },
    type: 'kubernetes.io/tls',
    data: encodeData(tlsSecretData(leaf, bundle)),
  };
  if (existing) await core.replaceNamespacedSecret({ name, namespace, body });
  else await core.createNamespacedSecret({ namespace, body });
  return { issued: reason, renewAt: renewalTime(leaf.certPem) };
}

export function readSecret(core: CoreV1, namespace: string, name: string): Promise<V1Secret | undefined> {
  return unlessNotFound(core.readNamespacedSecret({ name, namespace }));
}

export type BundleOutcome = 'updated' | 'unchanged' | 'missing';

interface JsonPatchOperation {
  op: 'add' | 'test';
  path: string;
  value: unknown;
}

/** The JSON Patch that gives every webhook of the configuration this caBundle; empty when all have it. */
export function caBundlePatch(configuration: V1MutatingWebhookConfiguration, bundlePem: string): JsonPatchOperation[] {
  const wanted = Buffer.from(bundlePem).toString('base64');
  const operations: JsonPatchOperation[] = [];
  (configuration.webhooks ?? []).forEach((webhook, index) => {
    if (webhook.clientConfig.caBundle !== wanted) operations.push({ op: 'add', path: `/webhooks/${index}/clientConfig/caBundle`, value: wanted });
  });
  if (operations.length === 0) return [];
  // The precondition: indexes mean what they meant when the configuration was read.
  return [{ op: 'test', path: '/metadata/resourceVersion', value: configuration.metadata?.resourceVersion }, ...operations];
}

function readConfiguration(admission: AdmissionRegistrationV1, name: string): Promise<V1MutatingWebhookConfiguration | undefined> {
  return unlessNotFound(admission.readMutatingWebhookConfiguration({ name }));
}

/** Sets the caBundle of every webhook in the configuration, writing only when one differs. */
export async function reconcileCaBundle(admission: AdmissionRegistrationV1, name: string, bundlePem: string): Promise<BundleOutcome> {
  const configuration = await readConfiguration(admission, name);
  if (!configuration) return 'missing';
  const patch = caBundlePatch(configuration, bundlePem);
  if (patch.length === 0) return 'unchanged';
  await admission.patchMutatingWebhookConfiguration({ name, body: patch }, 'json');
  return 'updated';
}

/** cert-manager mode: the annotation that has cert-manager's cainjector keep the caBundle. */
export async function reconcileCertManagerAnnotation(admission: AdmissionRegistrationV1, name: string, certificate: string): Promise<BundleOutcome> {
  const configuration = await readConfiguration(admission, name);
  if (!configuration) return 'missing';
  if (configuration.metadata?.annotations?.[CERT_MANAGER_INJECT_ANNOTATION] === certificate) return 'unchanged';
  const patch = { metadata: { annotations: { [CERT_MANAGER_INJECT_ANNOTATION]: certificate } } };
  await admission.patchMutatingWebhookConfiguration({ name, body: patch }, 'merge');
  return 'updated';
}
