// The API server's AuthenticationConfiguration (apiserver.config.k8s.io), its `jwt` list, read and
// validated with the API server's own rules (k8s.io/apiserver/pkg/apis/apiserver/validation), so a
// file written for an API server means the same here, and a file it refuses is refused here too.
import { X509Certificate } from 'node:crypto';
import { parseDocument } from 'yaml';
import * as z from 'zod';
import { CelCompileError, compile, selects, type CompiledExpression, type ReturnType, type Variable } from '../cel/expressions.js';

/** The asymmetric algorithms the API server accepts (oidc.AllValidSigningAlgorithms); never none or HMAC. */
export const SIGNING_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'] as const;

const prefixedClaimOrExpression = z.strictObject({ claim: z.string().optional(), prefix: z.string().optional(), expression: z.string().optional() });
const claimOrExpression = z.strictObject({ claim: z.string().optional(), expression: z.string().optional() });

const jwtAuthenticatorSchema = z.strictObject({
  issuer: z.strictObject({
    url: z.string().default(''),
    discoveryURL: z.string().optional(),
    certificateAuthority: z.string().optional(),
    audiences: z.array(z.string()).default([]),
    audienceMatchPolicy: z.string().optional(),
    egressSelectorType: z.string().optional(),
  }),
  claimValidationRules: z
    .array(z.strictObject({ claim: z.string().optional(), requiredValue: z.string().optional(), expression: z.string().optional(), message: z.string().optional() }))
    .default([]),
  claimMappings: z
    .strictObject({
      username: prefixedClaimOrExpression.default({}),
      groups: prefixedClaimOrExpression.default({}),
      uid: claimOrExpression.default({}),
      extra: z.array(z.strictObject({ key: z.string().default(''), valueExpression: z.string().default('') })).default([]),
    })
    .default({ username: {}, groups: {}, uid: {}, extra: [] }),
  userValidationRules: z.array(z.strictObject({ expression: z.string().default(''), message: z.string().optional() })).default([]),
});

const API_VERSIONS = ['apiserver.config.k8s.io/v1', 'apiserver.config.k8s.io/v1beta1', 'apiserver.config.k8s.io/v1alpha1'] as const;

const authenticationConfigurationSchema = z.strictObject({
  apiVersion: z.enum(API_VERSIONS, { error: `must be one of ${API_VERSIONS.join(', ')}` }),
  kind: z.literal('AuthenticationConfiguration', { error: 'must be AuthenticationConfiguration' }),
  jwt: z.array(jwtAuthenticatorSchema).nullish(),
  // The API server's anonymous settings; chaperone has its own --anonymous, and ignores these.
  anonymous: z.unknown().optional(),
});

export type JwtAuthenticatorConfig = z.output<typeof jwtAuthenticatorSchema>;

/** One issuer, validated, with its CEL compiled. */
export interface JwtIssuer {
  config: JwtAuthenticatorConfig;
  /** Where this issuer came from, for messages: `jwt[0]` or `--oidc-issuer-url`. */
  where: string;
  algorithms: readonly string[];
  cel: {
    username?: CompiledExpression;
    groups?: CompiledExpression;
    uid?: CompiledExpression;
    extra: { key: string; expression: CompiledExpression }[];
    claimValidation: { expression: CompiledExpression; message: string }[];
    userValidation: { expression: CompiledExpression; message: string }[];
  };
}

/** A configuration that cannot be used; one problem per line, each naming its field. */
export class JwtConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'JwtConfigError';
  }
}

