// A YAML body as the API server reads it: sigs.k8s.io/yaml's YAMLToJSON, which decodes the FIRST
// document with go-yaml v2 (YAML 1.1) into Go maps, turns it into JSON (map keys sorted, each once)
// and hands that to the JSON decoders. The syntax is libyaml's (libyaml.ts); what the nodes mean is
// go-yaml v2's decoder's:
//
// - plain scalars resolve as go-yaml's resolve.go does (y/yes/on/off… are booleans, 0x1F and 0o17
//   and 1_000 are integers, 1e3 a float, ~ and the empty scalar null; a quoted scalar is a string);
// - explicit tags: !!str makes a string, !!binary base64-decodes into one, !!int/!!float/!!bool/!!null
//   /!!timestamp must fit or the document fails, and any other tag leaves the text as a string;
// - a later key replaces an earlier one, and a merge key (<<) copies its mapping's keys in where it
//   stands, over keys before it and under keys after it (go-yaml v2 merges in document order).
//
// Only the mappings a caller asks for are built, so aliases cost nothing beyond what is read.
import { goText, type JsonView } from './go-json-view.js';
import { firstYamlDocument, LibyamlError, type YamlNode } from './libyaml.js';

/** The YAML cannot be read here; the message says why (go-yaml may fail on it too). */
export class YamlUnreadable extends Error {}

const YAML_TAG = 'tag:yaml.org,2002:';
const TAG = { str: `${YAML_TAG}str`, binary: `${YAML_TAG}binary`, int: `${YAML_TAG}int`, float: `${YAML_TAG}float`, bool: `${YAML_TAG}bool`, null: `${YAML_TAG}null`, timestamp: `${YAML_TAG}timestamp`, merge: `${YAML_TAG}merge` };

/** A scalar as go-yaml decodes it into interface{}: a string, null, or something else (a number, a boolean). */
type Resolved = { type: 'string'; value: string } | { type: 'null' } | { type: 'other' };

/**
 * libyaml's encodings: UTF-16 by its byte-order mark, else UTF-8 (a mark skipped). Bytes that are not
 * well formed become U+FFFD here; libyaml fails on them when it reads that far, and then so does the
 * API server, which says so in its answer.
 */
function decodeInput(bytes: Uint8Array): string {
  const [b0, b1] = bytes;
  const encoding = b0 === 0xff && b1 === 0xfe ? 'utf-16le' : b0 === 0xfe && b1 === 0xff ? 'utf-16be' : 'utf-8';
  const text = new TextDecoder(encoding).decode(bytes);
  if (text.includes('\ufeff') && byteOrderMarkMayStartBuffer(bytes, encoding)) {
    throw new YamlUnreadable('a byte-order mark where go-yaml would drop the first character of lines (its scanner tests the start of its buffer, not the line)');
  }
  return text;
}

/** The most characters libyaml asks its reader to have ready at once (a \U escape's eight digits). */
const MOST_CACHED = 8;

/**
 * go-yaml's scanner skips a character at the start of a line whenever its character buffer begins
 * with U+FEFF (is_bom reads buffer[0..2], not the position it is passed). The buffer begins where the
 * reader last refilled it: at the first character, and within MOST_CACHED characters before the end
 * of each 512-byte chunk it reads, and of the input. Whether a mark sits at one of those places.
 */
