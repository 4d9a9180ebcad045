// A JWT checked as the API server checks it (go-oidc's IDTokenVerifier and the oidc authenticator):
// signature by a key from the issuer's discovery document and JWKS, an asymmetric algorithm from the
// allow-list, the exact issuer, one of the audiences, exp strictly, nbf with one minute of leeway.
// iat is not checked, as the API server does not check it.
import { Agent } from 'node:https';
import { errors } from 'jose';
import { boundedCall, jsonBody } from '../../../lib/bounded-call.js';
import { jwksJson, RemoteKeySet, type KeyFetchOutcome } from './remote-keys.js';
import { goFieldMatches, goFieldMembers, isObject, JsonRefused, parseGoJson } from './go-json.js';

const GOOGLE = 'https://accounts.google.com';
/** go-oidc's leeway on nbf; exp has none. */
export const NOT_BEFORE_LEEWAY_MS = 60_000;
const DISCOVERY_RETRY_MS = 10_000;
const FETCH_TIMEOUT_MS = 10_000;
/** The JWKS is fetched at most this often, for tokens naming unknown keys and in the background alike. */
export const JWKS_REFETCH_COOLDOWN_MS = 10_000;

/** Why a token was refused; the message goes to logs and audit events only. */
export class TokenRejected extends Error {}

function decodeSegment(segment: string): unknown {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw new Error('not base64url');
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as unknown;
}

/**
 * The issuer a token claims, unverified, as the API server reads it to pick an authenticator;
 * undefined when the token is not a compact JWT with a string iss.
 */
export function untrustedIssuer(token: string): string | undefined {
  if (token.trimStart().startsWith('{')) return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = decodeSegment(parts[1]!) as { iss?: unknown } | null;
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return undefined;
    const iss = payload.iss ?? '';
    if (typeof iss !== 'string') return undefined;
    return iss === 'accounts.google.com' ? GOOGLE : iss;
  } catch {
    return undefined;
  }
}

export interface IssuerKeysOptions {
  issuerUrl: string;
  discoveryUrl?: string;
  /** PEM bundle that verifies the issuer's certificate; the system's roots when absent. */
  caPem?: string;
  onError?: (message: string) => void;
  /** Each fetch of the keys (JWKS) ended so, while these keys are in use. */
  onKeysFetched?: (outcome: KeyFetchOutcome) => void;
}

