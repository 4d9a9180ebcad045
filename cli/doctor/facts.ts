// What `chaperone doctor` knows about a cluster: everything the checks judge, read beforehand
// (read.ts), so that the checks are pure functions of it.
import type {
  CoreV1Event,
  V1ConfigMap,
  V1MutatingWebhookConfiguration,
  V1Namespace,
  V1Pod,
  V1Secret,
  V1Service,
  V1ServiceAccount,
} from '@kubernetes/client-node';
import type { ProvisioningStatus } from '../../injector/provision/readiness.js';
import type { SignInFacts } from './sign-in.js';

/** An object as read: there, not there (404), or not readable, with why in the person's words. */
export type Observed<T> = { state: 'found'; value: T } | { state: 'absent' } | { state: 'unreadable'; reason: string };

export const found = <T>(value: T): Observed<T> => ({ state: 'found', value });
export const absent: Observed<never> = { state: 'absent' };
export const unreadable = (reason: string): Observed<never> => ({ state: 'unreadable', reason });

/** The injector installation's names (its configuration, injector/config.ts). */
export interface Installation {
  /** The injector's own namespace. */
  namespace: string;
  serviceAccount: string;
  caConfigMap: string;
  servingSecret: string;
  webhookConfiguration: string;
  certificates: 'self-managed' | 'cert-manager';
  provisionSelector?: string;
}

/** A Service a webhook calls, and how many of its endpoints are ready. */
export interface WebhookServiceFacts {
  namespace: string;
  name: string;
  service: Observed<V1Service>;
  readyEndpoints: Observed<number>;
}

export interface DoctorFacts {
  now: Date;
  /** The namespace checked. */
  namespaceName: string;
  installation: Installation;
  namespace: Observed<V1Namespace>;
  /** For a namespace chaperone never provisions: the injector's events that say it refused the label. */
  refusals?: Observed<CoreV1Event[]>;
  /** Whether the namespace matches the injector's provisionSelector (the API server's answer); only with one. */
  inProvisionSelector?: Observed<boolean>;
  serviceAccount: Observed<V1ServiceAccount>;
  configMap: Observed<V1ConfigMap>;
  servingSecret: Observed<V1Secret>;
  /** The injector's own readiness check for the namespace, as its webhook makes it before admitting a pod. */
  readiness: Observed<ProvisioningStatus>;
  webhook: Observed<V1MutatingWebhookConfiguration>;
  webhookServices: WebhookServiceFacts[];
  /** The API server's answer (SubjectAccessReview) to each of accessQuestions(), by id, for the scoped service account. */
  access: Observed<Record<string, boolean>>;
  pod?: { name: string; pod: Observed<V1Pod> };
  /** The installation configuration the namespace's sidecars get; read once the namespace was. */
  signIn?: SignInFacts;
}
