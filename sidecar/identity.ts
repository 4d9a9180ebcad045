/** The one shape of "who" that flows through the sidecar, as the API server's user.Info. */
export interface Identity {
  username: string;
  uid?: string;
  groups: string[];
  extra: Record<string, string[]>;
}

/** How a person proved who they are; named in metrics and audit events. */
export type AuthenticationMethod = 'x509' | 'oidc' | 'webhook' | 'cluster-token-review' | 'anonymous';

export interface Authenticated {
  identity: Identity;
  method: AuthenticationMethod;
}

export const ANONYMOUS: Identity = { username: 'system:anonymous', groups: ['system:unauthenticated'], extra: {} };

export { ORIGINAL_USER_INFO_EXTRA } from '../lib/access-policy.js';
