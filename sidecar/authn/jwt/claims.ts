// Verified claims -> the identity, as the API server's jwtAuthenticator maps them: username, groups,
// uid, extra (with the credential id from jti), then required claims, claim validation rules and
// user validation rules, in that order. Claims are read with Go's JSON semantics (null is the zero value).
import type { Identity } from '../../identity.js';
import { toStringList, toStringResult, type CompiledExpression } from '../../../lib/cel/expressions.js';
import type { JwtIssuer } from '../../../lib/sidecar-config/jwt.js';
import { TokenRejected, type Claims } from './verify.js';

/** The extra the API server derives from a token's jti. */
export const CREDENTIAL_ID_EXTRA = 'authentication.kubernetes.io/credential-id';

function evaluate(expression: CompiledExpression, value: unknown, what: string): unknown {
  try {
    return expression.evaluate(value);
  } catch (err) {
    throw new TokenRejected(`error evaluating ${what} expression ${JSON.stringify(expression.expression)}: ${(err as Error).message.split('\n', 1)[0]!}`);
  }
}

function convert<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (err) {
    throw new TokenRejected(`error evaluating ${what} expression: ${(err as Error).message}`);
  }
}

/** json.Unmarshal of a claim into a Go string: a string, or null for "". */
function stringClaim(claims: Claims, name: string, what: string): string {
  if (!Object.hasOwn(claims, name)) throw new TokenRejected(`parse ${what} claim ${JSON.stringify(name)}: claim not present`);
  const value = claims[name];
  if (value === null) return '';
  if (typeof value !== 'string') throw new TokenRejected(`parse ${what} claim ${JSON.stringify(name)}: not a string`);
  return value;
}

/** The API server's stringOrArray: a list of strings (null items are ""), a single string, or null for none. */
function stringOrArray(value: unknown, name: string): string[] {
  if (value === null) return [];
  if (typeof value === 'string') return [value];
  if (Array.isArray(value) && value.every((v) => v === null || typeof v === 'string')) return value.map((v) => (v as string | null) ?? '');
  throw new TokenRejected(`parse groups claim ${JSON.stringify(name)}: neither a string nor a list of strings`);
}

function username(issuer: JwtIssuer, claims: Claims): string {
  if (issuer.cel.username) {
    const name = convert(() => toStringResult(evaluate(issuer.cel.username!, claims, 'username claim'), 'username'), 'username claim');
    if (name === '') throw new TokenRejected('empty username via CEL expression is not allowed');
    return name;
  }
  const { claim = '', prefix } = issuer.config.claimMappings.username;
  const name = stringClaim(claims, claim, 'username');
  if (claim === 'email' && Object.hasOwn(claims, 'email_verified')) {
    const verified = claims.email_verified;
    if (verified !== null && typeof verified !== 'boolean') throw new TokenRejected("parse 'email_verified' claim: not a boolean");
    if (verified !== true) throw new TokenRejected('email not verified');
  }
  return prefix ? prefix + name : name;
}

function groups(issuer: JwtIssuer, claims: Claims): string[] {
  const { claim = '', prefix } = issuer.config.claimMappings.groups;
  if (claim !== '') {
    if (Object.hasOwn(claims, claim)) return stringOrArray(claims[claim], claim).map((g) => (prefix ? prefix + g : g));
    if (isDistributed(claims, claim)) throw new TokenRejected(`the groups claim ${JSON.stringify(claim)} is a distributed claim, which chaperone does not resolve`);
  }
  if (!issuer.cel.groups) return [];
  return convert(() => toStringList(evaluate(issuer.cel.groups!, claims, 'group claim')) ?? [], 'group claim');
}

/** OpenID Connect distributed claims (_claim_names naming an endpoint). */
function isDistributed(claims: Claims, claim: string): boolean {
  const names = claims._claim_names;
  return typeof names === 'object' && names !== null && Object.hasOwn(names, claim);
}

function uid(issuer: JwtIssuer, claims: Claims): string {
  const { claim = '' } = issuer.config.claimMappings.uid;
  if (claim !== '') return stringClaim(claims, claim, 'uid');
  if (!issuer.cel.uid) return '';
  return convert(() => toStringResult(evaluate(issuer.cel.uid!, claims, 'uid claim'), 'uid'), 'uid claim');
}

function extra(issuer: JwtIssuer, claims: Claims): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (typeof claims.jti === 'string' && claims.jti !== '') out[CREDENTIAL_ID_EXTRA] = [`JTI=${claims.jti}`];
  for (const mapping of issuer.cel.extra) {
    const values = convert(() => toStringList(evaluate(mapping.expression, claims, 'extra claim')), `extra claim ${JSON.stringify(mapping.expression.expression)}`);
    if (values) out[mapping.key] = values;
  }
  return out;
}

function checkRules(rules: JwtIssuer['cel']['claimValidation'], value: unknown, what: string): void {
  for (const rule of rules) {
    const result = evaluate(rule.expression, value, what);
    if (typeof result !== 'boolean') throw new TokenRejected(`${what} expression must return a boolean`);
    if (!result) throw new TokenRejected(`validation expression '${rule.expression.expression}' failed: ${rule.message}`);
  }
}

/** A claimValidationRules entry with a claim: the claim must be that string. */
function checkRequiredClaim(claims: Claims, claim: string, requiredValue: string): void {
  if (!Object.hasOwn(claims, claim)) throw new TokenRejected(`required claim ${claim} not present in ID token`);
  const value = claims[claim] ?? '';
  if (typeof value !== 'string') throw new TokenRejected(`parse claim ${claim}: not a string`);
  if (value !== requiredValue) throw new TokenRejected(`required claim ${claim} value does not match. Got = ${value}, want = ${requiredValue}`);
}

/** The identity the API server would give these (verified) claims; throws TokenRejected when it would refuse them. */
export function identityFromClaims(issuer: JwtIssuer, claims: Claims): Identity {
  const identity: Identity = { username: username(issuer, claims), groups: groups(issuer, claims), extra: {} };
  // The API server would take both (a null or empty claim, no prefix); no impersonation header can carry them.
  if (identity.username === '') throw new TokenRejected('the username is empty');
  if (identity.groups.includes('')) throw new TokenRejected('a group has no name');
  const id = uid(issuer, claims);
  if (id !== '') identity.uid = id;
  identity.extra = extra(issuer, claims);

  for (const rule of issuer.config.claimValidationRules) if (rule.claim) checkRequiredClaim(claims, rule.claim, rule.requiredValue ?? '');
  checkRules(issuer.cel.claimValidation, claims, 'claim validation');
  if (issuer.cel.userValidation.length > 0) {
    const user = { username: identity.username, uid: identity.uid ?? '', groups: identity.groups, extra: identity.extra };
    checkRules(issuer.cel.userValidation, user, 'user info validation');
  }
  return identity;
}
