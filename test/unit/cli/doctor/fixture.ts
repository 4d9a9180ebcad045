// The facts of a healthy namespace and pod, as the doctor's reader would gather them from a cluster
// where everything is in place: the shipped webhook configuration, real certificates, the injector's
// own injected pod. Each test breaks one thing.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import type { V1ContainerStatus, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { serialisePolicy } from '../../../../lib/access-policy.js';
import { createCA, issueCertificate, type CertificateAndKey } from '../../../../lib/pki.js';
import { loadInjectorConfig } from '../../../../injector/config.js';
import { injectPod } from '../../../../injector/mutate.js';
import { encodeData } from '../../../../injector/provision/kube.js';
import { ownLabels } from '../../../../injector/provision/names.js';
import { resolveSettings } from '../../../../injector/settings.js';
import { accessQuestions } from '../../../../cli/doctor/access.js';
import { absent, found, type DoctorFacts } from '../../../../cli/doctor/facts.js';
import type { Finding } from '../../../../cli/doctor/findings.js';
import { installationOf } from '../../../../cli/doctor/read.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const NAMESPACE = 'team-a';
export const POD = 'dashboard';
const HOUR = 3600;

export const cas = {
  serving: createCA({ commonName: 'chaperone-serving-ca' }),
  identity: createCA({ commonName: 'chaperone-identity-ca' }),
  webhook: createCA({ commonName: 'chaperone-injector-ca' }),
  other: createCA({ commonName: 'someone-else' }),
  expired: createCA({ commonName: 'expired', notBefore: new Date(Date.now() - 48 * HOUR * 1000), validitySeconds: -HOUR }),
};

export function servingCertificate(overrides: { ca?: CertificateAndKey; ipAddresses?: string[]; notBefore?: Date; validitySeconds?: number } = {}): CertificateAndKey {
  return issueCertificate(overrides.ca ?? cas.serving, {
    commonName: `chaperone-sidecar.${NAMESPACE}`,
    usage: 'server',
    dnsNames: ['localhost'],
    ipAddresses: overrides.ipAddresses ?? ['127.0.0.1', '::1'],
    validitySeconds: overrides.validitySeconds ?? 720 * HOUR,
    ...(overrides.notBefore ? { notBefore: overrides.notBefore } : {}),
  });
}

const healthyServing = servingCertificate();

export function tlsData(cert: CertificateAndKey): Record<string, string> {
  return encodeData({ 'tls.crt': cert.certPem, 'tls.key': cert.keyPem, 'ca.crt': cas.serving.certPem });
}

const config = loadInjectorConfig([], {});

export function injectedPod(labels: Record<string, string> = {}): V1Pod {
  const pod: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: POD, namespace: NAMESPACE, labels }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } };
  return { ...injectPod(pod, resolveSettings(config)), status: { phase: 'Running', initContainerStatuses: [sidecarStatus({ ready: true, state: { running: { startedAt: new Date() } } })] } };
}

export function sidecarStatus(status: Partial<V1ContainerStatus>): V1ContainerStatus {
  return { name: 'chaperone', image: 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.1.0', imageID: '', ready: false, restartCount: 0, ...status };
}

function shippedWebhookConfiguration(): V1MutatingWebhookConfiguration {
  const shipped = YAML.parse(readFileSync(path.join(REPO, 'manifests/base/mutatingwebhookconfiguration.yaml'), 'utf8')) as V1MutatingWebhookConfiguration;
  for (const webhook of shipped.webhooks ?? []) webhook.clientConfig.caBundle = Buffer.from(cas.webhook.certPem).toString('base64');
  return shipped;
}

/** Every question the reader asks, answered as for the account the injector provisions in constrained mode. */
export function constrainedAnswers(): Record<string, boolean> {
  return Object.fromEntries(accessQuestions(NAMESPACE).map(({ id, attributes }) => [id, attributes.verb === 'impersonate:user-info' || id === 'create subjectaccessreviews']));
}

export const POLICY = serialisePolicy({ mode: 'constrained', access: 'dashboard', rules: [], nonResourceURLs: [], extras: [] });

export function healthyFacts(): DoctorFacts {
  const installation = installationOf(config);
  const own = ownLabels(installation.namespace);
  return {
    now: new Date(),
    namespaceName: NAMESPACE,
    installation,
    namespace: found({ metadata: { name: NAMESPACE, labels: { 'chaperone.dev/inject': 'enabled', 'kubernetes.io/metadata.name': NAMESPACE, 'pod-security.kubernetes.io/enforce': 'baseline' } } }),
    serviceAccount: found({ metadata: { name: installation.serviceAccount, labels: own }, automountServiceAccountToken: false }),
    configMap: found({
      metadata: { name: installation.caConfigMap, labels: own },
      data: { 'serving-ca.crt': cas.serving.certPem, 'identity-ca.crt': cas.identity.certPem, 'access-policy.json': POLICY },
    }),
    servingSecret: found({ metadata: { name: installation.servingSecret, labels: own }, type: 'kubernetes.io/tls', data: tlsData(healthyServing) }),
    readiness: found({ ready: true, missing: [] }),
    webhook: found(shippedWebhookConfiguration()),
    webhookServices: [{ namespace: 'chaperone-system', name: 'chaperone-injector', service: found({ spec: { ports: [{ port: 443 }] } }), readyEndpoints: found(2) }],
    access: found(constrainedAnswers()),
    pod: { name: POD, pod: found(injectedPod()) },
    signIn: { name: config.sidecarConfig, namedByNamespace: false, secret: absent },
  };
}

export function findingOf(findings: Finding[], check: string): Finding {
  const finding = findings.find((f) => f.check === check);
  if (!finding) throw new Error(`no finding ${check} among ${findings.map((f) => f.check).join(', ')}`);
  return finding;
}
