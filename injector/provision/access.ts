// A namespace's access policy, from its chaperone.dev/access* annotations, the injector's settings and
// what the API server serves (dashboard and read-only access name the served resources one by one,
// since RBAC cannot say "everything except"). Pure: the reconciler reads the inputs and writes the results.
import YAML from 'yaml';
import * as z from 'zod';
import {
  ACCESS_LEVELS,
  CHAPERONE_EXTRAS,
  GRANTABLE_VERBS,
  NOT_READ_ONLY_SUBRESOURCES,
  READ_VERBS,
  SELF_REVIEWS,
  resourceRuleSchema,
  type AccessLevel,
  type AccessPolicy,
  type ImpersonationMode,
  type ResourceRule,
} from '../../lib/access-policy.js';
import { annotationOf } from '../names.js';

export const ACCESS_ANNOTATION = annotationOf('access');
export const ACCESS_RULES_ANNOTATION = annotationOf('access-rules');
export const ACCESS_SECRETS_ANNOTATION = annotationOf('access-secrets');

/** What the API server serves: the core group's resources (with subresources, as /api/v1 lists them) and the other groups. */
export interface ServedResources {
  core: { name: string; verbs: string[] }[];
  groups: string[];
}

export interface AccessDefaults {
  mode: ImpersonationMode;
  access: Exclude<AccessLevel, 'custom'>;
  /** Empty: any group but system:masters. */
  groups: readonly string[];
  extras: readonly string[];
}

/** A namespace whose annotations do not make a policy: the message names each annotation at fault. */
export class AccessPolicyError extends Error {}

const ALL_NON_RESOURCE_URLS = ['*'];
/**
 * What dashboard access does not write: the cluster's security settings, whose change would hand out
 * more than any one request (RBAC, admission, API registration, CRDs with their webhooks, certificate
 * signing). Read, yes; written only through a custom policy.
 */
export const SECURITY_GROUPS: readonly string[] = [
  'rbac.authorization.k8s.io',
  'admissionregistration.k8s.io',
  'apiregistration.k8s.io',
  'apiextensions.k8s.io',
  'certificates.k8s.io',
];
/**
 * Core resources dashboard access does not touch at all: a token of any service account is that
 * account's power, and a node's proxy is its kubelet's API (exec into any pod on the node).
 */
const NOT_DASHBOARD_CORE = new Set(['serviceaccounts/token', 'nodes/proxy']);

function dashboardRules(served: ServedResources): ResourceRule[] {
  const core = served.core.filter(({ name }) => !NOT_DASHBOARD_CORE.has(name)).map(({ name }) => name).sort();
  const groups = served.groups.filter((g) => g !== '').sort();
  const written = groups.filter((g) => !SECURITY_GROUPS.includes(g));
  const read = groups.filter((g) => SECURITY_GROUPS.includes(g));
  const rules: ResourceRule[] = [];
  if (core.length > 0) rules.push({ apiGroups: [''], resources: core, verbs: [...GRANTABLE_VERBS] });
  if (written.length > 0) rules.push({ apiGroups: written, resources: ['*'], verbs: [...GRANTABLE_VERBS] });
  if (read.length > 0) rules.push({ apiGroups: read, resources: ['*'], verbs: [...READ_VERBS] });
  return rules;
}

function readOnlyRules(served: ServedResources, secrets: boolean): ResourceRule[] {
  const core = served.core
    .filter(({ name, verbs }) => {
      const [resource, subresource] = name.split('/');
      if (resource === 'secrets' && !secrets) return false;
      return !NOT_READ_ONLY_SUBRESOURCES.has(subresource ?? '') && verbs.some((v) => (READ_VERBS as readonly string[]).includes(v));
    })
    .map(({ name }) => name)
    .sort();
  const groups = served.groups.filter((g) => g !== '').sort();
  const rules: ResourceRule[] = [];
  if (core.length > 0) rules.push({ apiGroups: [''], resources: core, verbs: [...READ_VERBS] });
  if (groups.length > 0) rules.push({ apiGroups: groups, resources: ['*'], verbs: [...READ_VERBS] });
  for (const review of SELF_REVIEWS) if (served.groups.includes(review.group)) rules.push({ apiGroups: [review.group], resources: [...review.resources], verbs: ['create'] });
  return rules;
}

const rulesSchema = z.array(resourceRuleSchema).min(1);

function parseRules(text: string): ResourceRule[] {
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new AccessPolicyError(`annotation ${ACCESS_RULES_ANNOTATION}: not YAML or JSON: ${(err as Error).message}`);
  }
  const parsed = rulesSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.length > 0 ? `item ${i.path.join('.')}` : 'the list'}: ${i.message}`);
    throw new AccessPolicyError(
      `annotation ${ACCESS_RULES_ANNOTATION}: ${problems.join('; ')} (a list of {apiGroups, resources, verbs, resourceNames?}; verbs among ${GRANTABLE_VERBS.join(', ')})`,
    );
  }
  return parsed.data;
}

/** The namespace's policy; throws AccessPolicyError naming the annotation that is wrong. */
export function accessPolicyFor(annotations: Readonly<Record<string, string>> | undefined, defaults: AccessDefaults, served: ServedResources): AccessPolicy {
  const given = annotations?.[ACCESS_ANNOTATION];
  if (given !== undefined && !(ACCESS_LEVELS as readonly string[]).includes(given)) {
    throw new AccessPolicyError(`annotation ${ACCESS_ANNOTATION}: ${JSON.stringify(given)} is not one of ${ACCESS_LEVELS.join(', ')}`);
  }
  const access = (given as AccessLevel | undefined) ?? defaults.access;
  const rulesText = annotations?.[ACCESS_RULES_ANNOTATION];
  const secretsText = annotations?.[ACCESS_SECRETS_ANNOTATION];
  if (access === 'custom' && rulesText === undefined) throw new AccessPolicyError(`annotation ${ACCESS_ANNOTATION} is custom, so ${ACCESS_RULES_ANNOTATION} must list the rules`);
  if (access !== 'custom' && rulesText !== undefined) throw new AccessPolicyError(`annotation ${ACCESS_RULES_ANNOTATION} is only read when ${ACCESS_ANNOTATION} is custom (it is ${access})`);
  if (secretsText !== undefined && secretsText !== 'true' && secretsText !== 'false') {
    throw new AccessPolicyError(`annotation ${ACCESS_SECRETS_ANNOTATION}: ${JSON.stringify(secretsText)} is not true or false`);
  }
  if (secretsText !== undefined && access !== 'read-only') throw new AccessPolicyError(`annotation ${ACCESS_SECRETS_ANNOTATION} is only read when ${ACCESS_ANNOTATION} is read-only (it is ${access})`);

  const rules =
    access === 'dashboard'
      ? dashboardRules(served)
      : access === 'read-only'
        ? readOnlyRules(served, secretsText === 'true')
        : parseRules(rulesText!);
  return {
    mode: defaults.mode,
    access,
    rules,
    nonResourceURLs: ALL_NON_RESOURCE_URLS,
    ...(defaults.groups.length > 0 ? { groups: [...new Set(defaults.groups)].sort() } : {}),
    extras: [...new Set([...CHAPERONE_EXTRAS, ...defaults.extras])].sort(),
  };
}
