// A webhook token authenticator, configured as the API server's --authentication-token-webhook-config-file
// (a kubeconfig, read by the API server's rules: lib/webhook-kubeconfig.ts), speaking
// authentication.k8s.io/v1 or v1beta1 TokenReview (pam_hook speaks v1beta1). A webhook that is down,
// slow or answers garbage fails this method with a reason for the audit event; it never lets anyone in.
import { WebhookClient } from '../../lib/webhook-kubeconfig.js';
import type { TokenReviewVersion, WebhookTarget } from '../../lib/sidecar-config/tokens.js';
import type { AuthenticationResult } from './chain.js';
import { TokenAuthenticator } from './bearer.js';
import type { Answer } from '../../lib/bounded-call.js';
import { goField, goFieldMembers, isObject, JsonRefused, parseGoJson } from './jwt/go-json.js';
import { identityFromUserInfo, ReviewCache, type ReviewCacheOptions, type ReviewVerdict } from './review-cache.js';

export interface WebhookOptions {
  target: WebhookTarget;
  version: TokenReviewVersion;
  cache: ReviewCacheOptions;
  timeoutMs: number;
  /** Audiences asked for; when the webhook names audiences, one of these must be among them. */
  audiences: readonly string[];
}

export class WebhookTokenAuthenticator extends TokenAuthenticator {
  readonly method = 'webhook' as const;
  private readonly client: WebhookClient;
  private readonly cache: ReviewCache;

  constructor(private readonly options: WebhookOptions) {
    super();
    this.client = new WebhookClient(options.target);
    this.cache = new ReviewCache(options.cache);
  }

  async authenticateToken(token: string): Promise<AuthenticationResult> {
    try {
      const verdict = await this.cache.get(token, () => this.review(token));
      return verdict.authenticated
        ? { outcome: 'success', authenticated: { method: 'webhook', identity: verdict.identity } }
        : { outcome: 'failure', reason: verdict.reason };
    } catch (err) {
      return { outcome: 'failure', reason: `the token webhook could not be asked: ${(err as Error).message}` };
    }
  }

  private async review(token: string): Promise<ReviewVerdict> {
    const { version, audiences, timeoutMs } = this.options;
    const apiVersion = `authentication.k8s.io/${version}`;
    const body = JSON.stringify({ apiVersion, kind: 'TokenReview', spec: { token, ...(audiences.length > 0 ? { audiences } : {}) } });
    const answer = await this.client.post({ body, timeoutMs });
    return verdictOf(readAnswer(answer), { version, audiences, from: 'webhook' });
  }

  close(): void {
    this.client.close();
  }
}

const GROUP = 'authentication.k8s.io';

/**
 * The answer as the API server's webhook client reads it (client-go's REST client and the generic
 * webhook's codec): the body of a 200 to 206 only (any other status is an error; a redirect, which Go
 * would follow, is refused here), under any Content-Type that Go's mime.ParseMediaType takes. Its
 * codec would also read YAML and protobuf; chaperone reads JSON only, as Go's reads it (go-json.ts).
 */
export function readAnswer(answer: Answer): unknown {
  if (answer.status < 200 || answer.status > 206) throw new Error(`the webhook answered ${answer.status}`);
  if (!isReadableContentType(answer.contentType)) throw new Error(`the webhook answered with a Content-Type the API server could not parse either: ${JSON.stringify(answer.contentType)}`);
  const first = answer.body.find((byte) => byte !== 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d);
  if (first !== 0x7b) throw new Error(`the webhook answered ${answer.status} with a body that is not a JSON object (${answer.contentType || 'no content type'})`);
  try {
    return parseGoJson(answer.body);
  } catch (err) {
    if (!(err instanceof JsonRefused) || err.syntax) throw new Error(`the webhook answered ${answer.status} with a body that is not JSON (${answer.contentType || 'no content type'})`, { cause: err });
    throw new Error(`the webhook's answer would not be read alike by the API server and chaperone: ${err.message}`, { cause: err });
  }
}

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const PARAMETER = new RegExp(`;[ \\t]*(${TOKEN})[ \\t]*=[ \\t]*(?:${TOKEN}|"[^"\\\\\\r\\n]*")[ \\t]*`, 'g');
const CONTENT_TYPE = new RegExp(`^[ \\t]*${TOKEN}(?:/${TOKEN})?[ \\t]*((?:${PARAMETER.source})*)(?:;[ \\t]*)?$`);

