// A YAML request body as the API server's audit event records it: the JSON sigs.k8s.io/yaml's
// YAMLToJSON makes of it (go-yaml v2 decodes the first document into Go values, which are turned
// into JSON-able ones and written by encoding/json), written into the event as Go's encoder writes
// raw JSON. For a patch the handler first takes a body that begins with `{` as JSON, unconverted
// (k8s.io/apimachinery's yaml.ToJSON). Built from the Go values, never from JavaScript numbers, so
// integers up to 2^64, floats, strings that are not UTF-8 (!!binary) and key order come out as Go
// writes them.
//
// Where the API server's own result is not one value, nothing is recorded and the reason is said:
// the API server refuses the body (it answers 400 and records none), cannot write the event its
// JSON goes into (a `{` body that is not JSON, nesting beyond Go's 10000), or picks one of several
// values at random (two keys that differ in go-yaml, `1` and `"1"`, become one JSON member and Go's
// map order decides which value it keeps).
import { isUtf8 } from 'node:buffer';
import { compactJson, decodeRune, jsonDepth, tooDeepToRecord } from './go-json-view.js';
import { firstDocumentOf, goScalar, isMergeKey, yamlInputText, YamlUnreadable, type GoScalar } from './go-yaml-view.js';
import type { YamlNode } from './libyaml.js';

export type YamlAsJson = { json: string } | { omitted: string };

/** A decoded value, already written as JSON; or why it cannot be. */
type Encoded =
  | { text: string; depth: number }
  /** convertToJSONableObject refuses it (a key of no JSON form): YAMLToJSON fails whichever member Go's map order visits first. */
  | { refused: string }
  /** json.Marshal fails on it (NaN, ±Inf): only when it is what is written. */
  | { unwritable: string }
  | { ambiguous: string }
  | { tooLarge: true };

type Failure = Exclude<Encoded, { text: string }>;

const isText = (e: Encoded): e is { text: string; depth: number } => 'text' in e;

/** The failure that decides, when several meet: what Go certainly fails on first, then what may be, then the sidecar's own limit. */
function worst(failures: Failure[]): Failure | undefined {
  return failures.find((f) => 'refused' in f) ?? failures.find((f) => 'unwritable' in f) ?? failures.find((f) => 'ambiguous' in f) ?? failures[0];
}

// ---- Go's encoding/json, with HTML escaping (json.Marshal) ----

const HEX = '0123456789abcdef';
const SHORT_ESCAPES: Record<number, string> = { 0x22: '\\"', 0x5c: '\\\\', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };

/** A Go string (bytes) as encoding/json writes it: bytes that are not UTF-8 each become the escape \ufffd. */
export function goJsonString(bytes: Uint8Array): string {
  let out = '"';
  for (let at = 0; at < bytes.length; ) {
    const b = bytes[at]!;
    if (b < 0x80) {
      if (SHORT_ESCAPES[b] !== undefined) out += SHORT_ESCAPES[b];
      else if (b < 0x20 || b === 0x3c || b === 0x3e || b === 0x26) out += `\\u00${HEX[b >> 4]}${HEX[b & 0xf]}`;
      else out += String.fromCharCode(b);
      at++;
      continue;
    }
    const [rune, size] = decodeRune(bytes, at);
    if (size === 1) out += '\\ufffd';
    else if (rune === 0x2028 || rune === 0x2029) out += `\\u${rune.toString(16)}`;
    else out += String.fromCodePoint(rune);
    at += size;
  }
  return `${out}"`;
}

/** A float64 as encoding/json writes it (ES6 number formatting, which JavaScript shares, but -0 kept); NaN and ±Inf are not JSON. */
function goJsonFloat(value: number): Encoded {
  if (!Number.isFinite(value)) return { unwritable: `json: unsupported value: ${Number.isNaN(value) ? 'NaN' : value > 0 ? '+Inf' : '-Inf'}` };
  return { text: Object.is(value, -0) ? '-0' : String(value), depth: 0 };
}

