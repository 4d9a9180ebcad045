// A third-party mutating webhook of the kind clusters run beside chaperone's injector (PodPreset-like
// injectors, agent injectors): it reads a pod's own annotations and, from them, adds environment
// variables (env.example.com/<NAME>: <value>) and volume mounts (mount.example.com/<volume>:
// <path>, or <path>#<subPath>) to
// every container of the pod. Installed by a cluster administrator, named to run after the injector;
// the pod author says what it adds. It speaks the real AdmissionReview protocol over TLS.
import { createServer, type Server } from 'node:https';
import { randomBytes } from 'node:crypto';
import type { AdmissionregistrationV1Api, V1Container, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { createCA, issueCertificate } from '../../lib/pki.js';

export const ENV_ANNOTATION_PREFIX = 'env.example.com/';
export const MOUNT_ANNOTATION_PREFIX = 'mount.example.com/';

export interface PresetWebhook {
  configuration: string;
  stop(): Promise<void>;
}

function withPresets(container: V1Container, annotations: Record<string, string>): V1Container {
  const env = [...(container.env ?? [])];
  const mounts = [...(container.volumeMounts ?? [])];
  for (const [key, value] of Object.entries(annotations)) {
    if (key.startsWith(ENV_ANNOTATION_PREFIX)) {
      const name = key.slice(ENV_ANNOTATION_PREFIX.length);
      if (!env.some((e) => e.name === name)) env.push({ name, value });
    } else if (key.startsWith(MOUNT_ANNOTATION_PREFIX)) {
      const name = key.slice(MOUNT_ANNOTATION_PREFIX.length);
      const [mountPath, subPath] = value.split('#');
      if (!mounts.some((m) => m.name === name || m.mountPath === mountPath)) mounts.push({ name, mountPath: mountPath!, ...(subPath ? { subPath } : {}) });
    }
  }
  return { ...container, env, volumeMounts: mounts };
}

/** The JSONPatch the webhook answers with: nothing when every container already has what the annotations ask. */
export function presetPatch(pod: V1Pod): object[] {
  const annotations = pod.metadata?.annotations ?? {};
  const patch: object[] = [];
  for (const field of ['initContainers', 'containers'] as const) {
    const containers = pod.spec?.[field];
    if (!containers) continue;
    const patched = containers.map((c) => withPresets(c, annotations));
    if (JSON.stringify(patched) !== JSON.stringify(containers)) patch.push({ op: 'replace', path: `/spec/${field}`, value: patched });
  }
  return patch;
}

/**
 * Serves the webhook on a free port of 127.0.0.1 and registers it for pod creation in the namespaces
 * carrying the label, with the reinvocation policy given, named to run after chaperone's injector
 * (configurations run in the order of their names: chaperone-injector-*) or before it.
 */
export async function startPresetWebhook(
  admission: AdmissionregistrationV1Api,
  label: [string, string],
  reinvocationPolicy: 'IfNeeded' | 'Never',
  runs: 'after' | 'before' = 'after',
): Promise<PresetWebhook> {
  const ca = createCA({ commonName: 'preset-webhook-ca' });
  const serving = issueCertificate(ca, { commonName: 'preset-webhook', usage: 'server', ipAddresses: ['127.0.0.1'] });
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const review = JSON.parse(body) as { request: { uid: string; object: V1Pod } };
      const patch = presetPatch(review.request.object);
      const response = { uid: review.request.uid, allowed: true, ...(patch.length > 0 ? { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') } : {}) };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const configuration = `${runs === 'after' ? 'zz' : 'aa'}-preset-${randomBytes(4).toString('hex')}`;
  const body: V1MutatingWebhookConfiguration = {
    metadata: { name: configuration },
    webhooks: [
      {
        name: 'preset.example.com',
        admissionReviewVersions: ['v1'],
        clientConfig: { url: `https://127.0.0.1:${port}/mutate`, caBundle: Buffer.from(ca.certPem).toString('base64') },
        rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }],
        namespaceSelector: { matchLabels: { [label[0]]: label[1] } },
        failurePolicy: 'Fail',
        sideEffects: 'None',
        timeoutSeconds: 5,
        reinvocationPolicy,
      },
    ],
  };
  await admission.createMutatingWebhookConfiguration({ body });
  return {
    configuration,
    stop: async () => {
      await admission.deleteMutatingWebhookConfiguration({ name: configuration }).catch(() => undefined);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
