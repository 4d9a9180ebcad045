// JSON read as the API server's Go code reads it, for the documents that decide who someone is (a JWT's
// header and claims, a webhook's TokenReview): a document is taken only where Go's reading and
// JSON.parse's agree on every value, and refused where they would not.
//
// They differ on: duplicate member names (Go merges duplicated objects into one struct or map and
// keeps earlier fields a later duplicate leaves out; go-jose refuses them; JSON.parse keeps the last
// whole value), bytes that are not UTF-8 and escaped lone surrogates (Go makes each a U+FFFD, in its
// own way), numbers beyond float64 (Go fails, JSON.parse makes Infinity) and nesting (Go fails past
// 10000 levels). No honest issuer or webhook writes any of these; a document that has one is refused.
//
// And Go's encoding/json matches a member to a struct field without regard to letter case (the last
// matching member wins), where JSON.parse and map lookups are exact: goField reads a member as a struct
// field would, and goFieldMatches says whether a name would be taken for a field.

/** Why a document was not read; the message names the first thing that Go would read otherwise. */
export class JsonRefused extends Error {
  /** Not JSON at all, rather than JSON that Go would read otherwise. */
  constructor(
    message: string,
    readonly syntax = false,
  ) {
    super(message);
  }
}

/** Refused well short of Go's own limit of 10000. */
const MAX_DEPTH = 1000;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Parses JSON bytes (or text) as described above; throws JsonRefused. */
export function parseGoJson(input: Uint8Array | string): unknown {
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = utf8.decode(input);
    } catch {
      throw new JsonRefused('not valid UTF-8');
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    throw new JsonRefused(`not JSON: ${(err as Error).message}`, true);
  }
  scan(text);
  return value;
}

interface Frame {
  /** The member names seen so far, for an object. */
  names?: Set<string>;
  expectName: boolean;
}

/** Walks JSON text that JSON.parse has accepted, for what it let through and Go would read otherwise. */
function scan(text: string): void {
  const scanner = new JsonScanner(text);
  let i = 0;
  while (i < text.length) i = scanner.step(i) + 1;
}

const isNumberStart = (c: string): boolean => c === '-' || (c >= '0' && c <= '9');

class JsonScanner {
  private readonly stack: Frame[] = [];

  // What each character that matters does; the index returned is the last one it consumed.
  private readonly byCharacter: Readonly<Record<string, (i: number) => number>> = {
    '{': (i) => this.open({ names: new Set(), expectName: true }, i),
    '[': (i) => this.open({ expectName: false }, i),
    '}': (i) => this.close(i),
    ']': (i) => this.close(i),
    ',': (i) => this.comma(i),
    ':': (i) => this.colon(i),
    '"': (i) => this.string(i),
  };

  constructor(private readonly text: string) {}

  step(i: number): number {
    const c = this.text[i]!;
    if (Object.hasOwn(this.byCharacter, c)) return this.byCharacter[c]!(i);
    return isNumberStart(c) ? this.number(i) : i;
  }

  private open(frame: Frame, i: number): number {
    this.stack.push(frame);
    if (this.stack.length > MAX_DEPTH) throw new JsonRefused(`nested deeper than ${MAX_DEPTH} levels`);
    return i;
  }

  private close(i: number): number {
    this.stack.pop();
    return i;
  }

  private comma(i: number): number {
    const top = this.stack.at(-1);
    if (top?.names) top.expectName = true;
    return i;
  }

  private colon(i: number): number {
    this.stack.at(-1)!.expectName = false;
    return i;
  }

  private string(i: number): number {
    let end = i + 1;
    while (this.text[end] !== '"') end += this.text[end] === '\\' ? 2 : 1;
    const value = JSON.parse(this.text.slice(i, end + 1)) as string;
    if (!value.isWellFormed()) throw new JsonRefused(`a string with an unpaired surrogate: ${JSON.stringify(value)}`);
    const top = this.stack.at(-1);
    if (top?.names && top.expectName) {
      if (top.names.has(value)) throw new JsonRefused(`the member ${JSON.stringify(value)} appears twice in one object`);
      top.names.add(value);
    }
    return end;
  }

  private number(i: number): number {
    let end = i + 1;
    while (end < this.text.length && '0123456789.eE+-'.includes(this.text[end]!)) end++;
    if (!Number.isFinite(Number(this.text.slice(i, end)))) throw new JsonRefused(`the number ${this.text.slice(i, end)} is beyond float64`);
    return end - 1;
  }
}

/** Go's case folding of one character of a name, as bytes.EqualFold: ASCII letters, and K (Kelvin) and ſ (long s), which fold to k and s. */
function fold(ch: string): string {
  if (ch === '\u212a') return 'k';
  if (ch === '\u017f') return 's';
  return ch < '\u0080' ? ch.toLowerCase() : ch;
}

/** Whether Go's encoding/json takes a member of this name for the struct field tagged `field` (an ASCII name). */
export function goFieldMatches(name: string, field: string): boolean {
  if (name === field) return true;
  const chars = [...name];
  return chars.length === field.length && chars.every((ch, i) => fold(ch) === fold(field[i]!));
}

/** The names of the members Go takes for the field, in document order (JSON.parse keeps the order of such names). */
export function goFieldMembers(object: Record<string, unknown>, field: string): string[] {
  return Object.keys(object).filter((name) => goFieldMatches(name, field));
}

/** The member Go decodes into the field: the last that matches it; undefined when none does. */
export function goField(object: Record<string, unknown>, field: string): unknown {
  const names = goFieldMembers(object, field);
  return names.length === 0 ? undefined : object[names.at(-1)!];
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
