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
// A Map, not an object: a method named like one of Object's own properties ("toString") is no verb.
const VERB_BY_METHOD: ReadonlyMap<string, string> = new Map([
  ['POST', 'create'],
  ['GET', 'get'],
  ['HEAD', 'get'],
  ['PUT', 'update'],
  ['PATCH', 'patch'],
  ['DELETE', 'delete'],
]);

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
  const afterVersion = readApiVersion(info, splitPath(path));
  if (afterVersion === undefined) return info;
  const resourcePath = readVerb(info, afterVersion, method);
  if (resourcePath === undefined) return info;
  readResource(info, resourcePath);
  readCollectionVerb(info, rawQuery);
  return info;
}

/**
 * /api/{version}/{resource}... or /apis/{group}/{version}/{resource}...: records the prefix, group and
 * version and returns the segments after the version; undefined (still non-resource) for discovery.
 */
function readApiVersion(info: RequestInfo, segments: string[]): string[] | undefined {
  const [prefix] = segments;
  if (segments.length < 3 || (prefix !== 'api' && prefix !== 'apis')) return undefined;
  // Go records the prefix before it finds /apis/{group}/{version} too short; the request stays non-resource.
  info.apiPrefix = prefix;
  if (prefix === 'apis') {
    if (segments.length < 4) return undefined;
    info.apiGroup = segments[1]!;
  }
  const versionAt = prefix === 'api' ? 1 : 2;
  info.apiVersion = segments[versionAt]!;
  info.isResourceRequest = true;
  return segments.slice(versionAt + 1);
}

/** The verb from a /proxy/ or /watch/ prefix, else from the method; returns the segments after it. */
function readVerb(info: RequestInfo, rest: string[], method: string): string[] | undefined {
  if (!SPECIAL_VERBS.has(rest[0]!)) {
    info.verb = VERB_BY_METHOD.get(method) ?? '';
    return rest;
  }
  // The API server fails with 500 here (and audits nothing); what is known so far is all there is.
  if (rest.length < 2) return undefined;
  info.verb = rest[0]!;
  return rest.slice(1);
}

function readResource(info: RequestInfo, rest: string[]): void {
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
}

/** Without a name, get is list or watch (perhaps naming one object by field selector), delete is deletecollection. */
function readCollectionVerb(info: RequestInfo, rawQuery: string): void {
  if (info.name !== '') return;
  if (info.verb === 'delete') {
    info.verb = 'deletecollection';
    return;
  }
  if (info.verb !== 'get') return;
  const options = listOptions(parseQuery(rawQuery));
  info.verb = options.watch ? 'watch' : 'list';
  if (options.nameFromFieldSelector !== undefined && isPathSegmentName(options.nameFromFieldSelector)) {
    info.name = options.nameFromFieldSelector;
  }
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
  const fieldSelector = parseFieldSelector(first(query, 'fieldSelector') ?? '');
  if (fieldSelector === undefined || !otherListOptionsDecode(query)) {
    // The fallback lower-cases (strings.ToLower) where the decoder case-folds (strings.EqualFold).
    return { watch: watchValue !== undefined && !['false', '0'].includes(asciiLower(watchValue)), nameFromFieldSelector: undefined };
  }
  return { watch: watchValue !== undefined && watchValue !== '0' && !equalFoldFalse(watchValue), nameFromFieldSelector: fieldSelector };
}

function otherListOptionsDecode(query: Map<string, string[]>): boolean {
  const limit = first(query, 'limit');
  const timeoutSeconds = first(query, 'timeoutSeconds');
  return (
    (limit === undefined || isInt64(limit)) &&
    (timeoutSeconds === undefined || isInt64(timeoutSeconds)) &&
    isValidLabelSelector(first(query, 'labelSelector') ?? '')
  );
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
    if (isNameTerm(split) && (!found || compareCodePoints(term, found.term) < 0)) found = { term, value };
  }
  return found?.value ?? '';
}