/**
 * A Content-Type Go's mime.ParseMediaType is sure to take, or none (client-go then assumes JSON): a
 * type, parameters each named once, a trailing semicolon. Go takes a little more (other whitespace,
 * escapes in quoted values, a repeated parameter with the same value); chaperone refuses that.
 */
export function isReadableContentType(contentType: string): boolean {
  if (contentType === '') return true;
  const match = CONTENT_TYPE.exec(contentType);
  if (!match) return false;
  const names = [...match[1]!.matchAll(PARAMETER)].map((m) => m[1]!.toLowerCase());
  return new Set(names).size === names.length;
}

/** A TokenReview's status as Go decodes it into the API server's struct: absent and null are the zero value. */
export interface TokenReviewStatus {
  authenticated: boolean;
  error: string;
  audiences: string[];
  user: { username: string; uid: string; groups: string[]; extra: Map<string, string[]> };
}

function goString(value: unknown, at: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new Error(`${at} is not a string`);
  return value;
}

function goBool(value: unknown, at: string): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new Error(`${at} is not a boolean`);
  return value;
}

/** A []string: null is none, and so is a null item's string (""). */
function goStrings(value: unknown, at: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${at} is not a list`);
  return value.map((item, i) => goString(item, `${at}[${i}]`));
}

function goStruct(value: unknown, at: string): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new Error(`${at} is not an object`);
  return value;
}

const OBJECT_META_FIELDS = new Set(['name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels', 'annotations', 'ownerReferences', 'finalizers', 'managedFields']);
const OBJECT_META_STRINGS = new Set(['name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion']);

/**
 * Go decodes the whole TokenReview, metadata too, and a field of the wrong type fails the answer.
 * chaperone checks what a webhook writes there (Go writes {"creationTimestamp": null}): strings, and
 * labels and annotations; any other metadata field that is set is refused rather than checked.
 */
function checkMetadata(value: unknown): void {
  const metadata = goStruct(value, 'metadata');
  for (const [name, field] of Object.entries(metadata)) {
    if (field === null || !OBJECT_META_FIELDS.has(name)) continue;
    if (OBJECT_META_STRINGS.has(name) && typeof field === 'string') continue;
    if ((name === 'labels' || name === 'annotations') && isObject(field) && Object.values(field).every((v) => v === null || typeof v === 'string')) continue;
    throw new Error(`metadata.${name} is set to something chaperone does not check (only names, uid, resourceVersion, labels and annotations)`);
  }
}

/** schema.ParseGroupVersion. */
function parseGroupVersion(apiVersion: string): { group: string; version: string } {
  if (apiVersion === '' || apiVersion === '/') return { group: '', version: '' };
  const parts = apiVersion.split('/');
  if (parts.length > 2) throw new Error(`unexpected GroupVersion string: ${apiVersion}`);
  return parts.length === 1 ? { group: '', version: apiVersion } : { group: parts[0]!, version: parts[1]! };
}

/** apiVersion and kind as the API server's decoder finds them: a TokenReview of the version asked. */
function checkTypeMeta(document: Record<string, unknown>, version: TokenReviewVersion): void {
  for (const field of ['apiVersion', 'kind']) for (const name of goFieldMembers(document, field)) goString(document[name], name);
  const apiVersion = goString(goField(document, 'apiVersion'), 'apiVersion');
  const kind = goString(goField(document, 'kind'), 'kind') || 'TokenReview';
  let { group, version: answered } = parseGroupVersion(apiVersion);
  if (answered === '' && (group === '' || group === GROUP)) [group, answered] = [GROUP, version];
  if (group !== GROUP || answered !== version || kind !== 'TokenReview') {
    throw new Error(`the answer is not an ${GROUP} TokenReview of ${version} (apiVersion ${JSON.stringify(apiVersion)}, kind ${JSON.stringify(kind)})`);
  }
}

/**
 * A TokenReview answer read as the API server reads it. Its kind and version are found as its
 * decoder finds them: apiVersion and kind in any letter case (Go's encoding/json, the last such member
 * winning), an empty or missing one defaulted to what was asked; anything but a TokenReview of the
 * version asked fails (the API server has no conversion between v1 and v1beta1). The rest is read with
 * exact member names, as the API server's case-sensitive decoder reads it, every known field checked
 * for its type; unknown fields are ignored.
 */
export function reviewOf(document: unknown, version: TokenReviewVersion, from: ReviewSource = 'webhook'): TokenReviewStatus {
  if (!isObject(document)) throw new Error('the answer is not a JSON object');
  checkTypeMeta(document, version);
  goString(document.apiVersion, 'apiVersion');
  goString(document.kind, 'kind');
  // The cluster's own answers carry managedFields, which chaperone does not check; they are the API server's own writing.
  if (from === 'webhook') checkMetadata(document.metadata);
  const spec = goStruct(document.spec, 'spec');
  goString(spec.token, 'spec.token');
  goStrings(spec.audiences, 'spec.audiences');
  const status = goStruct(document.status, 'status');
  const user = goStruct(status.user, 'status.user');
  const extra = new Map<string, string[]>();
  for (const [key, values] of Object.entries(goStruct(user.extra, 'status.user.extra'))) extra.set(key, goStrings(values, `status.user.extra[${JSON.stringify(key)}]`));
  return {
    authenticated: goBool(status.authenticated, 'status.authenticated'),
    error: goString(status.error, 'status.error'),
    audiences: goStrings(status.audiences, 'status.audiences'),
    user: { username: goString(user.username, 'status.user.username'), uid: goString(user.uid, 'status.user.uid'), groups: goStrings(user.groups, 'status.user.groups'), extra },
  };
}

/** Who answered: a token webhook, or the cluster's own TokenReview API. */
export type ReviewSource = 'webhook' | 'cluster';

export interface VerdictOptions {
  version: TokenReviewVersion;
  /** The audiences asked for (spec.audiences): an answer that names audiences must share one with them. */
  audiences: readonly string[];
  /**
   * With no audiences asked for, an answer that names audiences is refused from a webhook (the API
   * server would judge them against its own audiences, which chaperone does not know), and taken from
   * the cluster (they are the API server's own).
   */
  from: ReviewSource;
}

/** A TokenReview answer judged as the API server's webhook authenticator judges it; throws when the API server would fail it. */
export function verdictOf(document: unknown, options: VerdictOptions): ReviewVerdict {
  const status = reviewOf(document, options.version, options.from);
  // The audiences come first, as in the API server: a mismatch is "not authenticated", whatever else the answer says.
  if (status.audiences.length > 0) {
    const { audiences } = options;
    const mismatch = audiences.length === 0 ? options.from === 'webhook' : !status.audiences.some((a) => audiences.includes(a));
    if (mismatch) {
      const asked = audiences.length === 0 ? 'no audiences were asked for (set --authentication-token-webhook-audiences to the API server\'s)' : `not for ${JSON.stringify(audiences)}`;
      return { authenticated: false, reason: `the token is for ${JSON.stringify(status.audiences)}: ${asked}` };
    }
  }
  // An error beside authenticated: true does not matter to the API server, nor here.
  if (!status.authenticated) return { authenticated: false, reason: status.error !== '' ? `the token was not authenticated: ${status.error}` : 'the token was not authenticated' };
  return { authenticated: true, identity: identityFromUserInfo(status.user) };
}
