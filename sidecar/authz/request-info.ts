// The attributes kube-apiserver derives from a request's method and URL (its RequestInfoFactory, in
// k8s.io/apiserver/pkg/endpoints/request/requestinfo.go), so the SubjectAccessReview the sidecar
// asks for is the one the API server itself would make. Pure: no I/O, never throws.
//
// The API server sees Go's url.URL: the path percent-decoded (so %2F splits segments), the query
// parsed by url.ParseQuery. Where Go would refuse the request line outright (a control character,
// a bad %-escape, a target that is not a path) the API server answers 400 before it derives
// anything; here such input is simply a non-resource request.

export interface RequestInfo {
  isResourceRequest: boolean;
  /** The URL path, percent-decoded as the API server does. */
  path: string;
  /** get list watch create update patch delete deletecollection (or proxy, from the legacy /proxy/ prefix); for non-resource requests the lower-cased HTTP method. */
  verb: string;
  /** 'api', 'apis' or '' */
  apiPrefix: string;
  apiGroup: string;
  apiVersion: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  parts: string[];
}

const SPECIAL_VERBS = new Set(['proxy', 'watch']);
// After /namespaces/{name}/ these are subresources of the namespace, anything else is a resource in it.
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);
// Go's switch on req.Method is case-sensitive: "get" is no GET.
const VERB_BY_METHOD: Readonly<Record<string, string>> = {
  POST: 'create',
  GET: 'get',
  HEAD: 'get',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

export function requestInfo(method: string, url: string): RequestInfo {
  const queryAt = url.indexOf('?');
  const rawPath = queryAt < 0 ? url : url.slice(0, queryAt);
  const rawQuery = queryAt < 0 ? '' : url.slice(queryAt + 1);
  const path = acceptablePath(url, rawPath);

  const info: RequestInfo = {
    isResourceRequest: false,
    path: path ?? rawPath,
    verb: asciiLower(method),
    apiPrefix: '',
    apiGroup: '',
    apiVersion: '',
    namespace: '',
    resource: '',
    subresource: '',
    name: '',
    parts: [],
  };
  if (path === undefined) return info;

  const segments = splitPath(path);
  // /api/{version}/{resource}... or /apis/{group}/{version}/{resource}...: fewer segments is discovery.
  const [prefix] = segments;
  if (segments.length < 3 || (prefix !== 'api' && prefix !== 'apis')) return info;
  // Go records the prefix before it finds /apis/{group}/{version} too short; the request stays non-resource.
  info.apiPrefix = prefix;
  if (prefix === 'apis') {
    if (segments.length < 4) return info;
    info.apiGroup = segments[1]!;
  }
  let rest = segments.slice(prefix === 'api' ? 1 : 2);
  info.apiVersion = rest[0]!;
  rest = rest.slice(1);
  info.isResourceRequest = true;

  if (SPECIAL_VERBS.has(rest[0]!)) {
    // The API server fails with 500 here (and audits nothing); what is known so far is all there is.
    if (rest.length < 2) return info;
    info.verb = rest[0]!;
    rest = rest.slice(1);
  } else {
    info.verb = VERB_BY_METHOD[method] ?? '';
  }

  if (rest[0] === 'namespaces' && rest.length > 1) {
    // Also for the namespace object itself: /api/v1/namespaces/foo has namespace "foo" and name "foo".
    info.namespace = rest[1]!;
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2]!)) rest = rest.slice(2);
  }
  info.parts = rest;
  info.resource = rest[0] ?? '';
  info.name = rest[1] ?? '';
  // /proxy/{resource}/{name}/{path...}: what follows the name is the proxied path, not a subresource.
  if (rest.length >= 3 && info.verb !== 'proxy') info.subresource = rest[2]!;

  if (info.name === '' && info.verb === 'get') {
    const query = parseQuery(rawQuery);
    const options = listOptions(query);
    info.verb = options.watch ? 'watch' : 'list';
    if (options.nameFromFieldSelector !== undefined && isPathSegmentName(options.nameFromFieldSelector)) {
      info.name = options.nameFromFieldSelector;
    }
  }
  if (info.name === '' && info.verb === 'delete') info.verb = 'deletecollection';
  return info;
}