/** strconv.FormatFloat(value, 'g', -1, 32), as convertToJSONableObject names a float key (±Inf and NaN as YAML spells them). */
export function goFloat32Key(value: number): string {
  const single = Math.fround(value);
  if (Number.isNaN(single)) return '.nan';
  if (!Number.isFinite(single)) return single > 0 ? '.inf' : '-.inf';
  if (single === 0) return Object.is(single, -0) ? '-0' : '0';
  // The fewest digits that read back as the same float32.
  let exponential = '';
  for (let precision = 1; precision <= 9; precision++) {
    exponential = single.toExponential(precision - 1);
    if (Math.fround(Number(exponential)) === single) break;
  }
  const [mantissa, exponentText] = exponential.split('e') as [string, string];
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace(/[-.]/g, '').replace(/0+$/, '') || '0';
  const exponent = Number(exponentText);
  const sign = negative ? '-' : '';
  if (exponent < -4 || exponent >= 6) {
    const e = `${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
    return `${sign}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${e}`;
  }
  const point = exponent + 1; // digits before the decimal point
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

function encodeScalar(scalar: GoScalar): Encoded {
  switch (scalar.type) {
    case 'string':
      return { text: goJsonString(scalar.value), depth: 0 };
    case 'null':
      return { text: 'null', depth: 0 };
    case 'bool':
      return { text: String(scalar.value), depth: 0 };
    case 'int':
    case 'uint':
      return { text: scalar.value.toString(), depth: 0 };
    case 'float':
      return goJsonFloat(scalar.value);
  }
}

/** A map key as convertToJSONableObject turns it into a string (bytes), or why it cannot. */
function keyString(key: GoScalar): Uint8Array | { refused: string } {
  switch (key.type) {
    case 'string':
      return key.value;
    case 'int':
      return Buffer.from(key.value.toString());
    case 'float':
      return Buffer.from(goFloat32Key(key.value));
    case 'bool':
      return Buffer.from(String(key.value));
    case 'uint':
      return { refused: `unsupported map key of type: uint64, key: ${key.value}` };
    case 'null':
      return { refused: 'unsupported map key of type: %!s(<nil>)' };
  }
}

/** Which Go map entry a key is (interface{} keys: dynamic type and value; NaN is never equal, -0 equals 0). */
function keyIdentity(key: GoScalar, nan: () => number): string {
  switch (key.type) {
    case 'string':
      return `s${Buffer.from(key.value).toString('latin1')}`;
    case 'float':
      return Number.isNaN(key.value) ? `nan${nan()}` : `f${key.value === 0 ? 0 : key.value}`;
    case 'null':
      return 'n';
    default:
      return `${key.type[0]}${String(key.value)}`;
  }
}

// ---- go-yaml v2's decoder (decode.go) into interface{} ----

const ALIAS_RATIO_LOW = 400_000;
const ALIAS_RATIO_HIGH = 4_000_000;

/** decode.go's allowedAliasRatio. */
function allowedAliasRatio(decodeCount: number): number {
  if (decodeCount <= ALIAS_RATIO_LOW) return 0.99;
  if (decodeCount >= ALIAS_RATIO_HIGH) return 0.1;
  return 0.99 - 0.89 * ((decodeCount - ALIAS_RATIO_LOW) / (ALIAS_RATIO_HIGH - ALIAS_RATIO_LOW));
}

/** A Go map being decoded: its entries by key identity, each value already written. */
type GoMap = Map<string, { key: GoScalar; value: Encoded }>;

/**
 * go-yaml's decoder, run off an explicit stack of steps (a document may nest 10000 deep, and aliases
 * deeper still): each step may push more, which run before the steps pushed earlier, so the nodes are
 * visited, and counted, in the order go-yaml's recursion visits them.
 */
class Decoder {
  private decodeCount = 0;
  private aliasCount = 0;
  private aliasDepth = 0;
  private readonly expanding = new Set<YamlNode>();
  private nans = 0;
  private readonly steps: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  run(root: YamlNode): Encoded {
    let result: Encoded = { text: 'null', depth: 0 };
    this.decode(root, (encoded) => (result = encoded));
    for (let step = this.steps.pop(); step; step = this.steps.pop()) step();
    return result;
  }

  /** These steps next, in this order. */
  private next(...steps: (() => void)[]): void {
    for (let i = steps.length - 1; i >= 0; i--) this.steps.push(steps[i]!);
  }

  /** decode.go's unmarshal: counts every node, aliases expanded included, and fails on excessive aliasing. */
  private count(): void {
    this.decodeCount++;
    if (this.aliasDepth > 0) this.aliasCount++;
    if (this.aliasCount > 100 && this.decodeCount > 1000 && this.aliasCount / this.decodeCount > allowedAliasRatio(this.decodeCount)) {
      throw new YamlUnreadable('document contains excessive aliasing');
    }
  }

  /** decode.go's alias(): the anchored node, decoded by `inner`, with the alias counted as being expanded meanwhile. */
  private alias<T>(node: YamlNode & { kind: 'alias' }, inner: (target: YamlNode, done: (value: T) => void) => void, done: (value: T) => void): void {
    if (this.expanding.has(node)) throw new YamlUnreadable(`anchor '${node.name}' value contains itself`);
    if (!node.target) throw new YamlUnreadable(`unknown anchor '${node.name}' referenced`);
    const target = node.target;
    this.expanding.add(node);
    this.aliasDepth++;
    let value: T;
    this.next(
      () => inner(target, (v) => (value = v)),
      () => {
        this.aliasDepth--;
        this.expanding.delete(node);
        done(value);
      },
    );
  }

  /** A node's value, written. */
  private decode(node: YamlNode, done: (value: Encoded) => void): void {
    this.count();
    switch (node.kind) {
      case 'alias':
        return this.alias(node, (target, inner) => this.decode(target, inner), done);
      case 'scalar':
        return done(encodeScalar(goScalar(node)));
      case 'sequence': {
        const items: Encoded[] = [];
        return this.next(
          ...node.items.map((item) => () => this.decode(item, (value) => items.push(value))),
          () => done(this.container('[', ']', items.map((value) => ({ member: '', value })))),
        );
      }
      case 'mapping': {
        const entries: GoMap = new Map();
        return this.next(
          () => this.mappingInto(node, entries),
          () => done(this.finishMap(entries)),
        );
      }
    }
  }

  /** A key: a scalar (a mapping or sequence fails). */
  private decodeKey(node: YamlNode, done: (key: GoScalar) => void): void {
    this.count();
    if (node.kind === 'alias') return this.alias(node, (target, inner) => this.decodeKey(target, inner), done);
    if (node.kind !== 'scalar') throw new YamlUnreadable('invalid map key: a mapping or sequence');
    done(goScalar(node));
  }

  /** decode.go's mapping() into a map: a later key replaces an earlier equal one; merge keys copy theirs in where they stand. */
  private mappingInto(node: YamlNode & { kind: 'mapping' }, out: GoMap): void {
    this.next(
      ...node.pairs.map(([key, value]) => () => {
        if (isMergeKey(key)) return this.merge(value, out);
        this.decodeKey(key, (goKey) => this.decode(value, (decoded) => out.set(keyIdentity(goKey, () => this.nans++), { key: goKey, value: decoded })));
      }),
    );
  }

  /** decode.go's merge(): a mapping, an alias of one, or a sequence of those, the earlier ones winning. */
  private merge(node: YamlNode, out: GoMap): void {
    const items = node.kind === 'sequence' ? [...node.items].reverse() : [node];
    for (const item of items) {
      const mapping = item.kind === 'mapping' || (item.kind === 'alias' && (!item.target || item.target.kind === 'mapping'));
      if (!mapping) throw new YamlUnreadable('map merge requires map or sequence of maps as the value');
    }
    this.next(...items.map((item) => () => this.into(item, out, () => undefined)));
  }

  /** unmarshal(n, out) with out an existing map (a merge). */
  private into(node: YamlNode, out: GoMap, done: (value: undefined) => void): void {
    this.count();
    if (node.kind === 'alias') return this.alias(node, (target, inner) => this.into(target, out, inner), done);
    if (node.kind === 'mapping') this.next(() => this.mappingInto(node, out), () => done(undefined));
  }

  /** convertToJSONableObject then json.Marshal of one map: keys as strings, members sorted by their bytes. */
  private finishMap(entries: GoMap): Encoded {
    const failures: Failure[] = [];
    const byName = new Map<string, { name: Uint8Array; values: Encoded[] }>();
    for (const { key, value } of entries.values()) {
      const name = keyString(key);
      if ('refused' in name) {
        failures.push(name);
        continue;
      }
      const id = Buffer.from(name).toString('latin1');
      const slot = byName.get(id);
      if (slot) slot.values.push(value);
      else byName.set(id, { name, values: [value] });
    }
    const members: { member: string; value: Encoded; name: Uint8Array }[] = [];
    for (const { name, values } of byName.values()) {
      const first = values[0]!;
      const same = values.every((v) => JSON.stringify(v) === JSON.stringify(first));
      if (!same) {
        const refusal = values.find((v) => 'refused' in v);
        failures.push(refusal ?? { ambiguous: `keys that go-yaml tells apart all become the JSON member ${goJsonString(name)}, and Go's map order decides which value the API server keeps` });
        continue;
      }
      members.push({ member: goJsonString(name), value: first, name });
    }
    const failure = worst([...failures, ...members.map((m) => m.value).filter((v): v is Failure => !isText(v))]);
    if (failure) return failure;
    members.sort((a, b) => Buffer.compare(a.name, b.name));
    return this.container('{', '}', members);
  }

  private container(open: string, close: string, members: { member: string; value: Encoded }[]): Encoded {
    const failure = worst(members.map((m) => m.value).filter((v): v is Failure => !isText(v)));
    if (failure) return failure;
    let depth = 0;
    const parts: string[] = [];
    let length = 2;
    for (const { member, value } of members) {
      const { text, depth: inner } = value as { text: string; depth: number };
      const part = member ? `${member}:${text}` : text;
      length += part.length + 1;
      if (length > this.limit) return { tooLarge: true };
      parts.push(part);
      depth = Math.max(depth, inner);
    }
    return { text: `${open}${parts.join(',')}${close}`, depth: depth + 1 };
  }
}

