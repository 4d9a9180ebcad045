// Kubernetes protobuf bodies, read as far as the audit needs them and exactly as the API server's
// generated (gogo) Unmarshal code reads them: the envelope ('k8s\0' and a runtime.Unknown holding
// apiVersion, kind and the object's bytes), an object's ObjectMeta (field 1 of every type that has
// one), and a Status answer.
//
// As Go reads the wire: a tag is a 64-bit varint whose field number is its top bits cut to int32 (so a
// long-winded tag can still say field 1); a message field seen twice is merged (a later string wins,
// an earlier one the later leaves out stays); a known field with the wrong wire type fails; unknown
// fields (groups too) are skipped. Strings are bytes, written out with each invalid byte as U+FFFD.
import { goText } from './go-json-view.js';

/** The body is not what Go's Unmarshal accepts; the API server fails to decode it too. */
export class ProtobufUnreadable extends Error {}

const MAGIC = [0x6b, 0x38, 0x73, 0x00];

interface Field {
  number: number;
  wireType: number;
  /** The payload of a length-delimited field; the value of a varint. */
  bytes?: Uint8Array;
  varint?: bigint;
}

const U64 = (1n << 64n) - 1n;

/** A varint as Go's generated code reads it: at most 64 bits kept, a tenth continuation byte is an overflow. */
function varint(bytes: Uint8Array, at: number): [bigint, number] {
  let value = 0n;
  for (let shift = 0n, i = at; ; shift += 7n, i++) {
    if (shift >= 64n) throw new ProtobufUnreadable('proto: integer overflow');
    const b = bytes[i];
    if (b === undefined) throw new ProtobufUnreadable('unexpected EOF');
    value = (value | (BigInt(b & 0x7f) << shift)) & U64;
    if (b < 0x80) return [value, i + 1];
  }
}

/** A length as Go reads one into an int: negative (bit 63 set) or past the end fails. */
function length(bytes: Uint8Array, at: number): [number, number] {
  const [raw, next] = varint(bytes, at);
  if (raw >= 1n << 63n) throw new ProtobufUnreadable('proto: negative length found during unmarshaling');
  if (raw > BigInt(bytes.length - next)) throw new ProtobufUnreadable('unexpected EOF');
  return [Number(raw), next];
}

/** skipGenerated: past an unknown field whose tag was read, a group with everything nested in it. */
function skip(bytes: Uint8Array, at: number, wireType: number): number {
  let depth = wireType === 3 ? 1 : 0;
  let i = at;
  let type = wireType;
  for (;;) {
    if (type === 0) i = varint(bytes, i)[1];
    else if (type === 1) i += 8;
    else if (type === 2) {
      const [n, next] = length(bytes, i);
      i = next + n;
    } else if (type === 5) i += 4;
    else if (type === 4) {
      if (depth === 0) throw new ProtobufUnreadable('proto: unexpected end of group');
      depth--;
    } else if (type !== 3) throw new ProtobufUnreadable(`proto: illegal wireType ${type}`);
    if (i > bytes.length) throw new ProtobufUnreadable('unexpected EOF');
    if (depth === 0) return i;
    const [tag, next] = varint(bytes, i);
    i = next;
    type = Number(tag & 7n);
    if (type === 3) depth++;
  }
}

/** The fields of a message, in order; `known` maps each field number the type knows to the wire type it must have. */
function fields(bytes: Uint8Array, known: ReadonlyMap<number, number>): Field[] {
  const found: Field[] = [];
  for (let i = 0; i < bytes.length; ) {
    const [tag, next] = varint(bytes, i);
    const number = Number(BigInt.asIntN(32, tag >> 3n));
    const wireType = Number(tag & 7n);
    if (wireType === 4) throw new ProtobufUnreadable('proto: wiretype end group for non-group');
    if (number <= 0) throw new ProtobufUnreadable(`proto: illegal tag ${number}`);
    const expected = known.get(number);
    if (expected === undefined) {
      i = skip(bytes, next, wireType);
      continue;
    }
    if (wireType !== expected) throw new ProtobufUnreadable(`proto: wrong wireType = ${wireType} for field ${number}`);
    if (wireType === 2) {
      const [n, start] = length(bytes, next);
      found.push({ number, wireType, bytes: bytes.subarray(start, start + n) });
      i = start + n;
    } else {
      const [value, after] = varint(bytes, next);
      found.push({ number, wireType, varint: value });
      i = after;
    }
  }
  return found;
}

const strings = (numbers: number[]) => new Map(numbers.map((n) => [n, 2]));

/** The string fields among those found, the last of each number winning. */
function lastStrings<K extends string>(found: Field[], names: Record<number, K>): Partial<Record<K, string>> {
  const out: Partial<Record<K, string>> = {};
  for (const field of found) if (field.number in names && field.bytes) out[names[field.number]!] = goText(field.bytes);
  return out;
}

/** The strings of a message seen once or more (Go merges every occurrence into one struct). */
function stringFields<K extends string>(payloads: Uint8Array[], names: Record<number, K>): Partial<Record<K, string>> {
  const known = strings(Object.keys(names).map(Number));
  return lastStrings(
    payloads.flatMap((payload) => fields(payload, known)),
    names,
  );
}

export interface Envelope {
  apiVersion: string;
  kind: string;
  /** The object's own bytes. */
  raw: Uint8Array;
}

/** The runtime.Unknown after the 'k8s\0' prefix. */
export function protobufEnvelope(body: Uint8Array): Envelope {
  if (body.length < MAGIC.length || MAGIC.some((b, i) => body[i] !== b)) throw new ProtobufUnreadable('provided data does not appear to be a protobuf message');
  if (body.length === MAGIC.length) throw new ProtobufUnreadable('empty body');
  const unknown = fields(body.subarray(MAGIC.length), strings([1, 2, 3, 4]));
  const typeMeta = stringFields(
    unknown.filter((f) => f.number === 1).map((f) => f.bytes!),
    { 1: 'apiVersion', 2: 'kind' },
  );
  const raw = unknown.filter((f) => f.number === 2).at(-1)?.bytes ?? new Uint8Array();
  return { apiVersion: typeMeta.apiVersion ?? '', kind: typeMeta.kind ?? '', raw };
}

export interface ObjectMetaStrings {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
}

/** ObjectMeta (field 1 of the object, every occurrence merged): name 1, namespace 3, uid 5, resourceVersion 6. */
export function protobufObjectMeta(raw: Uint8Array): ObjectMetaStrings {
  const metadata = fields(raw, strings([1])).map((f) => f.bytes!);
  return stringFields(metadata, { 1: 'name', 3: 'namespace', 5: 'uid', 6: 'resourceVersion' });
}

export interface StatusFields {
  status?: string;
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string };
  code?: number;
}

/** A metav1.Status answer: status 2, message 3, reason 4, details 5 (name 1, group 2, kind 3), code 6. */
export function protobufStatus(raw: Uint8Array): StatusFields {
  const found = fields(raw, new Map([...strings([1, 2, 3, 4, 5]), [6, 0]]));
  const details = found.filter((f) => f.number === 5).map((f) => f.bytes!);
  const code = found.filter((f) => f.number === 6).at(-1)?.varint;
  return {
    ...lastStrings(found, { 2: 'status', 3: 'message', 4: 'reason' }),
    ...(details.length > 0 ? { details: stringFields(details, { 1: 'name', 2: 'group', 3: 'kind' }) } : {}),
    ...(code !== undefined ? { code: Number(BigInt.asIntN(32, code)) } : {}),
  };
}