function byteOrderMarkMayStartBuffer(bytes: Uint8Array, encoding: string): boolean {
  const utf16 = encoding !== 'utf-8';
  const start = utf16 ? 2 : bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  // Each character's first byte and whether it is U+FEFF, as the reader cuts them.
  const starts: number[] = [];
  const marks: number[] = [];
  for (let at = start; at < bytes.length; ) {
    let width: number;
    if (utf16) {
      const unit = encoding === 'utf-16le' ? bytes[at]! | ((bytes[at + 1] ?? 0) << 8) : ((bytes[at]! << 8) | (bytes[at + 1] ?? 0));
      width = (unit & 0xfc00) === 0xd800 ? 4 : 2;
      if (unit === 0xfeff) marks.push(starts.length);
    } else {
      const lead = bytes[at]!;
      width = lead < 0x80 ? 1 : (lead & 0xe0) === 0xc0 ? 2 : (lead & 0xf0) === 0xe0 ? 3 : (lead & 0xf8) === 0xf0 ? 4 : 1;
      if (lead === 0xef && bytes[at + 1] === 0xbb && bytes[at + 2] === 0xbf) marks.push(starts.length);
    }
    starts.push(at);
    at += width;
  }
  if (marks.length === 0) return false;
  // Where each chunk ends, in characters: the raw buffer holds 512 bytes, a character cut at its end carried over.
  const ends = [starts.length];
  let next = 0; // the first character that starts at or after the chunk's end
  for (let chunkEnd = Math.min(512, bytes.length); ; ) {
    while (next < starts.length && starts[next]! < chunkEnd) next++;
    const lastEnd = next > 0 ? (starts[next] ?? bytes.length) : 0;
    const whole = next > 0 && lastEnd > chunkEnd ? next - 1 : next;
    ends.push(whole);
    if (chunkEnd >= bytes.length) break;
    const carried = whole < starts.length ? chunkEnd - starts[whole]! : 0;
    chunkEnd = Math.min(chunkEnd + 512 - carried, bytes.length);
  }
  return marks.some((mark) => mark === 0 || ends.some((end) => mark >= end - MOST_CACHED && mark <= end));
}

// ---- what go-yaml v2 makes of scalars (resolve.go, decode.go) ----

/**
 * A scalar as go-yaml decodes it into interface{}: a Go string (bytes: !!binary may hold any), null,
 * a bool, an int (int64's range), a uint64 (beyond it) or a float64.
 */
export type GoScalar =
  | { type: 'string'; value: Uint8Array }
  | { type: 'null' }
  | { type: 'bool'; value: boolean }
  | { type: 'int' | 'uint'; value: bigint }
  | { type: 'float'; value: number };

type Tagged = GoScalar & { tag: string };

const FIXED: Record<string, Tagged> = {};
for (const [words, resolved, tag] of [
  ['y Y yes Yes YES true True TRUE on On ON', { type: 'bool', value: true }, TAG.bool],
  ['n N no No NO false False FALSE off Off OFF', { type: 'bool', value: false }, TAG.bool],
  ['~ null Null NULL', { type: 'null' }, TAG.null],
  ['.nan .NaN .NAN', { type: 'float', value: NaN }, TAG.float],
  ['.inf .Inf .INF +.inf +.Inf +.INF', { type: 'float', value: Infinity }, TAG.float],
  ['-.inf -.Inf -.INF', { type: 'float', value: -Infinity }, TAG.float],
  ['<<', { type: 'string', value: Buffer.from('<<') }, TAG.merge],
] as const) {
  for (const word of words.split(' ')) FIXED[word] = { ...(resolved as GoScalar), tag };
}
FIXED[''] = { type: 'null', tag: TAG.null };

const INT64 = [-(2n ** 63n), 2n ** 63n] as const;
const UINT64 = 2n ** 64n;

/** strconv.ParseInt (signed) or ParseUint with base 0 and 64 bits: the value, or undefined when it fails. */
function goParseInt(text: string, signed: boolean): bigint | undefined {
  const match = /^([+-]?)(?:0[xX]([0-9a-fA-F]+)|0[bB]([01]+)|0[oO]([0-7]+)|0([0-7]*)|([1-9][0-9]*))$/.exec(text);
  if (!match || (!signed && match[1] !== '')) return undefined;
  const [, sign, hex, binary, octal, leadingZero, decimal] = match;
  const magnitude =
    hex !== undefined ? BigInt(`0x${hex}`) : binary !== undefined ? BigInt(`0b${binary}`) : octal !== undefined ? BigInt(`0o${octal}`) : leadingZero !== undefined ? BigInt(`0o0${leadingZero}`) : BigInt(decimal!);
  const value = sign === '-' ? -magnitude : magnitude;
  return (signed ? value >= INT64[0] && value < INT64[1] : value < UINT64) ? value : undefined;
}

