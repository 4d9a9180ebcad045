// The labels and annotations of the contract (DESIGN.md, "Names").

export const ANNOTATION_PREFIX = 'chaperone.dev/';
/** The label that turns injection on for a namespace (enabled) and off for a pod (disabled). */
export const INJECT_LABEL = 'chaperone.dev/inject';
/** Written by the injector: what it injected, as JSON. */
export const STATUS_ANNOTATION = 'chaperone.dev/status';
/** Written by the injector: the service account the pod asked for, before it was switched. */
export const ORIGINAL_SERVICE_ACCOUNT_ANNOTATION = 'chaperone.dev/original-service-account';
/** Written by the injector: what the dashboard finds in its service-account token file. */
export const PLACEHOLDER_TOKEN_ANNOTATION = 'chaperone.dev/placeholder-token';

/** The annotation of a per-pod setting. */
export function annotationOf(setting: string): string {
  return `${ANNOTATION_PREFIX}${setting}`;
}