// ---- what a body must be before libyaml reads it ----

/** unicode.IsSpace: what bytes.TrimLeftFunc skips before yaml.ToJSON looks for a `{`. */
const WHITE_SPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);

function startsWithBrace(bytes: Uint8Array): boolean {
  for (let at = 0; at < bytes.length; ) {
    const [rune, size] = decodeRune(bytes, at);
    if (size === 1 && rune === 0xfffd) return false;
    if (!WHITE_SPACE.has(rune)) return rune === 0x7b;
    at += size;
  }
  return false;
}

/**
 * Characters libyaml's reader refuses: bytes that are not UTF-8 (or UTF-16 by its mark), and control
 * characters. go-yaml fails on them when its reader reaches them, which may be past the first document.
 */
function refusedCharacter(text: string): number | undefined {
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    const allowed = c === 0x09 || c === 0x0a || c === 0x0d || (c >= 0x20 && c <= 0x7e) || c === 0x85 || (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || c >= 0x10000;
    if (!allowed) return c;
  }
  return undefined;
}

/**
 * The requestObject the API server's event holds for this YAML body, or why none is recorded.
 * `patch`: the body of a patch, which the API server takes as JSON when it begins with `{`. `limit`:
 * the most bytes recorded (--audit-body-limit).
 */