/** The issuer's keys: discovery at start (retried every 10s until it works), then its JWKS. */
export class IssuerKeys {
  private readonly agent: Agent;
  private keySet: RemoteKeySet | undefined;
  private lastError = 'discovery has not completed yet';
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: IssuerKeysOptions) {
    this.agent = new Agent({ keepAlive: true, ...(options.caPem ? { ca: options.caPem } : {}) });
  }

  /** Starts discovery; resolves after the first attempt, whether it worked or not. */
  async start(): Promise<void> {
    try {
      await this.discover();
    } catch (err) {
      this.lastError = withCaHint((err as NodeJS.ErrnoException).message, (err as NodeJS.ErrnoException).code, this.options.caPem !== undefined);
      this.options.onError?.(`OIDC discovery for ${this.options.issuerUrl} failed, retrying every ${DISCOVERY_RETRY_MS / 1000}s: ${this.lastError}`);
      if (!this.closed) {
        this.timer = setTimeout(() => void this.start(), DISCOVERY_RETRY_MS);
        this.timer.unref();
      }
    }
  }

  /** Why tokens of this issuer cannot be verified yet; undefined once its keys can be had. */
  notReady(): string | undefined {
    return this.keySet ? undefined : `issuer ${this.options.issuerUrl}: ${this.lastError}`;
  }

  /** When the keys held were fetched (Date.now() time); undefined before the first fetch succeeded. */
  keysFetchedAt(): number | undefined {
    return this.keySet?.heldSince();
  }

  keys(): RemoteKeySet {
    if (!this.keySet) throw new TokenRejected(`authenticator for issuer ${this.options.issuerUrl} is not initialized: ${this.lastError}`);
    return this.keySet;
  }

  private async discover(): Promise<void> {
    const url = this.options.discoveryUrl || `${this.options.issuerUrl.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const answer = await boundedCall(new URL(url), { method: 'GET', agent: this.agent, timeoutMs: FETCH_TIMEOUT_MS, where: url });
    if (answer.status !== 200) throw new Error(`${url} answered ${answer.status}`);
    const document = jsonBody(answer, url) as { issuer?: unknown; jwks_uri?: unknown };
    if (document.issuer !== this.options.issuerUrl) {
      throw new Error(`issuer did not match the issuer returned by provider, expected ${JSON.stringify(this.options.issuerUrl)} got ${JSON.stringify(document.issuer)}`);
    }
    if (typeof document.jwks_uri !== 'string' || !document.jwks_uri.startsWith('https://')) throw new Error(`${url} has no https jwks_uri`);
    const jwksUri = new URL(document.jwks_uri);
    this.keySet = new RemoteKeySet({
      fetchJwks: () => this.fetchJwks(jwksUri),
      cooldownMs: JWKS_REFETCH_COOLDOWN_MS,
      onRefreshFailed: (err, ageMs) => {
        if (this.closed) return;
        this.options.onError?.(`the keys of ${this.options.issuerUrl} could not be fetched again; those fetched ${Math.round(ageMs / 1000)}s ago stay in use: ${err.message}`);
      },
      // A fetch cut short by close() says nothing about the issuer.
      onFetched: (outcome) => {
        if (!this.closed) this.options.onKeysFetched?.(outcome);
      },
    });
  }

  private async fetchJwks(url: URL): Promise<unknown> {
    const answer = await boundedCall(url, { method: 'GET', agent: this.agent, timeoutMs: FETCH_TIMEOUT_MS, where: url.href });
    return jwksJson(answer.status, answer.body);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.agent.destroy();
  }
}

/** The TLS errors of a certificate chain Node's roots (or the CA given) do not vouch for. */
const UNTRUSTED_CERTIFICATE = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_UNTRUSTED']);

/** Where an issuer's own CA goes, for an issuer whose certificate nothing trusted signed. */
function withCaHint(message: string, code: string | undefined, caGiven: boolean): string {
  if (code === undefined || !UNTRUSTED_CERTIFICATE.has(code)) return message;
  const where = "the issuer's certificateAuthority in the AuthenticationConfiguration (for injected pods, the installation configuration: docs/authentication.md), or --oidc-ca-file";
  return `${message} (${code}): ${caGiven ? 'the CA given does not vouch for its certificate; check ' : "no CA this sidecar trusts signed its certificate; give the CA that did as "}${where}`;
}

export interface VerifyOptions {
  issuerUrl: string;
  audiences: readonly string[];
  algorithms: readonly string[];
  now?: number;
}

export type Claims = Record<string, unknown>;

/** A JSON number as Go's json.Number takes it from a string. */
const GO_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?$/;

/** go-oidc's jsonTime: a JSON number, or a string holding one; fails where Go's strconv fails. */
function goTime(value: unknown, name: string): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && GO_NUMBER.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw new TokenRejected(`failed to unmarshal claims: ${name} is not a number`);
  return Math.trunc(n);
}

/**
 * The seconds of exp or nbf. Go turns them into an int64 (a float beyond it becomes whatever the CPU
 * makes of it) and adds the seconds from year 1 to 1970, wrapping around: the largest int64 is a time
 * long past. Within 2^53 both readings are exact and nothing wraps; beyond, the token is refused.
 */
function goSeconds(value: unknown, name: string): number {
  const seconds = goTime(value, name);
  if (!Number.isSafeInteger(seconds)) throw new TokenRejected(`${name} ${JSON.stringify(value)} is beyond what chaperone reads as the API server does`);
  return seconds;
}

/**
 * The claims go-oidc decodes into a Go struct, whose JSON decoder matches member names without regard
 * to letter case (and takes K for k, ſ for s): to the API server, "Exp" is the expiry and "ISS" the
 * issuer, the last such member winning. RFC 7519 says claim names are case-sensitive, so a token with
 * such a member means one thing to the API server and another to everyone else: it is refused.
 * (The API server reads every other claim, username, groups, email_verified and the rest, by its exact
 * name, and so does chaperone.)
 */
export const STRUCT_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'nonce', 'at_hash', '_claim_names', '_claim_sources'] as const;

function checkClaimNames(claims: Claims): void {
  for (const name of Object.keys(claims)) {
    const field = STRUCT_CLAIMS.find((f) => f !== name && goFieldMatches(name, f));
    if (field) throw new TokenRejected(`the claim ${JSON.stringify(name)} is read as ${field} by the API server (its JSON decoder ignores letter case there)`);
  }
}

const goStringOrNull = (value: unknown) => value === undefined || value === null || typeof value === 'string';

/** The registered claims must have the types go-oidc decodes them into, or the API server refuses the token. */
function checkClaimTypes(claims: Claims): void {
  for (const name of ['iss', 'sub', 'nonce', 'at_hash']) {
    if (!goStringOrNull(claims[name])) throw new TokenRejected(`failed to unmarshal claims: ${name} is not a string`);
  }
  const aud = claims.aud;
  if (aud !== undefined && aud !== null && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
    throw new TokenRejected('failed to unmarshal claims: aud is neither a string nor a list of strings');
  }
  // exp and iat are Go values, not pointers: null fails their decoder. nbf is a pointer: null is none.
  if (claims.iat !== undefined) goTime(claims.iat, 'iat');
  if (claims.exp === null) goTime(null, 'exp');
  checkDistributedClaims(claims);
}

/**
 * OpenID distributed claims, as go-oidc checks them in every token, whatever the configuration:
 * _claim_names maps claims to sources, each of which must be in _claim_sources (endpoint and
 * access_token strings, their member names matched without regard to letter case).
 */
function checkDistributedClaims(claims: Claims): void {
  const { _claim_names: names, _claim_sources: sources } = claims;
  if (isSet(names) && !(isObject(names) && Object.values(names).every(goStringOrNull))) throw new TokenRejected('failed to unmarshal claims: _claim_names is not a map of strings');
  if (isSet(sources)) checkClaimSources(sources);
  if (isObject(names)) for (const source of Object.values(names)) checkClaimSource(source, sources);
}

/** A claim name's source: named, and present in _claim_sources. */
function checkClaimSource(source: unknown, sources: unknown): void {
  if (typeof source !== 'string' || source === '') throw new TokenRejected('failed to obtain source from claim name');
  if (!isObject(sources) || !Object.hasOwn(sources, source)) throw new TokenRejected('source does not exist');
}

const isSet = (value: unknown): boolean => value !== undefined && value !== null;

function checkClaimSources(sources: unknown): void {
  if (!isObject(sources)) throw new TokenRejected('failed to unmarshal claims: _claim_sources is not a map');
  for (const source of Object.values(sources)) {
    if (source === null) continue;
    if (!isObject(source)) throw new TokenRejected('failed to unmarshal claims: a claim source is not an object');
    const field = ['endpoint', 'access_token'].find((name) => !goFieldMembers(source, name).every((member) => goStringOrNull(source[member])));
    if (field !== undefined) throw new TokenRejected(`failed to unmarshal claims: a claim source's ${field} is not a string`);
  }
}