/** Reads an AuthenticationConfiguration (YAML or JSON) and validates every issuer in its jwt list. */
export function parseAuthenticationConfiguration(text: string, source: string): JwtIssuer[] {
  const document = parseDocument(text);
  if (document.errors.length > 0) throw new JwtConfigError(document.errors.map((e) => `${source}: ${e.message.split('\n', 1)[0]!}`));
  let content: unknown;
  try {
    content = document.toJS();
  } catch (err) {
    throw new JwtConfigError([`${source}: ${(err as Error).message}`]);
  }
  const parsed = authenticationConfigurationSchema.safeParse(content);
  if (!parsed.success) {
    throw new JwtConfigError(
      parsed.error.issues.map((issue) => `${source}: ${issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || '(top level)'}: ${issue.message}`),
    );
  }
  const jwt = parsed.data.jwt ?? [];
  const problems: string[] = [];
  if (jwt.length > 64) throw new JwtConfigError([`${source}: jwt: must have at most 64 items`]);
  const issuers: JwtIssuer[] = [];
  const seenUrls = new Set<string>();
  const seenDiscovery = new Set<string>();
  jwt.forEach((config, i) => {
    const where = `jwt[${i}]`;
    const { issuer, problems: own } = validateJwtAuthenticator(config, where, SIGNING_ALGORITHMS);
    problems.push(...own);
    if (seenUrls.has(config.issuer.url)) problems.push(duplicate(`${where}.issuer.url`, config.issuer.url));
    seenUrls.add(config.issuer.url);
    const discovery = config.issuer.discoveryURL ?? '';
    if (discovery !== '') {
      if (seenDiscovery.has(discovery)) problems.push(duplicate(`${where}.issuer.discoveryURL`, discovery));
      seenDiscovery.add(discovery);
    }
    issuers.push(issuer);
  });
  if (problems.length > 0) throw new JwtConfigError(problems.map((p) => `${source}: ${p}`));
  return issuers;
}

const invalid = (field: string, value: unknown, why: string) => `${field}: Invalid value: ${JSON.stringify(value)}: ${why}`;
const required = (field: string, why = '') => `${field}: Required value${why ? `: ${why}` : ''}`;
const duplicate = (field: string, value: string) => `${field}: Duplicate value: ${JSON.stringify(value)}`;

function validateUrl(url: string, field: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [invalid(field, url, 'is not a URL')];
  }
  const problems: string[] = [];
  if (parsed.protocol !== 'https:') problems.push(invalid(field, url, 'URL scheme must be https'));
  if (parsed.username || parsed.password) problems.push(invalid(field, url, 'URL must not contain a username or password'));
  if (url.includes('?')) problems.push(invalid(field, url, 'URL must not contain a query'));
  if (url.includes('#')) problems.push(invalid(field, url, 'URL must not contain a fragment'));
  return problems;
}

