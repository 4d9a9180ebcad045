// A strict DER reader for the parts of a certificate the sidecar reads itself (its subject, its
// extensions): definite lengths in their shortest form and low tag numbers, as Go's
// encoding/asn1 and cryptobyte insist on. Anything else is a certificate the API server would not
// parse, so it is refused rather than guessed at.

/** A certificate the API server would not parse (or that the sidecar will not read). */
export class MalformedCertificate extends Error {}

export interface Element {
  tag: number;
  content: Buffer;
  /** The whole element, tag and length included: for byte-for-byte comparisons. */
  der: Buffer;
}

export const SEQUENCE = 0x30;
export const SET = 0x31;
export const OID = 0x06;
export const BOOLEAN = 0x01;
export const INTEGER = 0x02;
export const BIT_STRING = 0x03;
export const OCTET_STRING = 0x04;

/** The DER elements one after another in the buffer. */
export function elements(der: Buffer, fail: (why: string) => Error = (why) => new MalformedCertificate(why)): Element[] {
  const out: Element[] = [];
  let at = 0;
  while (at < der.length) {
    const tag = der[at]!;
    if ((tag & 0x1f) === 0x1f) throw fail('a high tag number');
    const { length, contentAt } = readLength(der, at + 1, fail);
    if (contentAt + length > der.length) throw fail('a truncated element');
    out.push({ tag, content: der.subarray(contentAt, contentAt + length), der: der.subarray(at, contentAt + length) });
    at = contentAt + length;
  }
  return out;
}

/** The definite, shortest-form length at `at`, and where the content it measures starts. */
function readLength(der: Buffer, at: number, fail: (why: string) => Error): { length: number; contentAt: number } {
  const first = der[at];
  if (first === undefined) throw fail('a truncated element');
  if (!(first & 0x80)) return { length: first, contentAt: at + 1 };
  const octets = first & 0x7f;
  if (octets === 0 || octets > 4) throw fail('an indefinite or oversized length');
  if (at + 1 + octets > der.length) throw fail('a truncated element');
  let length = 0;
  for (let i = 1; i <= octets; i++) length = length * 256 + der[at + i]!;
  if (der[at + 1] === 0 || length < 0x80) throw fail('a length not in its shortest form');
  return { length, contentAt: at + 1 + octets };
}

/** The first element in the buffer, which must have this tag. */
export function first(der: Buffer, tag: number, what: string, fail: (why: string) => Error = (why) => new MalformedCertificate(why)): Element {
  const [element] = elements(der, fail);
  if (element?.tag !== tag) throw fail(`no ${what}`);
  return element;
}

/** The dotted form of an OBJECT IDENTIFIER's content. */
export function oidText(content: Buffer): string {
  const parts: number[] = [];
  let value = 0;
  for (const byte of content) {
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(value);
      value = 0;
    }
  }
  const [first = 0, ...rest] = parts;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...rest].join('.');
}