/** strconv.ParseInt(text, 2, 64): the value, or undefined when it fails. */
function goParseBinary(text: string): bigint | undefined {
  const match = /^([+-]?)([01]+)$/.exec(text);
  if (!match) return undefined;
  const value = (match[1] === '-' ? -1n : 1n) * BigInt(`0b${match[2]}`);
  return value >= INT64[0] && value < INT64[1] ? value : undefined;
}

/** strconv.ParseFloat(text, 64) for a decimal text (no hex, no inf/nan: callers never pass those): the value, or undefined when it fails. */
function goParseFloat(text: string): number | undefined {
  const match = /^[+-]?([0-9_]*\.?[0-9_]*)(?:[eE][+-]?[0-9][0-9_]*)?$/.exec(text);
  if (!match || !/[0-9]/.test(match[1]!)) return undefined;
  if (text.includes('_') && !underscoresOK(text)) return undefined;
  const value = Number(text.replaceAll('_', ''));
  return Number.isFinite(value) ? value : undefined; // beyond float64 is ErrRange
}
/** strconv's underscoreOK: each underscore between digits. */
function underscoresOK(text: string): boolean {
  let saw = '^';
  for (const ch of text.replace(/^[+-]/, '')) {
    if (ch >= '0' && ch <= '9') saw = '0';
    else if (ch === '_') {
      if (saw !== '0') return false;
      saw = '_';
    } else {
      if (saw === '_') return false;
      saw = '!';
    }
  }
  return saw !== '_';
}

const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

/** time.Parse with one of go-yaml's timestamp layouts: whether it succeeds. */
function goParsesTimestamp(text: string): boolean {
  const match = /^(\d{4})-(\d\d?)-(\d\d?)(?:(?:[Tt](\d\d?):(\d\d?):(\d\d?)(?:[.,]\d+)?(Z|[+-]\d\d:\d\d))|(?: (\d\d?):(\d\d?):(\d\d?)(?:[.,]\d+)?))?$/.exec(text);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  if (days === undefined || day < 1 || day > days) return false;
  const [hour, minute, second] = [match[4] ?? match[8], match[5] ?? match[9], match[6] ?? match[10]].map(Number);
  if (hour! > 23 || minute! > 59 || second! > 59) return false;
  const zone = match[7];
  if (zone && zone !== 'Z' && (Number(zone.slice(1, 3)) > 24 || Number(zone.slice(4, 6)) > 60)) return false;
  return true;
}

/** The int go-yaml makes of a parsed integer: int when it fits int64 (it does whenever signed parsing worked), else uint64. */
const integer = (value: bigint, tag = TAG.int): Tagged => ({ type: value < INT64[1] ? 'int' : 'uint', value, tag });

