// JSON bytes as the API server's Go decoders see them, read lazily: only the members a caller asks for
// are decoded, so a 3 MiB body costs one pass over its bytes and no tree of it.
//
// What Go does that JSON.parse does not: the document is bytes, not text, and a string's bytes that
// are not UTF-8 each become U+FFFD as utf8.DecodeRune reads them (one per byte that starts no valid
// sequence, where a WHATWG decoder replaces whole "maximal subparts"); an escaped surrogate that is
// not half of a pair is U+FFFD too (JSON.parse keeps it, unpaired). Duplicate member names are all
// kept, in document order: what they mean depends on what Go decodes them into (object-meta.ts).

/** The document is not JSON as Go reads it; the API server fails to decode it too. */
export class JsonSyntaxError extends Error {}

/** A value of a JSON document, as far as the metadata readers look at it. */
export type JsonView =
  | { type: 'object'; members(): [string, JsonView][] }
  | { type: 'string'; value: string }
  | { type: 'null' }
  /** A number, a boolean or an array: never what a metadata field may hold. */
  | { type: 'other' };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const REPLACEMENT = 0xfffd;

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const isDigit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;
const isHex = (c: number | undefined) => c !== undefined && ((c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66));

function fail(bytes: Uint8Array, at: number, what: string): never {
  throw new JsonSyntaxError(at >= bytes.length ? `unexpected end of JSON input (${what})` : `invalid character at offset ${at} (${what})`);
}

function skipSpace(bytes: Uint8Array, at: number): number {
  while (isSpace(bytes[at])) at++;
  return at;
}

/**
 * utf8.DecodeRune: the code point at `at` and how many bytes it takes; a byte that starts no valid
 * sequence (overlong, surrogate, beyond U+10FFFF, cut short) is U+FFFD taking that one byte.
 */
export function decodeRune(bytes: Uint8Array, at: number): [number, number] {
  const b0 = bytes[at]!;
  if (b0 < 0x80) return [b0, 1];
  const cont = (i: number, low = 0x80, high = 0xbf) => {
    const b = bytes[at + i];
    return b !== undefined && b >= low && b <= high;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? [((b0 & 0x1f) << 6) | (bytes[at + 1]! & 0x3f), 2] : [REPLACEMENT, 1];
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const [low, high] = b0 === 0xe0 ? [0xa0, 0xbf] : b0 === 0xed ? [0x80, 0x9f] : [0x80, 0xbf];
    if (!cont(1, low, high) || !cont(2)) return [REPLACEMENT, 1];
    return [((b0 & 0x0f) << 12) | ((bytes[at + 1]! & 0x3f) << 6) | (bytes[at + 2]! & 0x3f), 3];
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const [low, high] = b0 === 0xf0 ? [0x90, 0xbf] : b0 === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    if (!cont(1, low, high) || !cont(2) || !cont(3)) return [REPLACEMENT, 1];
    return [((b0 & 0x07) << 18) | ((bytes[at + 1]! & 0x3f) << 12) | ((bytes[at + 2]! & 0x3f) << 6) | (bytes[at + 3]! & 0x3f), 4];
  }
  return [REPLACEMENT, 1];
}

/** A Go string's bytes as Go's encoders write them out (encoding/json turns each invalid byte into U+FFFD as above). */
export function goText(bytes: Uint8Array): string {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    const out: string[] = [];
    for (let at = 0; at < bytes.length; ) {
      const [rune, size] = decodeRune(bytes, at);
      out.push(String.fromCodePoint(rune));
      at += size;
    }
    return out.join('');
  }
}

/** The offset just past the string that starts at `at` (a quote), its escapes and bytes checked as Go's scanner does. */
function stringEnd(bytes: Uint8Array, at: number): number {
  for (let i = at + 1; ; ) {
    const c = bytes[i];
    if (c === undefined) fail(bytes, i, 'in a string');
    if (c === QUOTE) return i + 1;
    if (c < 0x20) fail(bytes, i, 'a control character in a string');
    if (c !== BACKSLASH) {
      i++;
      continue;
    }
    const escape = bytes[i + 1];
    if (escape === 0x75) {
      for (let h = 2; h < 6; h++) if (!isHex(bytes[i + h])) fail(bytes, i + h, 'in a \\u escape');
      i += 6;
    } else if (escape !== undefined && '"\\/bfnrt'.includes(String.fromCharCode(escape))) {
      i += 2;
    } else {
      fail(bytes, i + 1, 'in a string escape');
    }
  }
}

