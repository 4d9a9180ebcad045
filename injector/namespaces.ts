// Which namespaces chaperone never touches, and what it says when one of them is labelled. (What the
// admission reads of a namespace, its labels and annotations, comes from a watch: admission-cache.ts.)
import type { CoreV1Event, V1Namespace } from '@kubernetes/client-node';

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