/** resolve.go's resolve(tag, in): what the scalar is, or undefined when go-yaml fails on it ("cannot decode … as a …"). */
function resolve(tag: string, text: string): Tagged | undefined {
  const string: Tagged = { type: 'string', value: Buffer.from(text), tag: TAG.str };
  let found: Tagged = string;
  const first = text.charCodeAt(0);
  const hint = text === '' ? 'N' : '+-'.includes(text[0]!) ? 'S' : first >= 0x30 && first <= 0x39 ? 'D' : 'yYnNtTfFoO~'.includes(text[0]!) ? 'M' : text[0] === '.' ? '.' : '';
  if (hint && tag !== TAG.str && tag !== TAG.binary) {
    const fixed = FIXED[text];
    if (fixed) found = fixed;
    else if (hint === '.') {
      const float = goParseFloat(text);
      if (float !== undefined) found = { type: 'float', value: float, tag: TAG.float };
    } else if (hint === 'D' || hint === 'S') {
      const plain = text.replaceAll('_', '');
      const int = goParseInt(plain, true) ?? goParseInt(plain, false);
      const float = YAML_STYLE_FLOAT.test(plain) ? goParseFloat(plain) : undefined;
      const binary = plain.startsWith('0b') ? goParseBinary(plain.slice(2)) : plain.startsWith('-0b') ? goParseBinary(`-${plain.slice(3)}`) : undefined;
      if ((tag === '' || tag === TAG.timestamp) && /^\d{4}-/.test(text) && goParsesTimestamp(text)) found = { ...string, tag: TAG.timestamp };
      else if (int !== undefined) found = integer(int);
      else if (float !== undefined) found = { type: 'float', value: float, tag: TAG.float };
      else if (binary !== undefined) found = integer(binary);
    }
  }
  if (tag === '' || tag === found.tag || tag === TAG.str || tag === TAG.binary) return found;
  // An !!float given an int is that int as a float64 (a uint64 is not converted, and fails).
  if (tag === TAG.float && found.type === 'int') return { type: 'float', value: Number(found.value), tag: TAG.float };
  return undefined;
}

/** Go's base64.StdEncoding.DecodeString: padding required, only CR and LF skipped; undefined when it fails. */
function goBase64(text: string): Uint8Array | undefined {
  const compact = text.replace(/[\r\n]/g, '');
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(compact)) return undefined;
  return Buffer.from(compact, 'base64');
}

const RESOLVABLE = new Set(['', TAG.str, TAG.bool, TAG.int, TAG.float, TAG.null, TAG.timestamp]);

/** decode.go's scalar() into interface{}; throws YamlUnreadable where go-yaml fails. */
export function goScalar(node: YamlNode & { kind: 'scalar' }): GoScalar {
  const { value: text, implicit } = node;
  const tag = node.tag ?? '';
  if (tag === '' && !implicit) return { type: 'string', value: Buffer.from(text) };
  if (!RESOLVABLE.has(tag)) {
    if (tag !== TAG.binary) return { type: 'string', value: Buffer.from(text) };
    const bytes = goBase64(text);
    if (!bytes) throw new YamlUnreadable('!!binary value contains invalid base64 data');
    return { type: 'string', value: bytes };
  }
  const resolved = resolve(tag, text);
  if (!resolved) throw new YamlUnreadable(`go-yaml cannot decode ${JSON.stringify(text)} as ${tag}`);
  return resolved;
}

/** decode.go's isMerge: a plain `<<` (or one tagged !!merge) as a mapping key. */
export const isMergeKey = (key: YamlNode): boolean => key.kind === 'scalar' && key.value === '<<' && (key.implicit || key.tag === TAG.merge);

class YamlDocument {
  constructor(private readonly root: YamlNode | undefined) {}

  private scalar(node: YamlNode & { kind: 'scalar' }): Resolved {
    const scalar = goScalar(node);
    return scalar.type === 'string' ? { type: 'string', value: goText(scalar.value) } : scalar.type === 'null' ? scalar : { type: 'other' };
  }

  /** Follows aliases; `expanding` holds the aliases being expanded, as decode.go's d.aliases. */
  private target(node: YamlNode, expanding: Set<YamlNode>): YamlNode {
    if (node.kind !== 'alias') return node;
    if (!node.target) throw new YamlUnreadable(`unknown anchor '${node.name}' referenced`);
    if (expanding.has(node)) throw new YamlUnreadable(`anchor '${node.name}' value contains itself`);
    return node.target;
  }