/**
 * The JOSE header as go-jose reads it: duplicate members are refused, alg, kid and nonce are strings.
 * go-jose also parses jwk and x5c, and honours b64 (with or without crit), where jose does otherwise:
 * a token that has any of them (no ID token does) is refused.
 */
function checkHeader(segment: string): void {
  let header: unknown;
  try {
    header = parseGoJson(Buffer.from(segment, 'base64url'));
  } catch (err) {
    throw new TokenRejected(`malformed jwt: the header is ${(err as Error).message}`);
  }
  if (!isObject(header)) throw new TokenRejected('malformed jwt: the header is not a JSON object');
  for (const name of ['alg', 'kid', 'nonce']) if (!goStringOrNull(header[name])) throw new TokenRejected(`malformed jwt: the header's ${name} is not a string`);
  for (const name of ['jwk', 'x5c', 'b64', 'crit']) {
    if (header[name] !== undefined && header[name] !== null) throw new TokenRejected(`the header has ${name}, which the API server's JOSE library reads its own way`);
  }
}

function audiencesOf(claims: Claims): string[] {
  const aud = claims.aud;
  if (typeof aud === 'string') return [aud];
  return Array.isArray(aud) ? (aud as string[]) : [];
}

const COMPACT_JWS = /^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/** Verifies signature and standard claims; resolves with the claims or rejects with TokenRejected. */
export async function verifyJwt(token: string, keys: RemoteKeySet, options: VerifyOptions): Promise<Claims> {
  // Three segments of base64url and nothing else, as the API server's decoder takes them: jose's
  // would skip whitespace inside a segment, and verify a token the API server refuses.
  if (!COMPACT_JWS.test(token)) throw new TokenRejected('malformed jwt');
  checkHeader(token.slice(0, token.indexOf('.')));
  let payload: Uint8Array;
  try {
    payload = await keys.verify(token, options.algorithms);
  } catch (err) {
    throw new TokenRejected(rejection(err, options.algorithms));
  }
  const claims = parseClaims(payload);
  checkClaimNames(claims);
  checkClaimTypes(claims);
  checkIssuerAndAudience(claims, options);
  checkValidity(claims, options.now ?? Date.now());
  return claims;
}

