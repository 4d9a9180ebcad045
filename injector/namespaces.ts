// How the injector learns a namespace's labels (the AdmissionReview does not carry them): it asks the
// API server on every admission, with no cache, so that a namespace labelled a moment ago is injected
// and one unlabelled a moment ago is not; over kept-alive connections, so that one GET costs little.
import { KubeConfig, type V1Namespace } from '@kubernetes/client-node';
import { KeepAliveKubeReader, type KubeReader } from '../lib/kube-reads.js';
import type { NamespaceLabels } from './review.js';

/** Below the webhook's timeoutSeconds (manifests/base), so the injector answers before the API server gives up. */
export const LOOKUP_TIMEOUT_MS = 3000;

export function kubeConfigFrom(file: string | undefined): KubeConfig {
  const kubeconfig = new KubeConfig();
  if (file) kubeconfig.loadFromFile(file);
  else kubeconfig.loadFromCluster();
  return kubeconfig;
}

export function namespaceLabelsFromApi(source: KubeConfig | KubeReader, timeoutMs = LOOKUP_TIMEOUT_MS): NamespaceLabels {
  const reader = source instanceof KubeConfig ? new KeepAliveKubeReader(source, timeoutMs) : source;
  return async (name) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from the API server within ${timeoutMs}ms`)), timeoutMs);
    });
    try {
      const namespace = await Promise.race([reader.get<V1Namespace>(`/api/v1/namespaces/${encodeURIComponent(name)}`), timeout]);
      return namespace ? (namespace.metadata?.labels ?? {}) : undefined;
    } finally {
      clearTimeout(timer);
    }
  };
}
