// Identities that are never impersonated: the identity provider does not get to hand out the
// cluster's own names, and nobody becomes system:masters unless configuration says so.
import { ORIGINAL_USER_INFO_EXTRA, type Authenticated, type Identity } from './identity.js';
import { forbiddenBecause } from '../lib/status.js';

export interface GuardPolicy {
  /** system: names an identity from outside the cluster may carry after all. */
  allow: readonly string[];
  /** Further user and group names that are never impersonated, from any source. */
  deny: readonly string[];
}

const MASTERS = 'system:masters';
const AUTHENTICATED = 'system:authenticated';

/** Sources outside the cluster, whose word on system: names is not taken. */
function isExternal(method: Authenticated['method']): boolean {
  return method === 'x509' || method === 'oidc' || method === 'webhook';
}

function names(identity: Identity): { kind: 'user' | 'group'; name: string }[] {
  return [{ kind: 'user', name: identity.username }, ...identity.groups.map((name) => ({ kind: 'group' as const, name }))];
}

function refuseDenied(identity: Identity, policy: GuardPolicy, whose: string): void {
  for (const { kind, name } of names(identity)) {
    if (policy.allow.includes(name)) continue;
    if (name === MASTERS || policy.deny.includes(name)) {
      throw forbiddenBecause(`chaperone never impersonates the ${kind} ${JSON.stringify(name)} (${whose}); an administrator can allow it with --guard-allow`);
    }
  }
}

/** Checks the identity as authenticated, before anything is asked of the API server on its behalf. */
export function guardAuthenticated(authenticated: Authenticated, policy: GuardPolicy): void {
  const { identity, method } = authenticated;
  if (isExternal(method)) {
    for (const { kind, name } of names(identity)) {
      if (name.startsWith('system:') && name !== AUTHENTICATED && !policy.allow.includes(name)) {
        throw forbiddenBecause(
          `the ${kind} ${JSON.stringify(name)} from a ${method} identity is reserved for the cluster itself: chaperone does not accept system: names from outside the cluster unless --guard-allow names them`,
        );
      }
    }
    if (ORIGINAL_USER_INFO_EXTRA in identity.extra) {
      throw forbiddenBecause(`the extra ${ORIGINAL_USER_INFO_EXTRA} is set by chaperone and cannot come from a ${method} identity`);
    }
  }
  refuseDenied(identity, policy, `authenticated by ${method}`);
}

/** Checks the identity about to be sent upstream (after any nested impersonation). */
export function guardEffective(identity: Identity, policy: GuardPolicy): void {
  refuseDenied(identity, policy, 'requested impersonation');
}
