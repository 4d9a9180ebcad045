// The access policy of a labelled namespace: the most a person may do through its sidecars, and how
// its scoped service account impersonates. One policy, two enforcers: the injector generates the
// account's ClusterRole from it (so the API server itself refuses the rest, even to a stolen token),
// and writes it into the namespace's CA ConfigMap, from which the sidecar refuses the same early with
// a clear Status. Rules match exactly as RBAC's PolicyRules do.
import * as z from 'zod';

/** KEP-5284 constrained impersonation (impersonate:user-info + impersonate-on:user-info:<verb>), or the classic `impersonate` verb. */
export const IMPERSONATION_MODES = ['constrained', 'classic'] as const;
export type ImpersonationMode = (typeof IMPERSONATION_MODES)[number];

/** dashboard: every ordinary verb; read-only: get, list and watch, no secrets unless allowed; custom: the namespace's own rules. */
export const ACCESS_LEVELS = ['dashboard', 'read-only', 'custom'] as const;
export type AccessLevel = (typeof ACCESS_LEVELS)[number];

export const READ_VERBS = ['get', 'list', 'watch'] as const;
/**
 * Subresources that are readable by verb but are doors into a container, a node or a token: read-only
 * access never reaches them (a GET of nodes/proxy upgraded to a websocket runs commands through the kubelet).
 */
export const NOT_READ_ONLY_SUBRESOURCES: ReadonlySet<string> = new Set(['exec', 'attach', 'portforward', 'proxy', 'token']);

/**
 * The reviews a person makes of herself (kubectl auth whoami and can-i; a dashboard deciding which
 * buttons to show): created, yet they change nothing, and every authenticated user may make them
 * (system:basic-user). Read-only access allows them.
 */