function parseClaims(payload: Uint8Array): Claims {
  try {
    const parsed = parseGoJson(payload);
    if (!isObject(parsed)) throw new JsonRefused('not an object');
    return parsed;
  } catch (err) {
    throw new TokenRejected(`failed to unmarshal claims: the payload is ${(err as Error).message}`);
  }
}

function checkIssuerAndAudience(claims: Claims, options: VerifyOptions): void {
  const iss = claims.iss ?? '';
  if (iss !== options.issuerUrl && !(options.issuerUrl === GOOGLE && iss === 'accounts.google.com')) {
    throw new TokenRejected(`id token issued by a different provider, expected ${JSON.stringify(options.issuerUrl)} got ${JSON.stringify(iss)}`);
  }
  const audiences = audiencesOf(claims);
  if (!audiences.some((a) => options.audiences.includes(a))) {
    throw new TokenRejected(`expected audience in ${JSON.stringify(options.audiences)} got ${JSON.stringify(audiences)}`);
  }
}

function checkValidity(claims: Claims, now: number): void {
  const exp = claims.exp === undefined ? 0 : goSeconds(claims.exp, 'exp');
  if (exp * 1000 < now) throw new TokenRejected(`token is expired (exp ${new Date(exp * 1000).toISOString()})`);
  if (!isSet(claims.nbf)) return;
  const nbf = goSeconds(claims.nbf, 'nbf');
  if (now + NOT_BEFORE_LEEWAY_MS < nbf * 1000) throw new TokenRejected(`token is not valid before ${new Date(nbf * 1000).toISOString()}`);
}

function rejection(err: unknown, algorithms: readonly string[]): string {
  if (err instanceof errors.JOSEAlgNotAllowed) return `id token signed with an algorithm not allowed (expected one of ${algorithms.join(', ')})`;
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key of the issuer matches the token (unknown kid)';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'failed to verify id token signature';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JOSENotSupported) return `malformed jwt: ${(err as Error).message}`;
  if (err instanceof TokenRejected) return err.message;
  return `could not verify the token: ${(err as Error).message}`;
}