function isNameTerm(term: { lhs: string; op: string }): boolean {
  return term.lhs === 'metadata.name' && term.op !== '!=';
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

function lexLabelSelector(s: string): LabelTokenOf[] {
  const lexer = new LabelLexer(s);
  const tokens: LabelTokenOf[] = [];
  for (;;) {
    const token = lexer.next();
    tokens.push(token);
    if (token.tok === 'end') return tokens;
  }
}

interface LabelTokenOf {
  tok: LabelToken;
  lit: string;
}

// Go's labels.Lexer, read and unread included: a NUL reads as the end of the input (and is consumed).
class LabelLexer {
  private pos = 0;

  constructor(private readonly s: string) {}

  next(): LabelTokenOf {
    let c = this.read();
    while (isLabelWhitespace(c)) c = this.read();
    if (c === '\0') return { tok: 'end', lit: '' };
    this.unread();
    return isLabelSymbol(c) ? this.operator() : this.identifier();
  }

  /** The longest run of symbols that is still an operator. */
  private operator(): LabelTokenOf {
    let buffer = '';
    let last: LabelToken | undefined;
    for (let ch = this.read(); ch !== '\0'; ch = this.read()) {
      if (!isLabelSymbol(ch)) {
        this.unread();
        break;
      }
      buffer += ch;
      if (LABEL_OPERATOR_TOKENS.has(buffer)) last = buffer as LabelToken;
      else if (last) {
        this.unread();
        break;
      }
    }
    return last ? { tok: last, lit: last } : { tok: 'error', lit: buffer };
  }

  private identifier(): LabelTokenOf {
    let buffer = '';
    for (let ch = this.read(); ch !== '\0'; ch = this.read()) {
      if (isLabelSymbol(ch) || isLabelWhitespace(ch)) {
        this.unread();
        break;
      }
      buffer += ch;
    }
    return { tok: buffer === 'in' || buffer === 'notin' ? buffer : 'id', lit: buffer };
  }

  private read(): string {
    if (this.pos >= this.s.length) return '\0';
    return this.s[this.pos++]!;
  }

  private unread(): void {
    this.pos--;
  }
}

function isValidLabelSelector(selector: string): boolean {
  return new LabelParser(lexLabelSelector(selector)).selector();
}

// What may follow a key and its operator, by operator; any other token there fails the parse.
const LABEL_REQUIREMENT_VALUES: Partial<Record<LabelToken, (parser: LabelParser) => boolean>> = {
  in: (parser) => parser.valueSet(),
  notin: (parser) => parser.valueSet(),
  '=': (parser) => parser.singleValue(isLabelValue),
  '==': (parser) => parser.singleValue(isLabelValue),
  '!=': (parser) => parser.singleValue(isLabelValue),
  '>': (parser) => parser.singleValue((value) => isInt64(value) && isLabelValue(value)),
  '<': (parser) => parser.singleValue((value) => isInt64(value) && isLabelValue(value)),
};

// Go's labels.Parser, as far as telling whether a selector parses.
class LabelParser {
  private position = 0;

  constructor(private readonly tokens: LabelTokenOf[]) {}

  selector(): boolean {
    if (this.peek().tok === 'end') return true;
    for (;;) {
      if (!startsRequirement(this.peek().tok) || !this.requirement()) return false;
      const after = this.take().tok;
      if (after !== ',') return after === 'end';
    }
  }

  /** `( value, ... )` after in/notin; "()" is the empty value. */
  valueSet(): boolean {
    if (this.take().tok !== '(') return false;
    const after = this.peek().tok;
    if (after === ')') {
      this.take();
      return true;
    }
    if (after !== 'id' && after !== ',') return false;
    const values = this.valueList();
    return values !== undefined && this.take().tok === ')' && values.every(isLabelValue);
  }

  /** The value after =, ==, !=, > or <; absent is the empty value. */
  singleValue(valid: (value: string) => boolean): boolean {
    const after = this.peek().tok;
    if (after === 'end' || after === ',') return valid('');
    const value = this.take();
    return value.tok === 'id' && valid(value.lit);
  }

  private requirement(): boolean {
    let key = this.take();
    const unary = key.tok === '!';
    if (unary) key = this.take();
    if (key.tok !== 'id' || !isLabelKey(key.lit)) return false;
    const next = this.peek().tok;
    if (unary || next === 'end' || next === ',') return true;
    const values = LABEL_REQUIREMENT_VALUES[this.take(true).tok];
    return values !== undefined && values(this);
  }

  /** Identifiers and commas up to (not taking) the closing parenthesis; undefined where the list breaks. */
  private valueList(): string[] | undefined {
    const values: string[] = [];
    for (;;) {
      const token = this.take();
      if (token.tok === 'id') values.push(token.lit);
      else if (token.tok !== ',') return undefined;
      const following = this.peek().tok;
      if (following === ')') return values;
      if (token.tok === 'id' && following !== ',') return undefined;
    }
  }

  private peek(): LabelTokenOf {
    return this.at(false);
  }

  /** The next token; as a keyword where an operator stands, else with in and notin as plain identifiers. */
  private take(asKeyword = false): LabelTokenOf {
    const token = this.at(asKeyword);
    this.position++;
    return token;
  }

  private at(asKeyword: boolean): LabelTokenOf {
    const token = this.tokens[Math.min(this.position, this.tokens.length - 1)]!;
    return asKeyword ? token : { tok: asValue(token.tok), lit: token.lit };
  }
}

function startsRequirement(tok: LabelToken): boolean {
  return tok === 'id' || tok === '!';
}

// Where a value may stand, 'in' and 'notin' are plain identifiers.
function asValue(tok: LabelToken): LabelToken {
  return tok === 'in' || tok === 'notin' ? 'id' : tok;
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

// The well-formed UTF-8 sequences by lead byte (Unicode Table 3-7): their length and the range of the
// second byte; every later byte is 80..BF.
const UTF8_LEAD_BYTES: readonly { from: number; to: number; length: number; secondMin: number; secondMax: number }[] = [
  { from: 0xc2, to: 0xdf, length: 2, secondMin: 0x80, secondMax: 0xbf },
  { from: 0xe0, to: 0xe0, length: 3, secondMin: 0xa0, secondMax: 0xbf },
  { from: 0xe1, to: 0xec, length: 3, secondMin: 0x80, secondMax: 0xbf },
  { from: 0xed, to: 0xed, length: 3, secondMin: 0x80, secondMax: 0x9f },
  { from: 0xee, to: 0xef, length: 3, secondMin: 0x80, secondMax: 0xbf },
  { from: 0xf0, to: 0xf0, length: 4, secondMin: 0x90, secondMax: 0xbf },
  { from: 0xf1, to: 0xf3, length: 4, secondMin: 0x80, secondMax: 0xbf },
  { from: 0xf4, to: 0xf4, length: 4, secondMin: 0x80, secondMax: 0x8f },
];

// Length of the well-formed UTF-8 sequence at i, or 0.
function validSequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0x80) return 1;
  const lead = UTF8_LEAD_BYTES.find((range) => b0 >= range.from && b0 <= range.to);
  if (!lead) return 0;
  for (let k = 1; k < lead.length; k++) {
    const b = bytes[i + k];
    const [min, max] = k === 1 ? [lead.secondMin, lead.secondMax] : [0x80, 0xbf];
    if (b === undefined || b < min || b > max) return 0;
  }
  return lead.length;
}