/** The percent-decoded path, or undefined where Go's url.ParseRequestURI would reject the target. */
function acceptablePath(url: string, rawPath: string): string | undefined {
  if (/[\x00-\x1f\x7f]/.test(url)) return undefined;
  // Only origin-form targets; Go also takes absolute-form (http://host/path), which a client of the
  // sidecar has no business sending.
  if (!rawPath.startsWith('/')) return undefined;
  return percentDecode(rawPath, false);
}

function splitPath(path: string): string[] {
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? [] : trimmed.split('/');
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

// ---- Go's url.ParseQuery: '&'-separated, a pair with ';' or a bad escape is dropped ----

const MAX_QUERY_PARAMS = 10_000; // Go's net/url default: more, and the whole query parses as empty

function parseQuery(raw: string): Map<string, string[]> {
  const values = new Map<string, string[]>();
  if (raw.split('&').length > MAX_QUERY_PARAMS) return values;
  for (const pair of raw.split('&')) {
    if (pair === '' || pair.includes(';')) continue;
    const eq = pair.indexOf('=');
    const key = percentDecode(eq < 0 ? pair : pair.slice(0, eq), true);
    const value = percentDecode(eq < 0 ? '' : pair.slice(eq + 1), true);
    if (key === undefined || value === undefined) continue;
    const list = values.get(key);
    if (list) list.push(value);
    else values.set(key, [value]);
  }
  return values;
}

function first(query: Map<string, string[]>, key: string): string | undefined {
  return query.get(key)?.[0];
}

// ---- the ListOptions the API server decodes to tell list from watch and find a name ----

interface ListOptionsView {
  watch: boolean;
  nameFromFieldSelector: string | undefined;
}

/**
 * The API server decodes the whole query into ListOptions. If any of it fails to decode (a bad
 * label or field selector, a limit that is not an integer), it falls back to reading only `watch`,
 * and then never takes a name from the field selector.
 */
function listOptions(query: Map<string, string[]>): ListOptionsView {
  const watchValue = first(query, 'watch');
  const limit = first(query, 'limit');
  const timeoutSeconds = first(query, 'timeoutSeconds');
  const labelSelector = first(query, 'labelSelector') ?? '';
  const fieldSelector = parseFieldSelector(first(query, 'fieldSelector') ?? '');
  const decoded =
    (limit === undefined || isInt64(limit)) &&
    (timeoutSeconds === undefined || isInt64(timeoutSeconds)) &&
    isValidLabelSelector(labelSelector) &&
    fieldSelector !== undefined;
  if (!decoded) {
    // The fallback lower-cases (strings.ToLower) where the decoder case-folds (strings.EqualFold).
    return { watch: watchValue !== undefined && !['false', '0'].includes(asciiLower(watchValue)), nameFromFieldSelector: undefined };
  }
  return { watch: watchValue !== undefined && watchValue !== '0' && !equalFoldFalse(watchValue), nameFromFieldSelector: fieldSelector };
}

// strings.EqualFold(s, "false"): simple case folding, under which U+017F (long s) is an 's'.
function equalFoldFalse(s: string): boolean {
  return asciiLower(s).replace(/\u017f/g, 's') === 'false';
}

function isInt64(s: string): boolean {
  if (!/^[+-]?[0-9]+$/.test(s)) return false;
  const n = BigInt(s);
  return n >= -(2n ** 63n) && n < 2n ** 63n;
}

// content.IsPathSegmentName
function isPathSegmentName(name: string): boolean {
  return name !== '.' && name !== '..' && !name.includes('/') && !name.includes('%');
}

// ---- fields.ParseSelector, as far as RequiresExactMatch("metadata.name") needs it ----

/**
 * undefined if the selector does not parse; otherwise the value of the metadata.name=/== term the
 * API server would find (terms are sorted bytewise first, the first match wins), or '' if none.
 */
function parseFieldSelector(selector: string): string | undefined {
  let found: { term: string; value: string } | undefined;
  for (const term of splitFieldTerms(selector)) {
    if (term === '') continue;
    const split = splitFieldTerm(term);
    if (!split) return undefined;
    const value = unescapeFieldValue(split.rhs);
    if (value === undefined) return undefined;
    if (split.lhs === 'metadata.name' && split.op !== '!=' && (!found || compareCodePoints(term, found.term) < 0)) {
      found = { term, value };
    }
  }
  return found?.value ?? '';
}

function splitFieldTerms(selector: string): string[] {
  if (selector === '') return [];
  const terms: string[] = [];
  let start = 0;
  let escaped = false;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (escaped) escaped = false;
    else if (c === '\\') escaped = true;
    else if (c === ',') {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(selector.slice(start));
  return terms;
}

function splitFieldTerm(term: string): { lhs: string; op: string; rhs: string } | undefined {
  for (let i = 0; i < term.length; i++) {
    for (const op of ['!=', '==', '=']) {
      if (term.startsWith(op, i)) return { lhs: term.slice(0, i), op, rhs: term.slice(i + op.length) };
    }
  }
  return undefined;
}

function unescapeFieldValue(s: string): string | undefined {
  let out = '';
  let escaped = false;
  for (const c of s) {
    if (escaped) {
      if (c !== '\\' && c !== ',' && c !== '=') return undefined;
      out += c;
      escaped = false;
    } else if (c === '\\') escaped = true;
    else if (c === ',' || c === '=') return undefined;
    else out += c;
  }
  return escaped ? undefined : out;
}

// Go compares strings bytewise; on UTF-8 that is code point order (UTF-16 units order differently).
function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

// ---- labels.Parse: only whether it succeeds, since a bad label selector costs the name ----

type LabelToken = 'end' | 'error' | 'id' | '(' | ')' | ',' | '!' | '==' | '=' | '!=' | '>' | '<' | 'in' | 'notin';

const LABEL_OPERATOR_TOKENS: ReadonlySet<string> = new Set(['(', ')', ',', '!', '==', '=', '!=', '>', '<']);

function isLabelWhitespace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

function isLabelSymbol(c: string): boolean {
  return '=!(),><'.includes(c) && c !== '';
}

function lexLabelSelector(s: string): { tok: LabelToken; lit: string }[] {
  let pos = 0;
  // Like Go's lexer, a NUL reads as the end of the input (and is consumed).
  const read = (): string => {
    if (pos >= s.length) return '\0';
    return s[pos++]!;
  };
  const tokens: { tok: LabelToken; lit: string }[] = [];
  for (;;) {
    let c = read();
    while (isLabelWhitespace(c)) c = read();
    if (c === '\0') {
      tokens.push({ tok: 'end', lit: '' });
      return tokens;
    }
    pos--;
    if (isLabelSymbol(c)) {
      // Longest run of symbols that is still an operator.
      let buffer = '';
      let last: LabelToken | undefined;
      for (;;) {
        const ch = read();
        if (ch === '\0') break;
        if (!isLabelSymbol(ch)) {
          pos--;
          break;
        }
        buffer += ch;
        if (LABEL_OPERATOR_TOKENS.has(buffer)) last = buffer as LabelToken;
        else if (last) {
          pos--;
          break;
        }
      }
      tokens.push(last ? { tok: last, lit: last } : { tok: 'error', lit: buffer });
    } else {
      let buffer = '';
      for (;;) {
        const ch = read();
        if (ch === '\0') break;
        if (isLabelSymbol(ch) || isLabelWhitespace(ch)) {
          pos--;
          break;
        }
        buffer += ch;
      }
      tokens.push({ tok: buffer === 'in' || buffer === 'notin' ? buffer : 'id', lit: buffer });
    }
  }
}

function isValidLabelSelector(selector: string): boolean {
  const tokens = lexLabelSelector(selector);
  let position = 0;
  // Where a value may stand, 'in' and 'notin' are plain identifiers.
  const asValue = (tok: LabelToken): LabelToken => (tok === 'in' || tok === 'notin' ? 'id' : tok);
  const peek = (): { tok: LabelToken; lit: string } => {
    const t = tokens[Math.min(position, tokens.length - 1)]!;
    return { tok: asValue(t.tok), lit: t.lit };
  };
  const take = (asKeyword = false): { tok: LabelToken; lit: string } => {
    const t = tokens[Math.min(position, tokens.length - 1)]!;
    position++;
    return { tok: asKeyword ? t.tok : asValue(t.tok), lit: t.lit };
  };

  const requirement = (): boolean => {
    let t = take();
    let unary = false;
    if (t.tok === '!') {
      unary = true;
      t = take();
    }
    if (t.tok !== 'id' || !isLabelKey(t.lit)) return false;
    const next = peek().tok;
    if (unary || next === 'end' || next === ',') return true;
    const op = take(true).tok;
    if (op === 'in' || op === 'notin') {
      if (take().tok !== '(') return false;
      const values: string[] = [];
      const after = peek().tok;
      if (after === ')') {
        take();
        return true; // "()" is the empty value
      }
      if (after !== 'id' && after !== ',') return false;
      for (;;) {
        const v = take();
        if (v.tok === 'id') {
          values.push(v.lit);
          const following = peek().tok;
          if (following === ')') break;
          if (following !== ',') return false;
        } else if (v.tok === ',') {
          const following = peek().tok;
          if (following === ')') break;
        } else {
          return false;
        }
      }
      if (take().tok !== ')') return false;
      return values.every(isLabelValue);
    }
    if (op !== '=' && op !== '==' && op !== '!=' && op !== '>' && op !== '<') return false;
    let value = '';
    const after = peek().tok;
    if (after !== 'end' && after !== ',') {
      const v = take();
      if (v.tok !== 'id') return false;
      value = v.lit;
    }
    if ((op === '>' || op === '<') && !isInt64(value)) return false;
    return isLabelValue(value);
  };

  for (;;) {
    const { tok } = peek();
    if (tok === 'end') return true;
    if (tok !== 'id' && tok !== '!') return false;
    if (!requirement()) return false;
    const after = take().tok;
    if (after === 'end') return true;
    if (after !== ',') return false;
    const next = peek().tok;
    if (next !== 'id' && next !== '!') return false;
  }
}

const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function isLabelKey(key: string): boolean {
  const parts = key.split('/');
  if (parts.length > 2) return false;
  const name = parts[parts.length - 1]!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)) return false;
  }
  return name.length <= 63 && LABEL_NAME.test(name);
}