function numberEnd(bytes: Uint8Array, at: number): number {
  let i = at;
  if (bytes[i] === 0x2d) i++;
  if (bytes[i] === 0x30) i++;
  else if (isDigit(bytes[i])) while (isDigit(bytes[i])) i++;
  else fail(bytes, i, 'in a number');
  if (bytes[i] === 0x2e) {
    i++;
    if (!isDigit(bytes[i])) fail(bytes, i, 'after a decimal point');
    while (isDigit(bytes[i])) i++;
  }
  if (bytes[i] === 0x65 || bytes[i] === 0x45) {
    i++;
    if (bytes[i] === 0x2b || bytes[i] === 0x2d) i++;
    if (!isDigit(bytes[i])) fail(bytes, i, 'in an exponent');
    while (isDigit(bytes[i])) i++;
  }
  return i;
}

function literalEnd(bytes: Uint8Array, at: number, literal: string): number {
  for (let k = 0; k < literal.length; k++) if (bytes[at + k] !== literal.charCodeAt(k)) fail(bytes, at + k, `in the literal ${literal}`);
  return at + literal.length;
}

/** Past the `"name":` that starts at `at`. */
function memberValueStart(bytes: Uint8Array, at: number): number {
  if (bytes[at] !== QUOTE) fail(bytes, at, 'looking for the beginning of an object key string');
  const colon = skipSpace(bytes, stringEnd(bytes, at));
  if (bytes[colon] !== 0x3a) fail(bytes, colon, "after an object key, looking for ':'");
  return skipSpace(bytes, colon + 1);
}

/** The offset just past the value that starts at `at`, every byte of it checked; iterative, so nesting costs no stack. */
function valueEnd(bytes: Uint8Array, at: number): number {
  const open: number[] = [];
  let i = at;
  for (;;) {
    // A value starts at i.
    i = skipSpace(bytes, i);
    const c = bytes[i];
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      const inner = skipSpace(bytes, i + 1);
      if (bytes[inner] === (c === OPEN_OBJECT ? CLOSE_OBJECT : CLOSE_ARRAY)) {
        i = inner + 1;
      } else {
        open.push(c);
        i = c === OPEN_OBJECT ? memberValueStart(bytes, inner) : inner;
        continue;
      }
    } else if (c === QUOTE) i = stringEnd(bytes, i);
    else if (c === 0x2d || isDigit(c)) i = numberEnd(bytes, i);
    else if (c === 0x74) i = literalEnd(bytes, i, 'true');
    else if (c === 0x66) i = literalEnd(bytes, i, 'false');
    else if (c === 0x6e) i = literalEnd(bytes, i, 'null');
    else fail(bytes, i, 'looking for the beginning of a value');
    // The value ended at i: close what it ends, or go on to the next member or element.
    for (;;) {
      const container = open.at(-1);
      if (container === undefined) return i;
      i = skipSpace(bytes, i);
      if (bytes[i] === 0x2c) {
        i = container === OPEN_OBJECT ? memberValueStart(bytes, skipSpace(bytes, i + 1)) : i + 1;
        break;
      }
      if (bytes[i] !== (container === OPEN_OBJECT ? CLOSE_OBJECT : CLOSE_ARRAY)) fail(bytes, i, 'after a value in an object or array');
      open.pop();
      i++;
    }
  }
}

