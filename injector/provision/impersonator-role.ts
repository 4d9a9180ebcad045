// The rules of a namespace's impersonator ClusterRole, from its access policy. Pure.
//
// constrained (KEP-5284): `impersonate:user-info` says whom the account may become, and
// `impersonate-on:user-info:<verb>` on the policy's own resources says what it may do as them; a
// service account is impersonated by name only (`impersonate:serviceaccount`). The API server itself
// then refuses whatever the policy does not allow, to whoever holds the token, and never lets anyone
// become system:masters.
// classic: the `impersonate` verb, which says whom but not what. Groups are limited to the allow-list
// when there is one; the verbs are limited only by the sidecar.
import type { V1PolicyRule } from '@kubernetes/client-node';
import { IMPLICIT_GROUPS, type AccessPolicy } from '../../lib/access-policy.js';

const AUTHENTICATION = 'authentication.k8s.io';
const REVIEWS: V1PolicyRule = { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] };

function groupNames(policy: AccessPolicy): { resourceNames?: string[] } {
  return policy.groups ? { resourceNames: [...new Set([...IMPLICIT_GROUPS, ...policy.groups])].sort() } : {};
}

function constrainedRules(policy: AccessPolicy): V1PolicyRule[] {
  const whom = 'impersonate:user-info';
  const on = (verb: string) => [`impersonate-on:user-info:${verb}`, `impersonate-on:serviceaccount:${verb}`];
  return [
    { apiGroups: [AUTHENTICATION], resources: ['users', 'uids'], verbs: [whom] },
    { apiGroups: [AUTHENTICATION], resources: ['groups'], verbs: [whom], ...groupNames(policy) },
    { apiGroups: [AUTHENTICATION], resources: policy.extras.map((key) => `userextras/${key}`), verbs: [whom] },
    { apiGroups: [AUTHENTICATION], resources: ['serviceaccounts'], verbs: ['impersonate:serviceaccount'] },
    ...policy.rules.map((rule) => ({ ...rule, verbs: rule.verbs.flatMap(on) })),
    ...(policy.nonResourceURLs.length > 0 ? [{ nonResourceURLs: [...policy.nonResourceURLs], verbs: on('get') }] : []),
    REVIEWS,
  ];
}

function classicRules(policy: AccessPolicy): V1PolicyRule[] {
  return [
    { apiGroups: [''], resources: ['users', 'serviceaccounts'], verbs: ['impersonate'] },
    { apiGroups: [''], resources: ['groups'], verbs: ['impersonate'], ...groupNames(policy) },
    { apiGroups: [AUTHENTICATION], resources: ['uids', ...policy.extras.map((key) => `userextras/${key}`)], verbs: ['impersonate'] },
    REVIEWS,
  ];
}

export function impersonatorRules(policy: AccessPolicy): V1PolicyRule[] {
  return policy.mode === 'constrained' ? constrainedRules(policy) : classicRules(policy);
}

/** Whether two rule lists grant the same, field order and absent-versus-empty aside (as the API server stores them). */
export function sameRules(a: readonly V1PolicyRule[], b: readonly V1PolicyRule[]): boolean {
  const canonical = (rules: readonly V1PolicyRule[]) =>
    JSON.stringify(
      rules.map((r) => [r.verbs, r.apiGroups ?? [], r.resources ?? [], r.resourceNames ?? [], r.nonResourceURLs ?? []]),
    );
  return canonical(a) === canonical(b);
}