  /** decode.go's mapping() into a map[interface{}]interface{}: the string keys and their (unbuilt) values. */
  private mappingInto(node: YamlNode & { kind: 'mapping' }, out: Map<string, YamlNode>, expanding: Set<YamlNode>): void {
    for (const [key, value] of node.pairs) {
      if (isMergeKey(key)) {
        this.merge(value, out, expanding);
        continue;
      }
      const resolvedKey = this.target(key, expanding);
      if (resolvedKey.kind === 'mapping' || resolvedKey.kind === 'sequence') throw new YamlUnreadable('a mapping or sequence as a map key');
      const keyValue = this.scalar(resolvedKey as YamlNode & { kind: 'scalar' });
      // Keys of other types (numbers, booleans, null) never name a field read here.
      if (keyValue.type === 'string') out.set(keyValue.value, value);
    }
  }

  /** decode.go's merge(): a mapping, an alias of one, or a sequence of those (the earlier ones winning). */
  private merge(value: YamlNode, out: Map<string, YamlNode>, expanding: Set<YamlNode>): void {
    const mapping = (node: YamlNode) => {
      const resolved = this.target(node, expanding);
      if (resolved.kind !== 'mapping') throw new YamlUnreadable('map merge requires map or sequence of maps as the value');
      const inner = node.kind === 'alias' ? new Set([...expanding, node]) : expanding;
      this.mappingInto(resolved, out, inner);
    };
    if (value.kind === 'sequence') {
      for (const item of [...value.items].reverse()) {
        if (item.kind !== 'alias' && item.kind !== 'mapping') throw new YamlUnreadable('map merge requires map or sequence of maps as the value');
        mapping(item);
      }
    } else {
      mapping(value);
    }
  }

  /** The node as the JSON that json.Marshal writes for it: objects have their keys sorted, each once. */
  view(node: YamlNode, expanding = new Set<YamlNode>()): JsonView {
    const resolved = this.target(node, expanding);
    const inner = node.kind === 'alias' ? new Set([...expanding, node]) : expanding;
    switch (resolved.kind) {
      case 'scalar':
        return this.scalar(resolved);
      case 'sequence':
        return { type: 'other' };
      case 'mapping':
        return {
          type: 'object',
          members: () => {
            const out = new Map<string, YamlNode>();
            this.mappingInto(resolved, out, inner);
            return [...out.entries()].sort(([a], [b]) => byCodePoint(a, b)).map(([key, value]) => [key, this.view(value, inner)]);
          },
        };
      case 'alias':
        throw new YamlUnreadable('an alias of an alias');
    }
  }

  document(): JsonView {
    return this.root ? this.view(this.root) : { type: 'null' };
  }
}

/** Go's string order (bytes of UTF-8): code point order, which differs from UTF-16 unit order above U+FFFF. */
function byCodePoint(a: string, b: string): number {
  const [x, y] = [[...a], [...b]];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** A body's text as libyaml's reader decodes it, and whether its bytes were well formed (else libyaml fails on them); throws YamlUnreadable. */
export function yamlInputText(bytes: Uint8Array): { text: string; wellFormed: boolean } {
  const text = decodeInput(bytes);
  const [b0, b1] = bytes;
  const encoding = b0 === 0xff && b1 === 0xfe ? 'utf-16le' : b0 === 0xfe && b1 === 0xff ? 'utf-16be' : 'utf-8';
  try {
    new TextDecoder(encoding, { fatal: true }).decode(bytes);
    return { text, wellFormed: true };
  } catch {
    return { text, wellFormed: false };
  }
}

/** The first document's root node (undefined: none); throws YamlUnreadable. */
export function firstDocumentOf(text: string): YamlNode | undefined {
  try {
    return firstYamlDocument(text);
  } catch (err) {
    if (err instanceof LibyamlError) throw new YamlUnreadable(err.message);
    throw err;
  }
}

/** The first document of a YAML body as the JSON sigs.k8s.io/yaml makes of it; throws YamlUnreadable. */
export function yamlDocument(bytes: Uint8Array): JsonView {
  return new YamlDocument(firstDocumentOf(decodeInput(bytes))).document();
}