/** The string that starts at `at` (checked already), unquoted as encoding/json's unquote does. */
function unquote(bytes: Uint8Array, at: number, end: number): string {
  const body = bytes.subarray(at + 1, end - 1);
  if (!body.includes(BACKSLASH)) return goText(body);
  const out: string[] = [];
  const hex4 = (i: number) => (body[i] === BACKSLASH && body[i + 1] === 0x75 ? parseInt(String.fromCharCode(...body.subarray(i + 2, i + 6)), 16) : -1);
  for (let i = 0; i < body.length; ) {
    const c = body[i]!;
    if (c !== BACKSLASH) {
      const [rune, size] = decodeRune(body, i);
      out.push(String.fromCodePoint(rune));
      i += size;
      continue;
    }
    const escape = String.fromCharCode(body[i + 1]!);
    if (escape !== 'u') {
      out.push(({ b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' } as Record<string, string>)[escape] ?? escape);
      i += 2;
      continue;
    }
    let rune = hex4(i);
    i += 6;
    if (rune >= 0xd800 && rune < 0xe000) {
      // utf16.DecodeRune: only a high surrogate followed by an escaped low one is a pair; the second escape is read on its own otherwise.
      const low = hex4(i);
      if (rune < 0xdc00 && low >= 0xdc00 && low < 0xe000) {
        rune = 0x10000 + ((rune - 0xd800) << 10) + (low - 0xdc00);
        i += 6;
      } else {
        rune = REPLACEMENT;
      }
    }
    out.push(String.fromCodePoint(rune));
  }
  return out.join('');
}

function view(bytes: Uint8Array, at: number, end: number): JsonView {
  switch (bytes[at]) {
    case OPEN_OBJECT:
      return { type: 'object', members: () => members(bytes, at) };
    case QUOTE:
      return { type: 'string', value: unquote(bytes, at, end) };
    case 0x6e:
      return { type: 'null' };
    default:
      return { type: 'other' };
  }
}

/** The members of the object that starts at `at` (checked already), in document order, duplicates and all. */
function members(bytes: Uint8Array, at: number): [string, JsonView][] {
  const found: [string, JsonView][] = [];
  let i = skipSpace(bytes, at + 1);
  if (bytes[i] === CLOSE_OBJECT) return found;
  for (;;) {
    const nameEnd = stringEnd(bytes, i);
    const name = unquote(bytes, i, nameEnd);
    const start = memberValueStart(bytes, i);
    const end = valueEnd(bytes, start);
    found.push([name, view(bytes, start, end)]);
    i = skipSpace(bytes, end);
    if (bytes[i] === CLOSE_OBJECT) return found;
    i = skipSpace(bytes, i + 1); // the comma, checked when the document was
  }
}

/** A whole JSON document: checked from end to end as Go checks it before decoding; throws JsonSyntaxError. */
export function jsonDocument(bytes: Uint8Array): JsonView {
  const start = skipSpace(bytes, 0);
  const end = valueEnd(bytes, start);
  const rest = skipSpace(bytes, end);
  if (rest !== bytes.length) fail(bytes, rest, 'after the top-level value');
  return view(bytes, start, end);
}

// ---- raw JSON as Go writes it into an event ----

/** Go's encoding/json nesting limit (its scanner's maxNestingDepth): deeper JSON is neither read nor written. */
const MAX_JSON_DEPTH = 10_000;

/**
 * Why a JSON body of this nesting is not recorded, if it is not: deeper than Go reads, the API server
 * refuses it (or cannot write its event); exactly as deep, the event holding it would be one deeper
 * than any Go reader reads (the API server writes such an event all the same).
 */
export function tooDeepToRecord(depth: number): string | undefined {
  if (depth > MAX_JSON_DEPTH) return `the body nests deeper than ${MAX_JSON_DEPTH}, more than the API server reads or writes`;
  if (depth === MAX_JSON_DEPTH) return `the body nests ${MAX_JSON_DEPTH} deep: an event holding it would nest deeper than Go's JSON reader reads (the API server writes one all the same)`;
  return undefined;
}

/** The deepest nesting of a JSON text (strings skipped). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '{' || c === '[') deepest = Math.max(deepest, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return deepest;
}

const HTML_ESCAPES: Record<string, string> = { '<': '\\u003c', '>': '\\u003e', '&': '\\u0026', '\u2028': '\\u2028', '\u2029': '\\u2029' };

/**
 * Go's json.Compact with HTML escaping (what json.Marshal does to a MarshalJSON result): whitespace
 * outside strings removed; <, >, &, U+2028 and U+2029 inside strings escaped. The text must be JSON.
 */
export function compactJson(text: string): string {
  return text.replace(/"(?:[^"\\]|\\.)*"|[ \t\r\n]+/g, (token) => (token.startsWith('"') ? token.replace(/[<>&\u2028\u2029]/g, (c) => HTML_ESCAPES[c]!) : ''));
}