function validateCertificateAuthority(pem: string, field: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return [`${field}: Invalid value: "<omitted>": data does not contain any valid RSA or ECDSA certificates`];
  try {
    blocks.forEach((block) => new X509Certificate(block));
  } catch (err) {
    return [`${field}: Invalid value: "<omitted>": ${(err as Error).message}`];
  }
  return [];
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const HTTP_PATH = /^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/;

function validateExtraKey(key: string, field: string): string[] {
  if (key === '') return [required(field)];
  const slash = key.indexOf('/');
  const host = key.slice(0, slash);
  const path = key.slice(slash + 1);
  if (slash <= 0 || path === '') return [invalid(field, key, 'must be a domain-prefixed path (such as "acme.io/foo")')];
  const problems: string[] = [];
  if (host.length > 253 || !DNS_SUBDOMAIN.test(host)) problems.push(invalid(field, host, 'must be a lowercase RFC 1123 subdomain'));
  if (!HTTP_PATH.test(path)) problems.push(invalid(field, path, 'Invalid path'));
  if (key !== key.toLowerCase()) problems.push(invalid(field, key, 'must be lowercase'));
  if (['kubernetes.io', 'k8s.io'].some((domain) => host === domain || host.endsWith(`.${domain}`))) {
    problems.push(invalid(field, key, 'k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use'));
  }
  return problems;
}

/** Validates one jwt entry as the API server's validateJWTAuthenticator does, compiling its CEL. */
export function validateJwtAuthenticator(config: JwtAuthenticatorConfig, where: string, algorithms: readonly string[]): { issuer: JwtIssuer; problems: string[] } {
  const validation = new JwtAuthenticatorValidation(config, where);
  return { issuer: { config, where, algorithms, cel: validation.cel }, problems: validation.problems };
}

type Issuer = JwtAuthenticatorConfig['issuer'];
type ClaimValidationRule = JwtAuthenticatorConfig['claimValidationRules'][number];
type ClaimMappings = JwtAuthenticatorConfig['claimMappings'];

const EMAIL_VERIFIED_REQUIRED =
  'claims.email_verified must be used in claimMappings.username.expression or claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when claims.email is used in claimMappings.username.expression';

/** One jwt entry's problems, in the API server's order, and its CEL compiled on the way. */
class JwtAuthenticatorValidation {
  readonly problems: string[] = [];
  readonly cel: JwtIssuer['cel'] = { extra: [], claimValidation: [], userValidation: [] };

  constructor(
    config: JwtAuthenticatorConfig,
    private readonly where: string,
  ) {
    this.issuer(config.issuer);
    this.claimValidationRules(config.claimValidationRules);
    this.claimMappings(config.claimMappings);
    this.userValidationRules(config.userValidationRules);
  }

  private issuer(issuer: Issuer): void {
    const at = `${this.where}.issuer`;
    if (issuer.url === '') this.problems.push(required(`${at}.url`));
    else this.problems.push(...validateUrl(issuer.url, `${at}.url`));
    this.discoveryUrl(issuer, at);
    this.audiences(issuer, at);
    if (issuer.certificateAuthority) this.problems.push(...validateCertificateAuthority(issuer.certificateAuthority, `${at}.certificateAuthority`));
    if (issuer.egressSelectorType) {
      this.problems.push(invalid(`${at}.egressSelectorType`, issuer.egressSelectorType, 'egress selection is an API server feature; chaperone reaches the issuer directly, so leave it out'));
    }
  }

  private discoveryUrl(issuer: Issuer, at: string): void {
    const discovery = issuer.discoveryURL ?? '';
    if (discovery === '') return;
    if (issuer.url !== '' && issuer.url.replace(/\/+$/, '') === discovery.replace(/\/+$/, '')) {
      this.problems.push(invalid(`${at}.discoveryURL`, discovery, 'discoveryURL must be different from URL'));
    }
    this.problems.push(...validateUrl(discovery, `${at}.discoveryURL`));
  }

  private audiences({ audiences, audienceMatchPolicy }: Issuer, at: string): void {
    if (audiences.length === 0) this.problems.push(required(`${at}.audiences`, `at least one ${at}.audiences is required`));
    const seen = new Set<string>();
    audiences.forEach((audience, i) => {
      if (audience === '') this.problems.push(required(`${at}.audiences[${i}]`));
      if (seen.has(audience)) this.problems.push(duplicate(`${at}.audiences[${i}]`, audience));
      seen.add(audience);
    });
    const policy = audienceMatchPolicy ?? '';
    if (audiences.length > 1 && policy !== 'MatchAny') this.problems.push(invalid(`${at}.audienceMatchPolicy`, policy, 'audienceMatchPolicy must be MatchAny for multiple audiences'));
    if (audiences.length === 1 && policy !== '' && policy !== 'MatchAny') {
      this.problems.push(invalid(`${at}.audienceMatchPolicy`, policy, 'audienceMatchPolicy must be empty or MatchAny for single audience'));
    }
  }

  private claimValidationRules(rules: ClaimValidationRule[]): void {
    const seenClaims = new Set<string>();
    const seenExpressions = new Set<string>();
    rules.forEach((rule, i) => {
      const field = `${this.where}.claimValidationRules[${i}]`;
      const claim = rule.claim ?? '';
      const expression = rule.expression ?? '';
      if (claim !== '' && expression !== '') this.problems.push(invalid(field, claim, "claim and expression can't both be set"));
      else if (claim === '' && expression === '') this.problems.push(required(field, 'claim or expression is required'));
      else if (claim !== '') this.claimRule(rule, field, claim, seenClaims);
      else this.expressionRule(rule, field, expression, seenExpressions);
    });
  }

  private claimRule(rule: ClaimValidationRule, field: string, claim: string, seen: Set<string>): void {
    if (rule.message) this.problems.push(invalid(`${field}.message`, rule.message, 'may not be specified when claim is set'));
    if (seen.has(claim)) this.problems.push(duplicate(`${field}.claim`, claim));
    seen.add(claim);
  }

  private expressionRule(rule: ClaimValidationRule, field: string, expression: string, seen: Set<string>): void {
    if (rule.requiredValue) this.problems.push(invalid(`${field}.requiredValue`, rule.requiredValue, 'may not be specified when expression is set'));
    if (seen.has(expression)) {
      this.problems.push(duplicate(`${field}.expression`, expression));
      return;
    }
    seen.add(expression);
    const compiled = this.compile(`${field}.expression`, 'claims', expression, 'bool');
    if (compiled) this.cel.claimValidation.push({ expression: compiled, message: rule.message ?? '' });
  }

  private claimMappings(mappings: ClaimMappings): void {
    const at = `${this.where}.claimMappings`;
    this.cel.username = this.prefixedMapping(mappings.username, `${at}.username`, true);
    this.cel.groups = this.prefixedMapping(mappings.groups, `${at}.groups`, false);
    const uidClaim = mappings.uid.claim ?? '';
    const uidExpression = mappings.uid.expression ?? '';
    if (uidClaim !== '' && uidExpression !== '') this.problems.push(invalid(`${at}.uid`, '', "claim and expression can't both be set"));
    else if (uidExpression !== '') this.cel.uid = this.compile(`${at}.uid.expression`, 'claims', uidExpression, 'any');
    this.extraMappings(mappings.extra, at);
    this.emailVerifiedUsed(`${at}.username.expression`);
  }

  private prefixedMapping(mapping: ClaimMappings['username'], field: string, isRequired: boolean): CompiledExpression | undefined {
    const claim = mapping.claim ?? '';
    const expression = mapping.expression ?? '';
    if (claim !== '' && expression !== '') this.problems.push(invalid(field, '', "claim and expression can't both be set"));
    else if (expression !== '') return this.prefixedExpression(mapping, field, expression);
    else if (claim === '' && isRequired) this.problems.push(required(field, 'claim or expression is required'));
    else if (claim !== '' && mapping.prefix === undefined) {
      this.problems.push(required(`${field}.prefix`, 'prefix is required when claim is set. It can be set to an empty string to disable prefixing'));
    }
    return undefined;
  }

  private prefixedExpression(mapping: ClaimMappings['username'], field: string, expression: string): CompiledExpression | undefined {
    if (mapping.prefix !== undefined) this.problems.push(invalid(`${field}.prefix`, mapping.prefix, 'may not be specified when expression is set'));
    return this.compile(`${field}.expression`, 'claims', expression, 'any');
  }

  private extraMappings(extra: ClaimMappings['extra'], at: string): void {
    const seenKeys = new Set<string>();
    extra.forEach((mapping, i) => {
      const field = `${at}.extra[${i}]`;
      this.problems.push(...validateExtraKey(mapping.key, `${field}.key`));
      if (seenKeys.has(mapping.key)) {
        this.problems.push(duplicate(`${field}.key`, mapping.key));
        return;
      }
      seenKeys.add(mapping.key);
      if (mapping.valueExpression === '') {
        this.problems.push(required(`${field}.valueExpression`));
        return;
      }
      const compiled = this.compile(`${field}.valueExpression`, 'claims', mapping.valueExpression, 'any');
      if (compiled) this.cel.extra.push({ key: mapping.key, expression: compiled });
    });
  }

  /** A username taken from claims.email needs claims.email_verified checked somewhere. */
  private emailVerifiedUsed(field: string): void {
    const { username, claimValidation, extra } = this.cel;
    if (!username || !selects(username.ast, 'claims', 'email')) return;
    const checks = [username, ...claimValidation.map((rule) => rule.expression), ...extra.map((mapping) => mapping.expression)];
    if (!checks.some((compiled) => selects(compiled.ast, 'claims', 'email_verified'))) this.problems.push(invalid(field, username.expression, EMAIL_VERIFIED_REQUIRED));
  }

  private userValidationRules(rules: JwtAuthenticatorConfig['userValidationRules']): void {
    const seen = new Set<string>();
    rules.forEach((rule, i) => {
      const field = `${this.where}.userValidationRules[${i}].expression`;
      if (rule.expression === '') {
        this.problems.push(required(field));
        return;
      }
      if (seen.has(rule.expression)) {
        this.problems.push(duplicate(field, rule.expression));
        return;
      }
      seen.add(rule.expression);
      const compiled = this.compile(field, 'user', rule.expression, 'bool');
      if (compiled) this.cel.userValidation.push({ expression: compiled, message: rule.message ?? '' });
    });
  }

  private compile(field: string, variable: Variable, expression: string, returns: ReturnType): CompiledExpression | undefined {
    try {
      return compile(variable, expression, returns);
    } catch (err) {
      if (!(err instanceof CelCompileError)) throw err;
      this.problems.push(invalid(field, expression, err.message));
      return undefined;
    }
  }
}

/** The API server's legacy --oidc-* flags, as chaperone's flags of the same names carry them. */
export interface LegacyOidcFlags {
  issuerUrl: string;
  clientId: string;
  usernameClaim: string;
  usernamePrefix?: string;
  groupsClaim?: string;
  groupsPrefix?: string;
  /** `claim=value` pairs. */
  requiredClaims: readonly string[];
  caPem?: string;
  signingAlgs: readonly string[];
}

/**
 * The jwt entry the API server builds from its --oidc-* flags (BuiltInAuthenticationOptions.ToAuthenticationConfig):
 * without a username prefix, usernames from any claim but email are prefixed with "<issuer URL>#";
 * the prefix "-" means none.
 */
export function legacyOidcIssuer(flags: LegacyOidcFlags): JwtIssuer {
  const problems: string[] = [];
  const claimValidationRules = flags.requiredClaims.map((pair) => {
    const eq = pair.indexOf('=');
    if (eq <= 0) problems.push(`--oidc-required-claim: ${JSON.stringify(pair)} is not claim=value`);
    return { claim: pair.slice(0, Math.max(eq, 0)), requiredValue: pair.slice(eq + 1) };
  });
  for (const alg of flags.signingAlgs) {
    if (!(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) problems.push(`--oidc-signing-algs: unsupported signing alg ${JSON.stringify(alg)} (one of ${SIGNING_ALGORITHMS.join(', ')})`);
  }
  const config: JwtAuthenticatorConfig = {
    issuer: { url: flags.issuerUrl, audiences: [flags.clientId], ...(flags.caPem ? { certificateAuthority: flags.caPem } : {}) },
    claimValidationRules,
    claimMappings: {
      username: { claim: flags.usernameClaim, prefix: legacyUsernamePrefix(flags) },
      groups: flags.groupsClaim ? { claim: flags.groupsClaim, prefix: flags.groupsPrefix ?? '' } : {},
      uid: {},
      extra: [],
    },
    userValidationRules: [],
  };
  const { issuer, problems: own } = validateJwtAuthenticator(config, '--oidc-*', flags.signingAlgs);
  problems.push(...own);
  if (problems.length > 0) throw new JwtConfigError(problems);
  return issuer;
}

function legacyUsernamePrefix({ usernamePrefix, usernameClaim, issuerUrl }: LegacyOidcFlags): string {
  if (usernamePrefix === '-') return '';
  if ((usernamePrefix ?? '') === '' && usernameClaim !== 'email') return `${issuerUrl}#`;
  return usernamePrefix ?? '';
}
