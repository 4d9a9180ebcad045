// The CEL evaluator of the JWT authenticator: kube-apiserver's semantics (cel-go v0.29 with the
// API server's libraries and options, k8s.io/apiserver v0.37), for the functions and macros
// cel.ts allows, over the syntax tree @marcbachmann/cel-js parses and type-checks. Every rule here
// was read from cel-go's source and is checked against cel-go itself by
// test/hardening/cel-parity.test.ts (test/fixtures/cel-oracle).
//
// Values are cel-go's: int is a bigint in int64 range, uint a Uint, double a number, lists remember
// which Go type the API server would see under them (it takes only []interface{} and []ref.Val as a
// list of strings), and errors are values (Err), absorbed by && || as cel-go absorbs them.
// Evaluation also adds up cel-go's runtime cost (interpreter/runtimecost.go with the API server's
// library.CostEstimator), never less than cel-go's, and stops past the API server's limit.
import type { ASTNode } from '@marcbachmann/cel-js';

/** The API server's per-expression runtime cost limit (k8s.io/apiserver/pkg/apis/cel PerCallLimit). */
export const COST_LIMIT = 1_000_000;

export const MIN_INT = -(2n ** 63n);
export const MAX_INT = 2n ** 63n - 1n;
export const MAX_UINT = 2n ** 64n - 1n;

export class Uint {
  constructor(readonly value: bigint) {}
}
/** Which Go slice the API server's list would hold: []interface{}, []ref.Val or []string. */
export type ListNative = 'any' | 'refval' | 'strings';
/**
 * `wrapped`: the API server hands claims (and user.groups, user.extra) to CEL inside wrappers that
 * unescape names; a list or map read by name or index is wrapped, one met by iterating is not. A
 * wrapped one is never a zero value to optional.ofNonZeroValue (the wrapper hides that trait).
 */
export class CelList {
  constructor(
    readonly items: readonly Val[],
    readonly native: ListNative,
    readonly wrapped = false,
  ) {}
}
/** A map with string keys (the only keys claims, user.extra and the allowed literals have). */
export class CelMap {
  constructor(
    readonly entries: ReadonlyMap<string, Val>,
    readonly wrapped = false,
  ) {}
}

function wrap(v: Val): Val {
  if (v instanceof CelList && !v.wrapped) return new CelList(v.items, v.native, true);
  if (v instanceof CelMap && !v.wrapped) return new CelMap(v.entries, true);
  return v;
}

function unwrap(v: Val): Val {
  if (v instanceof CelList && v.wrapped) return new CelList(v.items, v.native);
  if (v instanceof CelMap && v.wrapped) return new CelMap(v.entries);
  return v;
}
export class Optional {
  constructor(readonly value: Val | undefined) {}
}
export class CelType {
  constructor(readonly name: string) {}
}
/** `claims` or `user`: the API server's lazy map of an object type, read only by name. */
export class Root {
  constructor(
    readonly typeName: string,
    readonly fields: ReadonlyMap<string, Val>,
  ) {}
}
export class Err {
  constructor(readonly message: string) {}
}
export type Val = null | boolean | bigint | Uint | number | string | CelList | CelMap | Optional | CelType | Root;
type Res = Val | Err;

/** Evaluation stopped at the API server's cost limit: the API server fails the expression too. */
export class CostLimitExceeded extends Error {
  constructor() {
    super('operation cancelled: actual cost limit exceeded');
  }
}

/**
 * An evaluation chaperone cannot make exactly as the API server would (a map iterated in Go's
 * random order into a list, a hexadecimal float): the token is refused, never judged differently.
 */
export class Unmatched extends Error {}

const isErr = (v: Res): v is Err => v instanceof Err;
const noOverload = (what: string) => new Err(`no such overload: ${what}`);

/** JSON (a token's claims) as the API server decodes it with encoding/json into interface{}. */
export function fromJson(value: unknown): Val {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') return value;
  if (Array.isArray(value)) return new CelList(value.map(fromJson), 'any');
  if (typeof value === 'object') return new CelMap(new Map(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, fromJson(v)])));
  throw new Error(`not JSON: ${typeof value}`);
}

export function claimsRoot(claims: Record<string, unknown>): Root {
  return new Root('kubernetes.claims', new Map(Object.entries(claims).map(([k, v]) => [k, fromJson(v)])));
}

export interface UserInput {
  username: string;
  uid: string;
  groups: readonly string[];
  extra: Readonly<Record<string, readonly string[]>>;
}

export function userRoot(user: UserInput): Root {
  const extra = new Map(Object.entries(user.extra).map(([k, v]) => [k, new CelList([...v], 'strings') as Val]));
  return new Root(
    'kubernetes.UserInfo',
    new Map<string, Val>([
      ['username', user.username],
      ['uid', user.uid],
      ['groups', new CelList([...user.groups], 'strings')],
      ['extra', new CelMap(extra)],
    ]),
  );
}

// ---------------------------------------------------------------------------------------------
// Types, sizes, equality, ordering

export function typeOf(v: Val): string {
  if (v === null) return 'null_type';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'bigint') return 'int';
  if (v instanceof Uint) return 'uint';
  if (typeof v === 'number') return 'double';
  if (typeof v === 'string') return 'string';
  if (v instanceof CelList) return 'list';
  if (v instanceof CelMap) return 'map';
  if (v instanceof Optional) return 'optional_type';
  if (v instanceof CelType) return 'type';
  return v.typeName;
}

/** Code points, as Go's utf8.RuneCountInString (cel-go's String.Size). */
export function codePoints(s: string): string[] {
  return Array.from(s);
}

function runeCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // a surrogate pair is one code point
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

function utf8Length(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** cel-go's actualSize: the size of strings, lists and maps (and of an optional's value), else 1. */
function actualSize(v: Res): number {
  if (typeof v === 'string') return runeCount(v);
  if (v instanceof CelList) return v.items.length;
  if (v instanceof CelMap) return v.entries.size;
  if (v instanceof Root) return v.fields.size;
  if (v instanceof Optional && v.value !== undefined) return actualSize(v.value);
  return 1;
}

/** library.CostEstimator's traversalCost, for indexOf and lastIndexOf. */
function traversalCost(v: Res): number {
  if (typeof v === 'string') return Math.floor(utf8Length(v) * 0.1);
  if (v instanceof CelList) return v.items.reduce<number>((sum, item) => sum + traversalCost(item), 0);
  if (v instanceof CelMap) return [...v.entries].reduce<number>((sum, [k, item]) => sum + traversalCost(k) + traversalCost(item), 0);
  return 1;
}

const ceilTenth = (n: number) => Math.ceil(n * 0.1);

