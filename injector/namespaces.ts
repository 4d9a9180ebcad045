// How the injector learns a namespace's labels and annotations (the AdmissionReview does not carry
// them): it asks the API server on every admission, with no cache, so that a namespace labelled a
// moment ago is injected and one unlabelled a moment ago is not, and a change of what its sidecars
// trust (its annotations) reaches the next pod; over kept-alive connections, so that one GET costs little.
import { KubeConfig, type CoreV1Event, type V1Namespace } from '@kubernetes/client-node';
import { KeepAliveKubeReader, type KubeReader } from '../lib/kube-reads.js';
import type { NamespaceLabels } from './review.js';

/** Never injected nor provisioned, whatever their labels say: the cluster's own. */
export const SYSTEM_NAMESPACES: readonly string[] = ['kube-system', 'kube-public', 'kube-node-lease'];

/**
 * Why chaperone never injects nor provisions a namespace, whatever its labels; undefined for every
 * other. A scoped account there would sit beside the cluster's own workloads (or the injector's CA
 * keys), where neither the webhook's namespaceSelector nor an operator expects one.
 */
export function neverInjected(namespace: string, injectorNamespace: string): string | undefined {
  if (SYSTEM_NAMESPACES.includes(namespace)) return 'a system namespace';
  if (namespace === injectorNamespace) return "the injector's own namespace";
  return undefined;
}

/** The reason of the Warning event that says the label is refused. */
export const REFUSED_REASON = 'InjectionRefused';
/** Where events about a Namespace go, as Kubernetes keeps them (kubectl describe namespace finds them there). */
export const NAMESPACE_EVENTS_NAMESPACE = 'default';

/** What the injector tells whoever looks at a namespace it refuses (kubectl describe namespace), at `now`. */
export function refusalEvent(namespace: V1Namespace, why: string, installation: string, now = new Date()): CoreV1Event {
  const name = namespace.metadata!.name!;
  return {
    metadata: { generateName: `${name}.chaperone-refused.`, namespace: NAMESPACE_EVENTS_NAMESPACE },
    involvedObject: { apiVersion: 'v1', kind: 'Namespace', name, ...(namespace.metadata?.uid ? { uid: namespace.metadata.uid } : {}) },
    reason: REFUSED_REASON,
    type: 'Warning',
    message:
      `chaperone never provisions ${name} (${why}): its label chaperone.dev/inject=enabled is refused, and no scoped service account is created there; ` +
      `remove the label (kubectl label namespace ${name} chaperone.dev/inject-) and run dashboards in a namespace of their own`,
    source: { component: 'chaperone-injector' },
    reportingComponent: 'chaperone.dev/injector',
    reportingInstance: installation,
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
}

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
      return namespace ? { labels: namespace.metadata?.labels ?? {}, annotations: namespace.metadata?.annotations ?? {} } : undefined;
    } finally {
      clearTimeout(timer);
    }
  };
}
