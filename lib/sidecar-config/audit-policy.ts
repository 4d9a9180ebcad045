// The API server's audit policy (audit.k8s.io/v1 Policy), read and applied with its own rules
// (k8s.io/apiserver/pkg/audit/policy: checker.go, reader.go, and apis/audit/validation), so a
// policy written for the API server selects and shapes the sidecar's events the same way.
// Pure: no I/O. The sidecar evaluates it for each request; the injector checks a policy an
// installation configuration names.
import { parseDocument } from 'yaml';
import * as z from 'zod';

export const AUDIT_API_VERSION = 'audit.k8s.io/v1';

export const LEVELS = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;
export type Level = (typeof LEVELS)[number];

export const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;
export type Stage = (typeof STAGES)[number];

/** True when `level` records at least what `atLeast` does. */
export function levelAtLeast(level: Level, atLeast: Level): boolean {
  return LEVELS.indexOf(level) >= LEVELS.indexOf(atLeast);
}

/** What a rule is matched against: the authorizer attributes of the request, as the API server has them. */
export interface PolicyAttributes {
  /** The authenticated person; undefined when authentication failed. */
  user?: { username: string; groups: readonly string[] };
  verb: string;
  isResourceRequest: boolean;
  namespace: string;
  apiGroup: string;
  resource: string;
  subresource: string;
  name: string;
  /** The request path (non-resource requests). */
  path: string;
}

export interface RequestAuditConfig {
  level: Level;
  omitStages: ReadonlySet<Stage>;
  omitManagedFields: boolean;
}

// DNS-1123 subdomain, as validation.NameIsDNSSubdomain checks an API group.
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** The message for a value that is not the mapping wanted, or has keys the format does not know (a typo would silently widen a rule). */
function mappingError(what: string) {
  return (issue: { code?: string; keys?: string[] }) =>
    issue.code === 'unrecognized_keys' ? `unknown key${issue.keys!.length > 1 ? 's' : ''} ${issue.keys!.map((k) => JSON.stringify(k)).join(', ')}` : `is not ${what}`;
}

const stringList = z.array(z.string({ error: 'is not a string' }), { error: 'is not a list of strings' });
const stageList = z.array(z.enum(STAGES, { error: `is not a stage (${STAGES.join(', ')})` }), { error: 'is not a list of stages' });

const groupResources = z
  .strictObject(
    {
      group: z.string({ error: 'is not a string' }).optional(),
      resources: stringList.optional(),
      resourceNames: stringList.optional(),
    },
    { error: mappingError('a mapping with group, resources and resourceNames') },
  )
  .superRefine((gr, ctx) => {
    if (gr.group && (gr.group.length > 253 || !DNS_SUBDOMAIN.test(gr.group))) {
      ctx.addIssue({ code: 'custom', path: ['group'], message: `${JSON.stringify(gr.group)} is not a valid API group (a lower-case DNS subdomain, without a version)` });
    }
    if ((gr.resourceNames ?? []).length > 0 && (gr.resources ?? []).length === 0) {
      ctx.addIssue({ code: 'custom', path: ['resourceNames'], message: 'using resourceNames requires at least one resource' });
    }
  });

const rule = z
  .strictObject(
    {
      level: z.enum(LEVELS, { error: `is required: one of ${LEVELS.join(', ')}` }),
      users: stringList.optional(),
      userGroups: stringList.optional(),
      verbs: stringList.optional(),
      resources: z.array(groupResources, { error: 'is not a list' }).optional(),
      namespaces: stringList.optional(),
      nonResourceURLs: stringList.optional(),
      omitStages: stageList.optional(),
      omitManagedFields: z.boolean({ error: 'is not a boolean' }).optional(),
    },
    { error: mappingError('a mapping') },
  )
  .superRefine((r, ctx) => {
    (r.nonResourceURLs ?? []).forEach((url, i) => {
      if (url === '*') return;
      if (!url.startsWith('/')) ctx.addIssue({ code: 'custom', path: ['nonResourceURLs', i], message: `${JSON.stringify(url)}: non-resource URL rules must begin with a '/' character` });
      if (url.slice(0, -1).includes('*')) {
        ctx.addIssue({ code: 'custom', path: ['nonResourceURLs', i], message: `${JSON.stringify(url)}: non-resource URL wildcards '*' must be the final character of the rule` });
      }
    });
    if ((r.nonResourceURLs ?? []).length > 0 && ((r.resources ?? []).length > 0 || (r.namespaces ?? []).length > 0)) {
      ctx.addIssue({ code: 'custom', path: ['nonResourceURLs'], message: 'rules cannot apply to both regular resources and non-resource URLs' });
    }
  });

const policySchema = z.strictObject(
  {
    apiVersion: z.literal(AUDIT_API_VERSION, { error: `must be ${AUDIT_API_VERSION}` }),
    kind: z.literal('Policy', { error: 'must be Policy' }),
    metadata: z.record(z.string(), z.unknown()).optional(),
    rules: z.array(rule, { error: 'is not a list of rules' }).min(1, { error: 'must hold at least one rule' }),
    omitStages: stageList.optional(),
    omitManagedFields: z.boolean({ error: 'is not a boolean' }).optional(),
  },
  { error: mappingError('an audit.k8s.io/v1 Policy') },
);

export type PolicyDocument = z.infer<typeof policySchema>;
type Rule = PolicyDocument['rules'][number];

/** A policy file that cannot be used; the message names the file and each problem's place in it. */
export class AuditPolicyError extends Error {}

function has(list: readonly string[] | undefined, value: string): boolean {
  return list !== undefined && list.includes(value);
}