function numericCompare(a: bigint | Uint | number, b: bigint | Uint | number): -1 | 0 | 1 | undefined {
  const rank = (x: bigint | Uint | number) => (typeof x === 'number' ? 'd' : typeof x === 'bigint' ? 'i' : 'u');
  const cmp = <T extends bigint | number>(x: T, y: T): -1 | 0 | 1 => (x < y ? -1 : x > y ? 1 : 0);
  const [ra, rb] = [rank(a), rank(b)];
  if (ra === 'd' && Number.isNaN(a)) return undefined;
  if (rb === 'd' && Number.isNaN(b)) return undefined;
  const big = (x: bigint | Uint) => (x instanceof Uint ? x.value : x);
  if (ra !== 'd' && rb !== 'd') {
    const [x, y] = [big(a as bigint | Uint), big(b as bigint | Uint)];
    // compareIntUint: a negative int or a uint beyond int64 orders before/after without overflow.
    return cmp(x, y);
  }
  if (ra === 'd' && rb === 'd') return cmp(a as number, b as number);
  // compareDoubleInt / compareDoubleUint: out of the integer's range orders by sign, else the
  // integer is converted to a double (losing precision, as Go's float64(i) does).
  const flip = ra !== 'd';
  const d = (flip ? b : a) as number;
  const i = (flip ? a : b) as bigint | Uint;
  let r: -1 | 0 | 1;
  if (i instanceof Uint) r = d < 0 ? -1 : d > 2 ** 64 ? 1 : cmp(d, Number(i.value));
  else r = d < -(2 ** 63) ? -1 : d > 2 ** 63 ? 1 : cmp(d, Number(i));
  return flip ? ((-r || 0) as -1 | 0 | 1) : r;
}

const isNumber = (v: Val): v is bigint | Uint | number => typeof v === 'bigint' || typeof v === 'number' || v instanceof Uint;

/** cel-go's heterogeneous equality (ref.Val.Equal): values of different kinds are unequal. */
export function equals(a: Val, b: Val): boolean {
  if (isNumber(a) && isNumber(b)) return numericCompare(a, b) === 0;
  if (a === null || typeof a !== 'object') return a === b;
  if (a instanceof CelList) return b instanceof CelList && a.items.length === b.items.length && a.items.every((x, i) => equals(x, b.items[i]!));
  if (a instanceof CelMap) {
    if (!(b instanceof CelMap) || a.entries.size !== b.entries.size) return false;
    for (const [k, v] of a.entries) if (!b.entries.has(k) || !equals(v, b.entries.get(k)!)) return false;
    return true;
  }
  if (a instanceof Optional) {
    if (!(b instanceof Optional)) return false;
    if (a.value === undefined || b.value === undefined) return a.value === b.value;
    return equals(a.value, b.value);
  }
  if (a instanceof CelType) return b instanceof CelType && a.name === b.name;
  return a === b;
}

/** Go compares strings byte by byte in UTF-8, which is code point order (not UTF-16's). */
function compareStrings(a: string, b: string): -1 | 0 | 1 {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

function compare(a: Val, b: Val): -1 | 0 | 1 | Err {
  if (isNumber(a) && isNumber(b)) return numericCompare(a, b) ?? new Err('NaN values cannot be ordered');
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b);
  if (typeof a === 'boolean' && typeof b === 'boolean') return a === b ? 0 : a ? 1 : -1;
  return noOverload('ordering');
}