function isLabelValue(value: string): boolean {
  return value === '' || (value.length <= 63 && LABEL_NAME.test(value));
}

// ---- percent-decoding to bytes, and bytes to a string as Go's JSON would show them ----

const utf8Encoder = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** undefined on a malformed escape, as Go's url.PathUnescape / url.QueryUnescape. */
function percentDecode(s: string, plusIsSpace: boolean): string | undefined {
  if (!s.includes('%') && !(plusIsSpace && s.includes('+'))) return s;
  const input = utf8Encoder.encode(s);
  const out = new Uint8Array(input.length);
  let n = 0;
  for (let i = 0; i < input.length; i++) {
    const b = input[i]!;
    if (b === 0x25) {
      const hi = hexValue(input[i + 1]);
      const lo = hexValue(input[i + 2]);
      if (hi < 0 || lo < 0) return undefined;
      out[n++] = (hi << 4) | lo;
      i += 2;
    } else {
      out[n++] = plusIsSpace && b === 0x2b ? 0x20 : b;
    }
  }
  return utf8ToString(out.subarray(0, n));
}

function hexValue(b: number | undefined): number {
  if (b === undefined) return -1;
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x41 + 10;
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10;
  return -1;
}

/**
 * Go keeps the raw bytes; where they are not UTF-8, its JSON (the SubjectAccessReview, the audit
 * log) carries one U+FFFD per offending byte. WHATWG's decoder would merge some of them.
 */
function utf8ToString(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    // fall through to the byte-by-byte decoder
  }
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const length = validSequenceLength(bytes, i);
    if (length === 0) {
      out += '\ufffd';
      i += 1;
    } else {
      out += strictUtf8.decode(bytes.subarray(i, i + length));
      i += length;
    }
  }
  return out;
}

// Length of the well-formed UTF-8 sequence at i (Unicode Table 3-7), or 0.
function validSequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0x80) return 1;
  let length: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) length = 2;
  else if (b0 >= 0xe0 && b0 <= 0xef) {
    length = 3;
    if (b0 === 0xe0) lo = 0xa0;
    if (b0 === 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    length = 4;
    if (b0 === 0xf0) lo = 0x90;
    if (b0 === 0xf4) hi = 0x8f;
  } else return 0;
  for (let k = 1; k < length; k++) {
    const b = bytes[i + k];
    if (b === undefined) return 0;
    const [min, max] = k === 1 ? [lo, hi] : [0x80, 0xbf];
    if (b < min || b > max) return 0;
  }
  return length;
}