const nonEmpty = (list: readonly unknown[] | undefined): boolean => list !== undefined && list.length > 0;

/** checker.go pathMatches: "*", an exact path, or a prefix ending in "*". */
function pathMatches(path: string, spec: string): boolean {
  return spec === '*' || spec === path || (spec.endsWith('*') && path.startsWith(spec.replace(/\*+$/, '')));
}

/** checker.go ruleMatchesResource. */
function resourceMatches(r: Rule, attrs: PolicyAttributes): boolean {
  if (!attrs.isResourceRequest) return false;
  if (nonEmpty(r.namespaces) && !has(r.namespaces, attrs.namespace)) return false; // cluster-scoped: ""
  if (!nonEmpty(r.resources)) return true;
  const combined = attrs.subresource ? `${attrs.resource}/${attrs.subresource}` : attrs.resource;
  return r.resources!.some((gr) => groupResourcesMatch(gr, attrs, combined));
}

/** One GroupResources of a rule: its group, then its names, then its resources (checker.go). */
function groupResourcesMatch(gr: NonNullable<Rule['resources']>[number], attrs: PolicyAttributes, combined: string): boolean {
  if ((gr.group ?? '') !== attrs.apiGroup) return false;
  if (!nonEmpty(gr.resources)) return true;
  if (nonEmpty(gr.resourceNames) && !has(gr.resourceNames, attrs.name)) return false;
  return gr.resources!.some((res) => resourcePatternMatches(res, attrs, combined));
}

/** A rule's resource pattern: resource/subresource, "*", a subresource of any resource, or any subresource of one. */
function resourcePatternMatches(res: string, { resource, subresource }: PolicyAttributes, combined: string): boolean {
  if (res === combined || res === '*') return true;
  if (subresource && res.startsWith('*/') && subresource === res.slice(2)) return true;
  return res.endsWith('/*') && resource === res.slice(0, -2);
}

/** Everything in checker.go ruleMatches except users and groups. */
function requestMatches(r: Rule, attrs: PolicyAttributes): boolean {
  if (nonEmpty(r.verbs) && !has(r.verbs, attrs.verb)) return false;
  if (nonEmpty(r.namespaces) || nonEmpty(r.resources)) return resourceMatches(r, attrs);
  if (nonEmpty(r.nonResourceURLs)) return !attrs.isResourceRequest && r.nonResourceURLs!.some((spec) => pathMatches(attrs.path, spec));
  return true;
}

/** checker.go: a rule naming users or groups never matches a request without a user. */
function userMatches(r: Rule, user: PolicyAttributes['user']): boolean {
  if (nonEmpty(r.users) && (user === undefined || !has(r.users, user.username))) return false;
  if (nonEmpty(r.userGroups) && (user === undefined || !user.groups.some((g) => has(r.userGroups, g)))) return false;
  return true;
}

const namesUsers = (r: Rule): boolean => nonEmpty(r.users) || nonEmpty(r.userGroups);

export class AuditPolicy {
  private readonly defaultConfig: RequestAuditConfig;
  private readonly configs: RequestAuditConfig[];

  constructor(readonly document: PolicyDocument) {
    const policyOmits = document.omitStages ?? [];
    // NewPolicyRuleEvaluator: a rule omits its own stages and the policy's.
    this.configs = document.rules.map((r) => ({
      level: r.level,
      omitStages: new Set([...policyOmits, ...(r.omitStages ?? [])]),
      omitManagedFields: r.omitManagedFields ?? document.omitManagedFields ?? false,
    }));
    // No rule matched: not audited.
    this.defaultConfig = { level: 'None', omitStages: new Set(policyOmits), omitManagedFields: document.omitManagedFields ?? false };
  }

  /** The first rule that matches decides; none matching means None, as in the API server. */
  evaluate(attrs: PolicyAttributes): RequestAuditConfig {
    const index = this.document.rules.findIndex((r) => userMatches(r, attrs.user) && requestMatches(r, attrs));
    return index < 0 ? this.defaultConfig : this.configs[index]!;
  }

  /** The most any user could get for this request: decides, before anyone is authenticated, whether a body must be kept. */
  highestLevel(attrs: Omit<PolicyAttributes, 'user'>): Level {
    let highest: Level = 'None';
    for (const r of this.document.rules) {
      if (!requestMatches(r, { ...attrs, user: undefined })) continue;
      if (levelAtLeast(r.level, highest)) highest = r.level;
      if (!namesUsers(r)) break; // every later rule is shadowed for everyone
    }
    return highest;
  }

  /** Without a policy file: every request at Metadata level, all stages. */
  static readonly DEFAULT = new AuditPolicy({ apiVersion: AUDIT_API_VERSION, kind: 'Policy', rules: [{ level: 'Metadata' }] });

  /** Reads a policy from YAML or JSON; `source` (the file name) prefixes every problem. */
  static parse(text: string, source: string): AuditPolicy {
    const document = parseDocument(text);
    if (document.errors.length > 0) {
      throw new AuditPolicyError(`${source}: not YAML: ${document.errors.map((e) => e.message.split('\n', 1)[0]!).join('; ')}`);
    }
    const result = policySchema.safeParse(document.toJS(), { reportInput: true });
    if (!result.success) {
      const problems = result.error.issues.map((issue) => {
        const at = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('').replace(/^\./, '');
        return `${source}: ${at || '(document)'}: ${issue.message}`;
      });
      throw new AuditPolicyError(problems.join('\n'));
    }
    return new AuditPolicy(result.data);
  }
}
