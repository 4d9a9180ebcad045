// DER (ITU-T X.690), as much as X.509 certificates and PKCS#10 requests need: lib/pki.ts writes what
// chaperone signs with it, and reads back a certificate request someone else wrote. Node's crypto
// makes the keys and the signatures; this only lays out the bytes. The reader is strict, for input an
// attacker may write: one-byte tags, definite lengths in their shortest form, nothing past the end.

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OBJECT_IDENTIFIER: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** A context-specific tag: [n] IMPLICIT of a primitive type, or [n] EXPLICIT (constructed). */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

function lengthOctets(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const octets: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest % 256);
  return Buffer.from([0x80 | octets.length, ...octets]);
}

/** One element: its tag, its length and its content (the parts of a constructed one, in order). */
export function element(tag: number, content: Buffer | readonly Buffer[]): Buffer {
  const body = Buffer.isBuffer(content) ? content : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthOctets(body.length), body]);
}

export const sequence = (...parts: Buffer[]) => element(Tag.SEQUENCE, parts);
export const set = (...parts: Buffer[]) => element(Tag.SET, parts);
export const nullElement = () => element(Tag.NULL, Buffer.alloc(0));
export const booleanTrue = () => element(Tag.BOOLEAN, Buffer.from([0xff]));
export const octetString = (bytes: Buffer) => element(Tag.OCTET_STRING, bytes);
/** A BIT STRING of whole octets, or with this many bits of its last octet unused. */
export const bitString = (bytes: Buffer, unusedBits = 0) => element(Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));

/** A non-negative INTEGER from its big-endian magnitude, in the fewest octets. */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return element(Tag.INTEGER, trimmed.length === 0 || trimmed[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export function objectIdentifier(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const octets: number[] = [];
  for (const arc of [40 * arcs[0]! + arcs[1]!, ...arcs.slice(2)]) {
    const base128 = [arc & 0x7f];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) base128.unshift(0x80 | (rest & 0x7f));
    octets.push(...base128);
  }
  return element(Tag.OBJECT_IDENTIFIER, Buffer.from(octets));
}

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, to the second, in UTC. */
export function time(date: Date): Buffer {
  const digits = date.toISOString().replace(/[-:T]|\.\d+/g, ''); // YYYYMMDDHHMMSSZ
  const year = date.getUTCFullYear();
  return year >= 1950 && year < 2050 ? element(Tag.UTC_TIME, Buffer.from(digits.slice(2), 'ascii')) : element(Tag.GENERALIZED_TIME, Buffer.from(digits, 'ascii'));
}

// ---------------------------------------------------------------------------------------------
// Reading.

export interface DerElement {
  tag: number;
  content: Buffer;
  /** The whole element as read, tag and length included: what a signature covers. */
  encoded: Buffer;
}

export class DerError extends Error {}

/** The length octets at offset: the content's length, and where the content starts. */
function readLength(input: Buffer, offset: number): { length: number; start: number } {
  const first = input[offset]!;
  if (!(first & 0x80)) return { length: first, start: offset + 1 };
  const count = first & 0x7f;
  if (count === 0) throw new DerError('an indefinite length');
  if (count > 4 || offset + 1 + count > input.length) throw new DerError('a length out of range');
  let length = 0;
  for (let i = 1; i <= count; i++) length = length * 256 + input[offset + i]!;
  if (input[offset + 1] === 0 || length < 0x80) throw new DerError('a length not in its shortest form');
  return { length, start: offset + 1 + count };
}

function readAt(input: Buffer, offset: number): DerElement {
  if (offset + 2 > input.length) throw new DerError('truncated');
  const tag = input[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('a multi-byte tag');
  const { length, start } = readLength(input, offset + 1);
  if (start + length > input.length) throw new DerError('truncated');
  return { tag, content: input.subarray(start, start + length), encoded: input.subarray(offset, start + length) };
}

/** The one element that is the whole input. */
export function readElement(input: Buffer, expectedTag?: number): DerElement {
  const read = readAt(input, 0);
  if (read.encoded.length !== input.length) throw new DerError('bytes after the end');
  if (expectedTag !== undefined && read.tag !== expectedTag) throw new DerError(`tag 0x${read.tag.toString(16)} where 0x${expectedTag.toString(16)} belongs`);
  return read;
}

/** The elements a constructed element holds, in order. */
export function readChildren(parent: DerElement): DerElement[] {
  if (!(parent.tag & 0x20)) throw new DerError(`tag 0x${parent.tag.toString(16)} is not constructed`);
  const children: DerElement[] = [];
  for (let offset = 0; offset < parent.content.length; ) {
    const child = readAt(parent.content, offset);
    children.push(child);
    offset += child.encoded.length;
  }
  return children;
}

export function expectTag(read: DerElement | undefined, tag: number, what: string): DerElement {
  if (!read) throw new DerError(`no ${what}`);
  if (read.tag !== tag) throw new DerError(`${what} has tag 0x${read.tag.toString(16)}, not 0x${tag.toString(16)}`);
  return read;
}

export function readObjectIdentifier(read: DerElement): string {
  const octets = expectTag(read, Tag.OBJECT_IDENTIFIER, 'an object identifier').content;
  if (octets.length === 0 || octets[octets.length - 1]! & 0x80) throw new DerError('a malformed object identifier');
  const arcs: number[] = [];
  let arc = 0;
  for (const octet of octets) {
    if (arc === 0 && octet === 0x80) throw new DerError('an object identifier arc not in its shortest form');
    arc = arc * 128 + (octet & 0x7f);
    if (arc > Number.MAX_SAFE_INTEGER / 128) throw new DerError('an object identifier arc out of range');
    if (octet & 0x80) continue;
    if (arcs.length === 0) arcs.push(...(arc < 80 ? [Math.floor(arc / 40), arc % 40] : [2, arc - 80]));
    else arcs.push(arc);
    arc = 0;
  }
  return arcs.join('.');
}