export function yamlAsJson(bytes: Uint8Array, options: { patch: boolean; limit: number }): YamlAsJson {
  const { limit } = options;
  const tooLarge = { omitted: `the body is larger than the ${limit}-byte limit (--audit-body-limit) once written as JSON` };
  if (options.patch && startsWithBrace(bytes)) {
    // Taken as JSON unconverted; the event's encoder then checks it, and fails on anything that is not.
    if (!isUtf8(bytes)) return { omitted: 'the body begins with `{` but is not UTF-8: the API server records its bytes as they are, which chaperone does not write' };
    const text = Buffer.from(bytes).toString('utf8');
    try {
      JSON.parse(text);
    } catch (err) {
      return { omitted: `the body begins with \`{\` but is not JSON (${(err as Error).message}): the API server records it unconverted and cannot write that event (its log has no event for this request at Request level)` };
    }
    const tooDeep = tooDeepToRecord(jsonDepth(text));
    if (tooDeep) return { omitted: tooDeep };
    const json = compactJson(text);
    return Buffer.byteLength(json) > limit ? tooLarge : { json };
  }
  try {
    const { text, wellFormed } = yamlInputText(bytes);
    if (!wellFormed) return { omitted: 'the body is not well-formed UTF-8 (or UTF-16), which libyaml refuses: the API server fails to read it, unless the fault lies past the first document' };
    const refused = refusedCharacter(text);
    if (refused !== undefined) {
      return { omitted: `the body holds U+${refused.toString(16).toUpperCase().padStart(4, '0')}, which libyaml refuses: the API server fails to read it, unless it lies past the first document` };
    }
    const root = firstDocumentOf(text);
    const encoded = root === undefined ? { text: 'null', depth: 0 } : new Decoder(limit).run(root);
    if ('refused' in encoded || 'unwritable' in encoded) return { omitted: `the API server cannot turn this YAML into JSON, and refuses it: ${'refused' in encoded ? encoded.refused : encoded.unwritable}` };
    if ('ambiguous' in encoded) return { omitted: `the JSON the API server records is not certain: ${encoded.ambiguous}` };
    if ('tooLarge' in encoded || Buffer.byteLength(encoded.text) > limit) return tooLarge;
    const tooDeep = tooDeepToRecord(encoded.depth);
    if (tooDeep) return { omitted: tooDeep };
    return { json: encoded.text };
  } catch (err) {
    if (err instanceof YamlUnreadable) return { omitted: `the API server cannot read this YAML, and refuses it: ${err.message}` };
    throw err;
  }
}
