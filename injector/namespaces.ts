// How the injector learns a namespace's labels (the AdmissionReview does not carry them): it asks the
// API server on every admission, with no cache, so that a namespace labelled a moment ago is injected
// and one unlabelled a moment ago is not. Pods in labelled namespaces are created rarely enough for
// one GET each to cost nothing worth saving.
import { ApiException, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { NamespaceLabels } from './review.js';

/** Below the webhook's timeoutSeconds (manifests/base), so the injector answers before the API server gives up. */
export const LOOKUP_TIMEOUT_MS = 3000;

export function kubeConfigFrom(file: string | undefined): KubeConfig {
  const kubeconfig = new KubeConfig();
  if (file) kubeconfig.loadFromFile(file);
  else kubeconfig.loadFromCluster();
  return kubeconfig;
}

export function namespaceLabelsFromApi(kubeconfig: KubeConfig, timeoutMs = LOOKUP_TIMEOUT_MS): NamespaceLabels {
  const core = kubeconfig.makeApiClient(CoreV1Api);
  return async (name) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from the API server within ${timeoutMs}ms`)), timeoutMs);
    });
    try {
      const namespace = await Promise.race([core.readNamespace({ name }), timeout]);
      return namespace.metadata?.labels ?? {};
    } catch (err) {
      if (err instanceof ApiException && err.code === 404) return undefined;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  };
}