function isZero(v: Val): boolean {
  if (v === null || v === false || v === '' || v === 0n || v === 0) return true;
  if (v instanceof Uint) return v.value === 0n;
  if (v instanceof CelList) return !v.wrapped && v.items.length === 0;
  if (v instanceof CelMap) return !v.wrapped && v.entries.size === 0;
  if (v instanceof Optional) return v.value === undefined;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Numbers and conversions

function int64(v: bigint): bigint | Err {
  return v < MIN_INT || v > MAX_INT ? new Err('integer overflow') : v;
}

function uint64(v: bigint): Uint | Err {
  return v < 0n || v > MAX_UINT ? new Err('unsigned integer overflow') : new Uint(v);
}

/** Go's strconv.FormatFloat(d, 'g', -1, 64), which cel-go's string(double) is (fmt's %g). */
export function formatDouble(d: number): string {
  if (Number.isNaN(d)) return 'NaN';
  if (d === Infinity) return '+Inf';
  if (d === -Infinity) return '-Inf';
  if (d === 0) return Object.is(d, -0) ? '-0' : '0';
  // The shortest digits that read back as d are the same in both languages.
  const [mantissa, exponentText] = Math.abs(d).toExponential().split('e');
  const digits = mantissa!.replace('.', '');
  const exp = Number(exponentText);
  const sign = d < 0 ? '-' : '';
  // Go's %g at the shortest precision switches to an exponent when exp < -4 || exp >= 6
  // (JavaScript's String(d) only at 21): 1234567 is "1.234567e+06".
  if (exp < -4 || exp >= 6) {
    const e = Math.abs(exp);
    return `${sign}${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${exp < 0 ? '-' : '+'}${e < 10 ? `0${e}` : e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return `${sign}${digits}${'0'.repeat(exp + 1 - digits.length)}`;
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/** Go's underscoreOK: underscores only between digits (or after a base prefix). */
function underscoreOK(s: string): boolean {
  let saw = '^';
  let i = 0;
  if (s.startsWith('+') || s.startsWith('-')) s = s.slice(1);
  let hex = false;
  if (s.length >= 2 && s[0] === '0' && 'bBoOxX'.includes(s[1]!)) {
    i = 2;
    saw = '0';
    hex = 'xX'.includes(s[1]!);
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    if ((c >= '0' && c <= '9') || (hex && /[a-fA-F]/.test(c))) {
      saw = '0';
      continue;
    }
    if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
      continue;
    }
    if (saw === '_') return false;
    saw = '!';
  }
  return saw !== '_';
}

/** Go's strconv.ParseFloat(s, 64); hexadecimal mantissas are not decided here. */
export function parseGoFloat(s: string): number | Err {
  const bad = new Err(`strconv.ParseFloat: parsing ${JSON.stringify(s)}: invalid syntax`);
  const special = /^([+-]?)(inf|infinity)$/i.exec(s);
  if (special) return special[1] === '-' ? -Infinity : Infinity;
  if (/^nan$/i.test(s)) return NaN;
  if (/^[+-]?0[xX]/.test(s)) {
    if (/^[+-]?0[xX][0-9a-fA-F_]*\.?[0-9a-fA-F_]*[pP][+-]?[0-9_]+$/.test(s) && /[0-9a-fA-F]/.test(s.slice(s.search(/[xX]/) + 1).split(/[pP]/)[0]!)) {
      throw new Unmatched(`double() of the hexadecimal float ${JSON.stringify(s)}`);
    }
    return bad;
  }
  if (s.includes('_') && !underscoreOK(s)) return bad;
  const plain = s.replaceAll('_', '');
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(plain)) return bad;
  const d = Number(plain);
  if (!Number.isFinite(d)) return new Err(`strconv.ParseFloat: parsing ${JSON.stringify(s)}: value out of range`);
  return d;
}

function toInt(v: Val): Res {
  if (typeof v === 'bigint') return v;
  if (v instanceof Uint) return v.value > MAX_INT ? new Err('integer overflow') : v.value;
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v <= -(2 ** 63) || v >= 2 ** 63) return new Err('integer overflow');
    return BigInt(Math.trunc(v));
  }
  if (typeof v === 'string') {
    // strconv.ParseInt(s, 10, 64): an optional sign and decimal digits, nothing else.
    if (!/^[+-]?\d+$/.test(v)) return new Err(`type conversion error from 'string' to 'int'`);
    const n = BigInt(v);
    return n < MIN_INT || n > MAX_INT ? new Err(`type conversion error from 'string' to 'int'`) : n;
  }
  return new Err(`type conversion error from '${typeOf(v)}' to 'int'`);
}

function toUint(v: Val): Res {
  if (v instanceof Uint) return v;
  if (typeof v === 'bigint') return uint64(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v < 0 || v >= 18446744073709551616) return new Err('unsigned integer overflow');
    return new Uint(BigInt(Math.trunc(v)));
  }
  if (typeof v === 'string') {
    if (!/^\d+$/.test(v)) return new Err(`type conversion error from 'string' to 'uint'`);
    const n = BigInt(v);
    return n > MAX_UINT ? new Err(`type conversion error from 'string' to 'uint'`) : new Uint(n);
  }
  return new Err(`type conversion error from '${typeOf(v)}' to 'uint'`);
}

function toDouble(v: Val): Res {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint) return Number(v.value);
  if (typeof v === 'string') {
    const d = parseGoFloat(v);
    return isErr(d) ? new Err(`type conversion error from 'string' to 'double'`) : d;
  }
  return new Err(`type conversion error from '${typeOf(v)}' to 'double'`);
}

function toStringValue(v: Val): Res {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint) return v.value.toString();
  if (typeof v === 'number') return formatDouble(v);
  return new Err(`type conversion error from '${typeOf(v)}' to 'string'`);
}

const GO_BOOLS: Record<string, boolean> = { '1': true, t: true, T: true, TRUE: true, true: true, True: true, '0': false, f: false, F: false, FALSE: false, false: false, False: false };

function toBool(v: Val): Res {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && Object.hasOwn(GO_BOOLS, v)) return GO_BOOLS[v]!;
  return new Err(`type conversion error from '${typeOf(v)}' to 'bool'`);
}

export const CONVERSIONS: Record<string, (v: Val) => Res> = {
  int: toInt,
  uint: toUint,
  double: toDouble,
  string: toStringValue,
  bool: toBool,
  dyn: (v) => v,
  type: (v) => new CelType(typeOf(v)),
};

// ---------------------------------------------------------------------------------------------
// Operators

function add(a: Val, b: Val): Res {
  if (typeof a === 'bigint' && typeof b === 'bigint') return int64(a + b);
  if (a instanceof Uint && b instanceof Uint) return uint64(a.value + b.value);
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (typeof a === 'string' && typeof b === 'string') return a + b;
  if (a instanceof CelList && b instanceof CelList) {
    // baseList.Add returns the other list itself when one is empty (the left one unwrapped: Add is
    // the wrapped list's own).
    if (a.items.length === 0) return b;
    if (b.items.length === 0) return unwrap(a);
    return new CelList([...a.items, ...b.items], 'any');
  }
  return noOverload('_+_');
}

type ArithmeticOp = '-' | '*' | '/' | '%';

function arithmetic(op: ArithmeticOp, a: Val, b: Val): Res {
  if (typeof a === 'bigint' && typeof b === 'bigint') return intArithmetic(op, a, b);
  if (a instanceof Uint && b instanceof Uint) return uintArithmetic(op, a.value, b.value);
  if (typeof a === 'number' && typeof b === 'number' && op !== '%') return op === '-' ? a - b : op === '*' ? a * b : a / b;
  return noOverload(`_${op}_`);
}

function intArithmetic(op: ArithmeticOp, a: bigint, b: bigint): Res {
  if (op === '-') return int64(a - b);
  if (op === '*') return int64(a * b);
  if (b === 0n) return new Err(op === '/' ? 'divide by zero' : 'modulus by zero');
  if (a === MIN_INT && b === -1n) return new Err('integer overflow');
  return op === '/' ? a / b : a % b;
}

function uintArithmetic(op: ArithmeticOp, a: bigint, b: bigint): Res {
  if (op === '-') return uint64(a - b);
  if (op === '*') return uint64(a * b);
  if (b === 0n) return new Err(op === '/' ? 'divide by zero' : 'modulus by zero');
  return new Uint(op === '/' ? a / b : a % b);
}

function contains(container: Val, item: Val): Res {
  if (container instanceof CelList) return container.items.some((x) => equals(x, item));
  if (container instanceof CelMap) return typeof item === 'string' && container.entries.has(item);
  if (container instanceof Root) return typeof item === 'string' && container.fields.has(item);
  return noOverload('@in');
}

// ---------------------------------------------------------------------------------------------
// The strings extension (cel-go ext.Strings, version 2, as the API server configures it)

function asciiCase(s: string, upper: boolean): string {
  return s.replace(upper ? /[a-z]+/g : /[A-Z]+/g, (m) => (upper ? m.toUpperCase() : m.toLowerCase()));
}

/** Go's unicode.IsSpace, which strings.TrimSpace trims (not JavaScript's set: U+FEFF stays, U+0085 goes). */
const GO_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

function indexOf(s: string, sub: string, offset: bigint): Res {
  if (offset < 0n) return new Err(`index out of range: ${offset}`);
  const runes = codePoints(s);
  if (sub === '') return offset > BigInt(runes.length) ? BigInt(runes.length) : offset;
  const subRunes = codePoints(sub);
  if (offset >= BigInt(runes.length)) return -1n;
  for (let i = Number(offset); i < runes.length - (subRunes.length - 1); i++) {
    if (subRunes.every((r, j) => runes[i + j] === r)) return BigInt(i);
  }
  return -1n;
}

function lastIndexOf(s: string, sub: string, offset: bigint | undefined): Res {
  const runes = codePoints(s);
  if (offset === undefined) {
    if (sub === '') return BigInt(runes.length);
    if (utf8Length(s) < utf8Length(sub)) return -1n;
    offset = BigInt(runes.length - 1);
  }
  if (offset < 0n) return new Err(`index out of range: ${offset}`);
  if (sub === '') return offset > BigInt(runes.length) ? BigInt(runes.length) : offset;
  const subRunes = codePoints(sub);
  if (offset >= BigInt(runes.length)) return -1n;
  let off = Number(offset);
  if (off > runes.length - subRunes.length) off = runes.length - subRunes.length;
  for (let i = off; i >= 0; i--) {
    if (subRunes.every((r, j) => runes[i + j] === r)) return BigInt(i);
  }
  return -1n;
}

/** Go's strings.Replace: at most n replacements (all when n < 0); "" matches before every rune and at the end. */
function replace(s: string, from: string, to: string, n: bigint): string {
  if (n === 0n || from === to) return s;
  const parts = from === '' ? ['', ...codePoints(s), ''] : s.split(from);
  const max = parts.length - 1;
  const count = n < 0n || n > BigInt(max) ? max : Number(n);
  if (from === '') {
    const runes = codePoints(s);
    return runes.slice(0, count).map((r) => to + r).join('') + (count > runes.length ? to : '') + runes.slice(count).join('');
  }
  return parts.slice(0, count + 1).join(to) + (count < max ? from + parts.slice(count + 1).join(from) : '');
}

/** Go's strings.SplitN (n < 0: all; 0: none; "" splits into runes). */
function split(s: string, sep: string, n: bigint): string[] {
  if (n === 0n) return [];
  const parts = sep === '' ? codePoints(s) : s.split(sep);
  if (n < 0n || BigInt(parts.length) <= n) return parts;
  const k = Number(n);
  return [...parts.slice(0, k - 1), parts.slice(k - 1).join(sep)];
}

// ---------------------------------------------------------------------------------------------
// Evaluation

interface Scope {
  readonly vars: ReadonlyMap<string, Val>;
}

const TYPE_NAMES = new Set(['bool', 'int', 'uint', 'double', 'string', 'list', 'map', 'null_type', 'type']);

type NodeOf<Op extends ASTNode['op']> = Extract<ASTNode, { op: Op }>;
type Selection = NodeOf<'.' | '.?' | '[]' | '[?]'>;
type NodeEvaluator<Op extends ASTNode['op']> = (evaluation: Evaluation, node: NodeOf<Op>, scope: Scope) => Res;

export function isSelection(node: ASTNode): node is Selection {
  return node.op === '.' || node.op === '.?' || node.op === '[]' || node.op === '[?]';
}

interface CallParts {
  name: string;
  receiver: ASTNode | undefined;
  args: readonly ASTNode[];
}

/** optional.of(x), optional.none(): `optional` is the namespace unless a variable has that name. */
function namesOptionalNamespace(receiver: ASTNode | undefined, scope: Scope): boolean {
  return receiver?.op === 'id' && receiver.args === 'optional' && !scope.vars.has('optional');
}

function callParts(node: NodeOf<'call' | 'rcall'>): CallParts {
  return node.op === 'call' ? { name: node.args[0], receiver: undefined, args: node.args[1] } : { name: node.args[0], receiver: node.args[1], args: node.args[2] };
}

/** A comprehension's range, ready to bind each element to the iteration variable. */
interface Iteration {
  elements: Val[];
  overMap: boolean;
  bind: (element: Val) => Scope;
  predicate: ASTNode;
}

const ORDERINGS: Readonly<Record<'<' | '<=' | '>' | '>=', (c: -1 | 0 | 1) => boolean>> = {
  '<': (c) => c < 0,
  '<=': (c) => c <= 0,
  '>': (c) => c > 0,
  '>=': (c) => c >= 0,
};

/** The operands' first error, else what `then` makes of their values. */
function withValues(a: Res, b: Res, then: (a: Val, b: Val) => Res): Res {
  if (isErr(a)) return a;
  if (isErr(b)) return b;
  return then(a, b);
}

class Evaluation {
  cost = 0;
  constructor(private readonly limit: number) {}

  private static readonly BY_OP: { readonly [Op in ASTNode['op']]?: NodeEvaluator<Op> } = {
    value: (_, node) => literal(node.args),
    id: (evaluation, node, scope) => evaluation.identifier(node.args, scope),
    '.': (evaluation, node, scope) => evaluation.attribute(node, scope, true),
    '.?': (evaluation, node, scope) => evaluation.attribute(node, scope, true),
    '[]': (evaluation, node, scope) => evaluation.attribute(node, scope, true),
    '[?]': (evaluation, node, scope) => evaluation.attribute(node, scope, true),
    '?:': (evaluation, node, scope) => evaluation.conditional(node, scope),
    '&&': (evaluation, node, scope) => evaluation.logical('&&', node.args[0], node.args[1], scope),
    '||': (evaluation, node, scope) => evaluation.logical('||', node.args[0], node.args[1], scope),
    '!_': (evaluation, node, scope) => evaluation.not(node.args, scope),
    '-_': (evaluation, node, scope) => evaluation.negation(node, scope),
    list: (evaluation, node, scope) => evaluation.list(node, scope),
    map: (evaluation, node, scope) => evaluation.map(node, scope),
    call: (evaluation, node, scope) => evaluation.call(node, scope),
    rcall: (evaluation, node, scope) => evaluation.call(node, scope),
    '==': (evaluation, node, scope) => evaluation.equality(node, scope),
    '!=': (evaluation, node, scope) => evaluation.equality(node, scope),
    '<': (evaluation, node, scope) => evaluation.ordering(node, scope),
    '<=': (evaluation, node, scope) => evaluation.ordering(node, scope),
    '>': (evaluation, node, scope) => evaluation.ordering(node, scope),
    '>=': (evaluation, node, scope) => evaluation.ordering(node, scope),
    '+': (evaluation, node, scope) => evaluation.plus(node, scope),
    '-': (evaluation, node, scope) => evaluation.arithmetic(node, scope),
    '*': (evaluation, node, scope) => evaluation.arithmetic(node, scope),
    '/': (evaluation, node, scope) => evaluation.arithmetic(node, scope),
    '%': (evaluation, node, scope) => evaluation.arithmetic(node, scope),
    in: (evaluation, node, scope) => evaluation.membership(node, scope),
  };

  private static readonly MACROS: Readonly<Record<string, (evaluation: Evaluation, iteration: Iteration, args: readonly ASTNode[]) => Res>> = {
    all: (evaluation, iteration) => evaluation.quantifier('all', iteration),
    exists: (evaluation, iteration) => evaluation.quantifier('exists', iteration),
    exists_one: (evaluation, iteration) => evaluation.existsOne(iteration),
    map: (evaluation, iteration, args) => evaluation.mapOrFilter('map', args, iteration),
    filter: (evaluation, iteration, args) => evaluation.mapOrFilter('filter', args, iteration),
  };

  charge(n: number): void {
    this.cost += n;
    if (this.cost > this.limit) throw new CostLimitExceeded();
  }

  eval(node: ASTNode, scope: Scope): Res {
    const evaluate = Evaluation.BY_OP[node.op] as ((evaluation: Evaluation, node: ASTNode, scope: Scope) => Res) | undefined;
    if (!evaluate) throw new Error(`unsupported node ${node.op}`);
    return evaluate(this, node, scope);
  }

  private identifier(name: string, scope: Scope): Res {
    if (scope.vars.has(name)) {
      this.charge(1);
      return scope.vars.get(name)!;
    }
    if (TYPE_NAMES.has(name)) return new CelType(name);
    throw new Error(`unknown identifier ${name}`);
  }

  private not(operand: ASTNode, scope: Scope): Res {
    const v = this.eval(operand, scope);
    this.charge(1);
    if (isErr(v)) return v;
    return typeof v === 'boolean' ? !v : noOverload('!_');
  }

  private negation(node: NodeOf<'-_'>, scope: Scope): Res {
    const lit = negativeLiteral(node);
    if (lit) return negated(lit);
    const v = this.eval(node.args, scope);
    this.charge(1);
    if (isErr(v)) return v;
    if (typeof v === 'bigint') return v === MIN_INT ? new Err('integer overflow') : -v;
    if (typeof v === 'number') return -v;
    return noOverload('-_');
  }

  private list(node: NodeOf<'list'>, scope: Scope): Res {
    if (isConstant(node)) return constant(node);
    const items: Val[] = [];
    let error: Err | undefined;
    for (const element of node.args) {
      const v = this.eval(element, scope);
      if (isErr(v)) error ??= v;
      else items.push(v);
    }
    this.charge(10);
    return error ?? new CelList(items, 'refval');
  }

  private map(node: NodeOf<'map'>, scope: Scope): Res {
    if (isConstant(node)) return constant(node);
    const entries = new Map<string, Val>();
    let error: Err | undefined;
    for (const [keyNode, valueNode] of node.args) {
      const k = this.eval(keyNode, scope);
      const v = this.eval(valueNode, scope);
      if (isErr(k)) error ??= k;
      else if (isErr(v)) error ??= v;
      else if (typeof k !== 'string') throw new Unmatched(`a map key of type ${typeOf(k)}`);
      else if (entries.has(k)) throw new Unmatched(`the map key ${JSON.stringify(k)} twice`);
      else entries.set(k, v);
    }
    this.charge(30);
    return error ?? new CelMap(entries);
  }

  private equality(node: NodeOf<'==' | '!='>, scope: Scope): Res {
    const [a, b] = this.both(node.args, scope);
    this.charge(ceilTenth(Math.min(actualSize(a), actualSize(b))));
    return withValues(a, b, (x, y) => equals(x, y) === (node.op === '=='));
  }

  private ordering(node: NodeOf<'<' | '<=' | '>' | '>='>, scope: Scope): Res {
    const [a, b] = this.both(node.args, scope);
    this.charge(typeof a === 'string' && typeof b === 'string' ? Math.max(1, ceilTenth(Math.min(actualSize(a), actualSize(b)))) : 1);
    return withValues(a, b, (x, y) => {
      const c = compare(x, y);
      return isErr(c) ? c : ORDERINGS[node.op](c);
    });
  }

  private plus(node: NodeOf<'+'>, scope: Scope): Res {
    const [a, b] = this.both(node.args, scope);
    // add_string costs by both sizes, also when one side is an error; add_list 1. Both are
    // covered by the larger of the two, so the charge is never below cel-go's.
    this.charge(Math.max(1, ceilTenth(actualSize(a) + actualSize(b))));
    return withValues(a, b, add);
  }

  private arithmetic(node: NodeOf<'-' | '*' | '/' | '%'>, scope: Scope): Res {
    const [a, b] = this.both(node.args, scope);
    this.charge(1);
    return withValues(a, b, (x, y) => arithmetic(node.op, x, y));
  }

  private membership(node: NodeOf<'in'>, scope: Scope): Res {
    const [a, b] = this.both(node.args, scope);
    this.charge(b instanceof CelList ? Math.max(1, b.items.length) : 1);
    return withValues(a, b, (x, y) => contains(y, x));
  }

  private both(args: readonly [ASTNode, ASTNode], scope: Scope): [Res, Res] {
    const a = this.eval(args[0], scope);
    return [a, this.eval(args[1], scope)];
  }

  /** cel-go's evalAnd / evalOr: left to right, the deciding value wins over errors. */
  private logical(op: '&&' | '||', left: ASTNode, right: ASTNode, scope: Scope): Res {
    const decisive = op === '||';
    let error: Err | undefined;
    for (const term of [left, right]) {
      const v = this.eval(term, scope);
      if (v === decisive) return decisive;
      if (typeof v !== 'boolean') error ??= isErr(v) ? v : noOverload(op);
    }
    return error ?? !decisive;
  }

  private conditional(node: NodeOf<'?:'>, scope: Scope): Res {
    const cond = this.eval(node.args[0], scope);
    if (isErr(cond)) return cond;
    if (typeof cond !== 'boolean') return noOverload('_?_:_');
    return this.branch(cond ? node.args[1] : node.args[2], scope);
  }

  /** A branch of ?: is resolved as an attribute: an identifier there costs nothing, its qualifiers do. */
  private branch(node: ASTNode, scope: Scope): Res {
    if (node.op === 'id' && scope.vars.has(node.args)) return scope.vars.get(node.args)!;
    if (isSelection(node)) return this.attribute(node, scope, false);
    return this.eval(node, scope);
  }

  /**
   * A chain of selects and indexes, as cel-go's attributes: 1 for the attribute (unless it is a
   * branch of ?:), 1 for each qualifier applied, an index computed by another expression costing
   * what that expression costs, and an optional qualifier nothing when the value is absent.
   */
  private attribute(node: Selection, scope: Scope, observed: boolean): Res {
    const chain: Selection[] = [];
    let root: ASTNode = node;
    while (isSelection(root)) {
      chain.unshift(root);
      root = root.args[0];
    }
    const state: Qualified = { value: this.attributeRoot(root, scope), optional: false };
    // The attribute itself (an identifier, or a relative attribute over another expression's value);
    // a conditional attribute has no cost of its own, nor has an attribute a ?: branch resolves.
    if (observed && root.op !== '?:') this.charge(1);
    for (const step of chain) if (!this.qualify(state, step, scope)) break;
    const { value, optional } = state;
    return !isErr(value) && optional && !(value instanceof Optional) ? new Optional(value) : value;
  }

  private attributeRoot(root: ASTNode, scope: Scope): Res {
    if (root.op === 'id' && scope.vars.has(root.args)) return scope.vars.get(root.args)!;
    return root.op === '?:' ? this.conditional(root, scope) : this.eval(root, scope);
  }

  /** Applies one qualifier of an attribute to the value so far; false where the chain stops. */
  private qualify(state: Qualified, step: Selection, scope: Scope): boolean {
    if (isErr(state.value)) return false;
    const isField = step.op === '.' || step.op === '.?';
    const key = isField ? step.args[1] : this.indexKey(step.args[1], scope);
    if (isErr(key)) {
      state.value = key;
      return false;
    }
    if (!unwrapOptional(state)) return false;
    const found = lookup(state.value, key, isField);
    if (step.op === '.?' || step.op === '[?]' || state.optional) return this.qualifyOptionally(state, found);
    this.charge(1);
    state.value = found instanceof Missing ? new Err(found.message) : found;
    return true;
  }

  private indexKey(index: ASTNode, scope: Scope): Res {
    return index.op === 'value' ? literal(index.args) : this.eval(index, scope);
  }

  /** Once optional, an attribute stays optional: absent is optional.none(), found is wrapped. */
  private qualifyOptionally(state: Qualified, found: Res): boolean {
    state.optional = true;
    if (found instanceof Missing) {
      state.value = new Optional(undefined);
      return false;
    }
    this.charge(1);
    if (isErr(found)) {
      state.value = found;
      return false;
    }
    state.value = new Optional(found);
    return true;
  }

  private call(node: NodeOf<'call' | 'rcall'>, scope: Scope): Res {
    const parts = callParts(node);
    const { name, receiver, args } = parts;
    // Macros and lazily evaluated functions first.
    if (receiver === undefined) return this.globalCall(node, parts, scope);
    if (Object.hasOwn(Evaluation.MACROS, name)) return this.comprehension(name, receiver, args, scope);
    if (name === 'orValue' || name === 'or') return this.optionalOr(name, receiver, args[0]!, scope);
    return this.function(parts, scope);
  }

  private globalCall(node: NodeOf<'call' | 'rcall'>, parts: CallParts, scope: Scope): Res {
    if (parts.name === 'has') return this.has(parts.args[0]!, scope);
    if (Object.hasOwn(CONVERSIONS, parts.name) && isConstant(node)) return constant(node);
    return this.function(parts, scope);
  }

  private optionalOr(name: 'orValue' | 'or', receiver: ASTNode, alternativeNode: ASTNode, scope: Scope): Res {
    const opt = this.eval(receiver, scope);
    if (isErr(opt)) return opt;
    if (!(opt instanceof Optional)) return noOverload(name);
    if (opt.value !== undefined) return name === 'orValue' ? opt.value : opt;
    const alternative = this.eval(alternativeNode, scope);
    if (name === 'or' && !isErr(alternative) && !(alternative instanceof Optional)) return noOverload('or');
    return alternative;
  }

  private function({ name, receiver, args }: CallParts, scope: Scope): Res {
    const isOptionalNamespace = namesOptionalNamespace(receiver, scope);
    const member = receiver !== undefined && !isOptionalNamespace;
    const values: Res[] = receiver !== undefined && member ? [this.eval(receiver, scope)] : [];
    for (const arg of args) values.push(this.eval(arg, scope));
    const fn = isOptionalNamespace ? `optional.${name}` : name;
    this.charge(callCost(fn, values));
    const result = values.find(isErr) ?? apply(fn, member, values as Val[]);
    if (fn === 'join') this.charge(Math.ceil(actualSize(result) * 2 * 0.1));
    return result;
  }

  private has(arg: ASTNode, scope: Scope): Res {
    if (arg.op !== '.') throw new Error('has() takes a field selection');
    const operand = this.attributeOperand(arg.args[0], scope);
    if (isErr(operand)) return operand;
    const field = arg.args[1];
    if (operand instanceof Optional) return operand.value === undefined ? new Optional(undefined) : new Optional(hasField(operand.value, field));
    return hasField(operand, field);
  }

  /** The operand of a presence test, as the attribute it is in cel-go. */
  private attributeOperand(node: ASTNode, scope: Scope): Res {
    if (node.op === 'id' && scope.vars.has(node.args)) {
      this.charge(1);
      return scope.vars.get(node.args)!;
    }
    if (isSelection(node)) return this.attribute(node, scope, true);
    const v = this.eval(node, scope);
    this.charge(1);
    return v;
  }

  private comprehension(macro: string, rangeNode: ASTNode, args: readonly ASTNode[], scope: Scope): Res {
    const iterVar = args[0]!;
    if (iterVar.op !== 'id') throw new Error('a comprehension variable must be an identifier');
    const range = this.eval(rangeNode, scope);
    if (isErr(range)) return range;
    if (!(range instanceof CelList) && !(range instanceof CelMap)) return noOverload(macro);
    const overMap = range instanceof CelMap;
    if (overMap && (macro === 'map' || macro === 'filter')) throw new Unmatched(`${macro}() over a map, whose order the API server leaves to Go's random map iteration`);
    const iteration: Iteration = {
      elements: overMap ? [...range.entries.keys()] : [...range.items],
      overMap,
      bind: (v) => ({ vars: new Map([...scope.vars, [iterVar.args, v]]) }),
      predicate: args[1]!,
    };
    return Evaluation.MACROS[macro]!(this, iteration, args);
  }

  /** accu = init; while @not_strictly_false(cond(accu)): accu = accu && p (or ||). */
  private quantifier(macro: 'all' | 'exists', { elements, overMap, bind, predicate }: Iteration): Res {
    const decisive = macro === 'exists';
    let accu: Res = !decisive;
    for (const element of elements) {
      this.charge(macro === 'all' ? 2 : 3);
      // cel-go stops once decided; over a map, the order is Go's random one: charge as if the
      // decisive element came last, so the cost is never less than the API server's.
      if (accu === decisive && !overMap) break;
      this.charge(1);
      const v = this.eval(predicate, bind(element));
      if (accu === decisive) continue;
      if (v === decisive) accu = decisive;
      else if (typeof v !== 'boolean' && !isErr(accu)) accu = isErr(v) ? v : noOverload(macro);
    }
    this.charge(1);
    return accu;
  }

  private existsOne({ elements, bind, predicate }: Iteration): Res {
    let count: Res = 0n;
    for (const element of elements) {
      const v = this.eval(predicate, bind(element));
      if (isErr(v)) count = v;
      else if (typeof v !== 'boolean') count = noOverload('_?_:_');
      else if (v) {
        this.charge(2);
        if (!isErr(count)) count = count + 1n;
      }
    }
    this.charge(2);
    return isErr(count) ? count : count === 1n;
  }

  private mapOrFilter(macro: 'map' | 'filter', args: readonly ASTNode[], { elements, bind, predicate }: Iteration): Res {
    const filter = macro === 'filter' || args.length === 3 ? predicate : undefined;
    const transform = macro === 'map' ? args[args.length - 1]! : undefined;
    let accu: Res = new CelList([], 'refval');
    for (const element of elements) {
      const inner = bind(element);
      const keep = filter ? this.kept(filter, inner) : true;
      if (keep !== true) {
        if (keep !== false) accu = keep;
        continue;
      }
      // accu + [transform or the element]
      this.charge(1);
      const item = this.transformed(transform, element, inner);
      this.charge(1);
      if (isErr(accu)) continue;
      accu = isErr(item) ? item : new CelList([...accu.items, item], 'refval');
    }
    this.charge(1);
    return accu;
  }

  private kept(filter: ASTNode, scope: Scope): boolean | Err {
    const keep = this.eval(filter, scope);
    if (isErr(keep)) return keep;
    return typeof keep === 'boolean' ? keep : noOverload('_?_:_');
  }

  private transformed(transform: ASTNode | undefined, element: Val, scope: Scope): Res {
    if (!transform) {
      this.charge(1 + 10);
      return element;
    }
    if (isConstant(transform)) return constant(transform);
    const item = this.eval(transform, scope);
    this.charge(10);
    return item;
  }
}

/** An attribute's value as its qualifiers are applied, and whether an optional one made it optional. */
interface Qualified {
  value: Res;
  optional: boolean;
}

/** An optional value so far makes the attribute optional; false when there is nothing in it to qualify. */
function unwrapOptional(state: Qualified): boolean {
  if (!(state.value instanceof Optional)) return true;
  state.optional = true;
  if (state.value.value === undefined) return false;
  state.value = state.value.value;
  return true;
}

function hasField(operand: Val, field: string): boolean {
  if (operand instanceof CelMap) return operand.entries.has(field);
  if (operand instanceof Root) return operand.fields.has(field);
  return false;
}

/** Not found, as distinct from an error (an optional qualifier makes it optional.none()). */
class Missing extends Err {}

function lookup(container: Val, key: Val, isField: boolean): Res {
  if (container instanceof Root) {
    if (typeof key !== 'string') return new Err(`no such key: ${describe(key)}`);
    return container.fields.has(key) ? wrap(container.fields.get(key)!) : new Missing(`no such key: ${key}`);
  }
  if (container instanceof CelMap) {
    if (typeof key !== 'string') return new Missing(`no such key: ${describe(key)}`);
    if (!container.entries.has(key)) return new Missing(`no such key: ${key}`);
    const found = container.entries.get(key)!;
    return container.wrapped ? wrap(found) : found;
  }
  if (container instanceof CelList && !isField) {
    let index: bigint | undefined;
    if (typeof key === 'bigint') index = key;
    else if (key instanceof Uint) index = key.value;
    else if (typeof key === 'number' && Number.isInteger(key)) index = BigInt(key);
    if (index === undefined) return new Err(`unsupported index type '${typeOf(key)}' in list`);
    if (index < 0n || index >= BigInt(container.items.length)) return new Err(`index out of bounds: ${index}`);
    const found = container.items[Number(index)]!;
    return container.wrapped ? wrap(found) : found;
  }
  return new Err(`no such key: ${describe(key)}`);
}

function describe(v: Val): string {
  return typeof v === 'object' && v !== null ? typeOf(v) : String(v);
}

/** cel-js's UnsignedInt (a class it does not export as a value). */
export function unsignedLiteral(value: unknown): bigint | undefined {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return undefined;
  const v = (value as { value?: unknown }).value;
  return typeof v === 'bigint' ? v : undefined;
}

/**
 * cel-go's parser reads a minus sign before a number as part of the literal (-1 is a constant, and
 * -9223372036854775808 is in range); cel-js parses -_(1). The literal when the node is such a minus.
 */
export function negativeLiteral(node: ASTNode): ASTNode | undefined {
  if (node.op !== '-_') return undefined;
  const operand = node.args;
  if (operand.op !== 'value' || (typeof operand.args !== 'bigint' && typeof operand.args !== 'number')) return undefined;
  return /^-\s*$/.test(node.input.slice(node.start, operand.start)) ? operand : undefined;
}

function negated(literalNode: ASTNode): Val {
  const v = literalNode.args as bigint | number;
  return -v;
}

function literal(value: unknown): Val {
  const unsigned = unsignedLiteral(value);
  if (unsigned !== undefined) return new Uint(unsigned);
  if (value === null || typeof value === 'boolean' || typeof value === 'bigint' || typeof value === 'number' || typeof value === 'string') return value;
  throw new Error(`unsupported literal ${typeof value}`);
}

/**
 * What cel-go's optimiser (cel.OptOptimize) computes once, ahead of evaluation, at no cost:
 * literals, type names, lists and maps of those, and conversions of them.
 */
export function isConstant(node: ASTNode): boolean {
  switch (node.op) {
    case 'value':
      return true;
    case '-_':
      return negativeLiteral(node) !== undefined;
    case 'id':
      return TYPE_NAMES.has(node.args);
    case 'list':
      return node.args.every(isConstant);
    case 'map':
      return node.args.every(([k, v]) => isConstant(k) && isConstant(v));
    case 'call':
      return Object.hasOwn(CONVERSIONS, node.args[0]) && node.args[1].length === 1 && isConstant(node.args[1][0]!);
    default:
      return false;
  }
}

/** The value of a constant node; a conversion that fails is an error (the API server's compile error). */
export function constant(node: ASTNode): Res {
  const evaluation = new Evaluation(Infinity);
  switch (node.op) {
    case 'value':
      return literal(node.args);
    case '-_':
      return negated(negativeLiteral(node)!);
    case 'id':
      return new CelType(node.args);
    case 'list': {
      const items = node.args.map(constant);
      const error = items.find(isErr);
      return error ?? new CelList(items as Val[], 'refval');
    }
    case 'map': {
      const entries = new Map<string, Val>();
      for (const [k, v] of node.args) {
        const key = constant(k);
        const value = constant(v);
        if (isErr(key)) return key;
        if (isErr(value)) return value;
        if (typeof key !== 'string') throw new Unmatched(`a map key of type ${typeOf(key)}`);
        entries.set(key, value); // a constant map keeps the last of two equal keys, as cel-go's does
      }
      return new CelMap(entries);
    }
    case 'call': {
      const arg = constant(node.args[1][0]!);
      return isErr(arg) ? arg : CONVERSIONS[node.args[0]]!(arg);
    }
    default:
      return evaluation.eval(node, { vars: new Map() });
  }
}

const stringCost = (args: readonly Res[]) => ceilTenth(actualSize(args[0]!));
const doubledStringCost = (args: readonly Res[]) => Math.ceil(actualSize(args[0]!) * 2 * 0.1);
const traversal = (args: readonly Res[]) => traversalCost(args[0]!);
const suffixCost = (args: readonly Res[]) => ceilTenth(actualSize(args[1]!));

/** The cost cel-go charges for a call (library.CostEstimator first, then cel-go's defaults: 1). */
const CALL_COSTS: Readonly<Record<string, (args: readonly Res[]) => number>> = {
  lowerAscii: stringCost,
  upperAscii: stringCost,
  substring: stringCost,
  trim: stringCost,
  replace: doubledStringCost,
  split: doubledStringCost,
  join: () => 0, // charged after the call, from the size of its result
  indexOf: traversal,
  lastIndexOf: traversal,
  startsWith: suffixCost,
  endsWith: suffixCost,
  contains: ([first, second]) => ceilTenth(actualSize(first!)) * ceilTenth(actualSize(second!)),
};

function callCost(fn: string, args: readonly Res[]): number {
  return Object.hasOwn(CALL_COSTS, fn) ? CALL_COSTS[fn]!(args) : 1;
}

const isString = (v: Val | undefined): v is string => typeof v === 'string';
const isInt = (v: Val | undefined): v is bigint => typeof v === 'bigint';
const isOptionalInt = (v: Val | undefined): v is bigint | undefined => v === undefined || isInt(v);

function size(a: Val | undefined): Res {
  if (isString(a)) return BigInt(runeCount(a));
  if (a instanceof CelList) return BigInt(a.items.length);
  if (a instanceof CelMap) return BigInt(a.entries.size);
  if (a instanceof Root) return BigInt(a.fields.size);
  return noOverload('size');
}

function charAt(a: Val | undefined, b: Val | undefined): Res {
  if (!isString(a) || !isInt(b)) return noOverload('charAt');
  const runes = codePoints(a);
  if (b < 0n || b > BigInt(runes.length)) return new Err(`index out of range: ${b}`);
  return runes[Number(b)] ?? '';
}

function substring(a: Val | undefined, b: Val | undefined, c: Val | undefined): Res {
  if (!isString(a) || !isInt(b) || !isOptionalInt(c)) return noOverload('substring');
  const runes = codePoints(a);
  const length = BigInt(runes.length);
  const end = c ?? length;
  if (c !== undefined && b > end) return new Err(`invalid substring range. start: ${b}, end: ${end}`);
  const outside = [b, end].find((index) => index < 0n || index > length);
  if (outside !== undefined) return new Err(`index out of range: ${outside}`);
  return runes.slice(Number(b), Number(end)).join('');
}

function join(a: Val | undefined, b: Val | undefined): Res {
  if (!(a instanceof CelList) || (b !== undefined && !isString(b))) return noOverload('join');
  if (!a.items.every(isString)) return new Err('join: invalid input');
  return a.items.join(b ?? '');
}

/** The functions cel.ts allows, by name (a member function's receiver is its first argument). */
const FUNCTIONS: Readonly<Record<string, (args: readonly Val[], fn: string) => Res>> = {
  size: ([a]) => size(a),
  contains: ([a, b], fn) => (isString(a) && isString(b) ? a.includes(b) : noOverload(fn)),
  startsWith: ([a, b], fn) => (isString(a) && isString(b) ? a.startsWith(b) : noOverload(fn)),
  endsWith: ([a, b], fn) => (isString(a) && isString(b) ? a.endsWith(b) : noOverload(fn)),
  lowerAscii: ([a], fn) => (isString(a) ? asciiCase(a, false) : noOverload(fn)),
  upperAscii: ([a], fn) => (isString(a) ? asciiCase(a, true) : noOverload(fn)),
  trim: ([a], fn) => (isString(a) ? a.replace(GO_SPACE, '') : noOverload(fn)),
  charAt: ([a, b]) => charAt(a, b),
  indexOf: ([a, b, c], fn) => (isString(a) && isString(b) && isOptionalInt(c) ? indexOf(a, b, c ?? 0n) : noOverload(fn)),
  lastIndexOf: ([a, b, c], fn) => (isString(a) && isString(b) && isOptionalInt(c) ? lastIndexOf(a, b, c) : noOverload(fn)),
  substring: ([a, b, c]) => substring(a, b, c),
  replace: ([a, b, c, n], fn) => (isString(a) && isString(b) && isString(c) && isOptionalInt(n) ? replace(a, b, c, n ?? -1n) : noOverload(fn)),
  split: ([a, b, c], fn) => (isString(a) && isString(b) && isOptionalInt(c) ? new CelList(split(a, b, c ?? -1n), 'strings') : noOverload(fn)),
  join: ([a, b]) => join(a, b),
  hasValue: ([a], fn) => (a instanceof Optional ? a.value !== undefined : noOverload(fn)),
  value: ([a], fn) => {
    if (!(a instanceof Optional)) return noOverload(fn);
    return a.value === undefined ? new Err('optional.none() dereference') : a.value;
  },
  'optional.of': ([a]) => new Optional(a),
  'optional.none': () => new Optional(undefined),
  'optional.ofNonZeroValue': ([a]) => new Optional(isZero(a!) ? undefined : a),
};

function apply(fn: string, member: boolean, args: Val[]): Res {
  if (!member && Object.hasOwn(CONVERSIONS, fn)) return CONVERSIONS[fn]!(args[0]!);
  if (!Object.hasOwn(FUNCTIONS, fn)) throw new Error(`unsupported function ${fn}`);
  return FUNCTIONS[fn]!(args, fn);
}

export interface Outcome {
  value: Val | Err;
  cost: number;
}

/** Evaluates a checked, allowed expression with its variable bound. Throws CostLimitExceeded or Unmatched. */
export function evaluate(ast: ASTNode, variable: string, value: Val, limit = COST_LIMIT): Outcome {
  const evaluation = new Evaluation(limit);
  const result = evaluation.eval(ast, { vars: new Map([[variable, value]]) });
  return { value: result, cost: evaluation.cost };
}