export const SELF_REVIEWS: readonly { group: string; resources: readonly string[] }[] = [
  { group: 'authentication.k8s.io', resources: ['selfsubjectreviews'] },
  { group: 'authorization.k8s.io', resources: ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'] },
];

interface ReadOnlyAttributes {
  isResourceRequest: boolean;
  verb: string;
  apiGroup: string;
  resource: string;
  subresource: string;
}

function isSelfReview(attributes: ReadOnlyAttributes): boolean {
  return attributes.verb === 'create' && attributes.subresource === '' && SELF_REVIEWS.some((r) => r.group === attributes.apiGroup && r.resources.includes(attributes.resource));
}

/**
 * Whether read-only access covers the request: a read verb and no subresource that is a door, or a
 * self-review. A connection upgraded by a GET is a stream both ways (exec, a VM's console, an API
 * extension's own): only a watch or a pod's log is read through one.
 */
export function isReadOnlyRequest(attributes: ReadOnlyAttributes, upgrade = false): boolean {
  if (upgrade) return attributes.verb === 'watch' || (attributes.verb === 'get' && attributes.resource === 'pods' && attributes.subresource === 'log');
  if (attributes.isResourceRequest && isSelfReview(attributes)) return true;
  if (!(READ_VERBS as readonly string[]).includes(attributes.verb)) return false;
  return !attributes.isResourceRequest || !NOT_READ_ONLY_SUBRESOURCES.has(attributes.subresource);
}
/** The verbs a policy may grant. Never impersonate, bind, escalate, approve, sign or use: those hand out power. */
export const GRANTABLE_VERBS = [...READ_VERBS, 'create', 'update', 'patch', 'delete', 'deletecollection'] as const;

/** Never impersonated, whatever a policy says (constrained impersonation refuses it too). */
export const PRIVILEGED_GROUP = 'system:masters';

/**
 * The extra under which the authenticated identity travels when a client impersonates. A
 * domain-prefixed path, because constrained impersonation accepts no other extra keys.
 */
export const ORIGINAL_USER_INFO_EXTRA = 'chaperone.dev/original-user-info';
/** The extra the API server derives from a token's jti (OIDC/JWT and service-account tokens). */
export const CREDENTIAL_ID_EXTRA = 'authentication.kubernetes.io/credential-id';
/** The extras the sidecar itself may send, whatever else a policy adds. */
export const CHAPERONE_EXTRAS: readonly string[] = [ORIGINAL_USER_INFO_EXTRA, CREDENTIAL_ID_EXTRA];
/** Groups every identity carries; an allow-list never has to name them. */
export const IMPLICIT_GROUPS: readonly string[] = ['system:authenticated', 'system:unauthenticated'];

export const resourceRuleSchema = z.strictObject({
  apiGroups: z.array(z.string()).min(1),
  resources: z.array(z.string().min(1)).min(1),
  verbs: z.array(z.enum(GRANTABLE_VERBS)).min(1),
  resourceNames: z.array(z.string().min(1)).min(1).optional(),
});
export type ResourceRule = z.infer<typeof resourceRuleSchema>;

export const accessPolicySchema = z.strictObject({
  mode: z.enum(IMPERSONATION_MODES),
  access: z.enum(ACCESS_LEVELS),
  rules: z.array(resourceRuleSchema),
  /** Non-resource URLs (discovery, /version, /openapi) people may GET. */
  nonResourceURLs: z.array(z.string().min(1)),
  /** The groups that may be impersonated; absent: any group but system:masters. */
  groups: z.array(z.string().min(1).refine((g) => g !== PRIVILEGED_GROUP, `${PRIVILEGED_GROUP} is never impersonated`)).optional(),
  /** The user-extra keys the sidecar may send. */
  extras: z.array(z.string().min(1)),
});
export type AccessPolicy = z.infer<typeof accessPolicySchema>;

/** The request attributes a policy judges (a subset of the sidecar's RequestInfo). */
export interface AccessAttributes {
  isResourceRequest: boolean;
  path: string;
  verb: string;
  apiGroup: string;
  resource: string;
  subresource: string;
  name: string;
}

const has = (list: readonly string[], value: string) => list.includes('*') || list.includes(value);

function resourceMatches(rule: ResourceRule, resource: string, subresource: string): boolean {
  const combined = subresource ? `${resource}/${subresource}` : resource;
  return rule.resources.some((r) => r === '*' || r === combined || (subresource !== '' && r === `*/${subresource}`));
}

/** RBAC's RuleAllows for a resource request. */
export function ruleAllows(rule: ResourceRule, attributes: AccessAttributes): boolean {
  return (
    has(rule.verbs, attributes.verb) &&
    has(rule.apiGroups, attributes.apiGroup) &&
    resourceMatches(rule, attributes.resource, attributes.subresource) &&
    (!rule.resourceNames || rule.resourceNames.includes(attributes.name))
  );
}

/** RBAC's NonResourceURLMatches. */
export function nonResourceURLMatches(pattern: string, path: string): boolean {
  if (pattern === '*' || pattern === path) return true;
  return pattern.endsWith('*') && path.startsWith(pattern.slice(0, -1));
}

export function policyAllows(policy: AccessPolicy, attributes: AccessAttributes): boolean {
  if (!attributes.isResourceRequest) return attributes.verb === 'get' && policy.nonResourceURLs.some((p) => nonResourceURLMatches(p, attributes.path));
  return policy.rules.some((rule) => ruleAllows(rule, attributes));
}

/** Whether the policy lets the sidecar impersonate this group. */
export function groupAllowed(policy: AccessPolicy, group: string): boolean {
  if (group === PRIVILEGED_GROUP) return false;
  return !policy.groups || IMPLICIT_GROUPS.includes(group) || policy.groups.includes(group);
}

/** The policy as the ConfigMap stores it: stable key order, so an unchanged policy is an unchanged ConfigMap. */
export function serialisePolicy(policy: AccessPolicy): string {
  return `${JSON.stringify(accessPolicySchema.parse(policy), null, 2)}\n`;
}

/** Throws an Error naming what is wrong. */
export function parsePolicy(text: string, where: string): AccessPolicy {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = accessPolicySchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(top)'}: ${i.message}`);
    throw new Error(`${where} is not a valid access policy: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/** One line for logs, /readyz and `chaperone doctor`. */
export function describePolicy(policy: AccessPolicy): string {
  const groups = policy.groups ? `groups limited to ${policy.groups.join(', ') || 'none'}` : 'any group but system:masters';
  return `impersonation mode ${policy.mode}, access ${policy.access}, ${groups}`;
}
