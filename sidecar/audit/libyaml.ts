// YAML syntax as libyaml reads it (go-yaml v2 is a Go port of libyaml, and sigs.k8s.io/yaml uses it):
// the scanner and the parser, as far as the first document, producing the nodes go-yaml's decoder
// builds. YAML 1.2 parsers differ from libyaml in many places a body can exploit: libyaml ignores
// indentation inside flow collections and quoted scalars, takes `-` and `a:b` as plain scalars in
// flow context, reads NEL, LS and PS as line breaks, allows only [0-9A-Za-z_-] in anchors, ends a
// document after a root flow node, and scans a stream lazily (a token is read only when the parser
// needs it, so nothing after the first document is ever looked at). This reads the same way, by the
// same rules: tokens are fetched on demand, with libyaml's simple-key bookkeeping deciding when a
// scalar turns out to be a mapping key, and its indentation stack producing the block structure.
//
// Iterative throughout: nesting costs no stack. Characters libyaml's reader refuses (control
// characters, bad UTF-8) are not checked here: the API server fails on them, and the caller learns
// that from its answer.

/** The YAML does not parse as libyaml parses it: the API server fails on it too. */
export class LibyamlError extends Error {}

export type YamlNode =
  | { kind: 'scalar'; value: string; implicit: boolean; tag?: string }
  | { kind: 'alias'; name: string; target?: YamlNode }
  | { kind: 'mapping'; pairs: [YamlNode, YamlNode][]; tag?: string }
  | { kind: 'sequence'; items: YamlNode[]; tag?: string };

interface Mark {
  index: number;
  line: number;
  column: number;
}

type ScalarStyle = 'plain' | 'single' | 'double' | 'literal' | 'folded';

type Token =
  | {
      type:
        | 'STREAM-START'
        | 'STREAM-END'
        | 'DOCUMENT-START'
        | 'DOCUMENT-END'
        | 'BLOCK-SEQUENCE-START'
        | 'BLOCK-MAPPING-START'
        | 'BLOCK-END'
        | 'FLOW-SEQUENCE-START'
        | 'FLOW-SEQUENCE-END'
        | 'FLOW-MAPPING-START'
        | 'FLOW-MAPPING-END'
        | 'BLOCK-ENTRY'
        | 'FLOW-ENTRY'
        | 'KEY'
        | 'VALUE';
    }
  | { type: 'VERSION-DIRECTIVE'; major: number; minor: number }
  | { type: 'TAG-DIRECTIVE'; handle: string; prefix: string }
  | { type: 'ALIAS' | 'ANCHOR'; value: string }
  | { type: 'TAG'; handle: string; suffix: string }
  | { type: 'SCALAR'; value: string; style: ScalarStyle };

interface SimpleKey {
  possible: boolean;
  required: boolean;
  tokenNumber: number;
  mark: Mark;
}

const MAX_DEPTH = 10_000;
const cc = (ch: string) => ch.codePointAt(0)!;
const [SPACE, TAB, CR, LF, NEL, LS, PS] = [cc(' '), cc('\t'), cc('\r'), cc('\n'), 0x85, 0x2028, 0x2029];

const isBlank = (c: number) => c === SPACE || c === TAB;
const isBreak = (c: number) => c === CR || c === LF || c === NEL || c === LS || c === PS;
/** libyaml's buffer ends in NUL; a NUL in the input is refused by its reader, so either way nothing is read past it. */
const isZ = (c: number) => c === 0;
const isBreakZ = (c: number) => isBreak(c) || isZ(c);
const isBlankZ = (c: number) => isBlank(c) || isBreakZ(c);
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x2d;
const isHex = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
const is = (c: number, chars: string) => c !== 0 && chars.includes(String.fromCodePoint(c));

/** The tag URI characters libyaml reads (besides %-escapes). */
const URI_CHARS = ";/?:@&=+$,.!~*'()[]";

class Scanner {
  private readonly text: number[];
  private readonly mark: Mark = { index: 0, line: 0, column: 0 };
  private readonly tokens: Token[] = [];
  private head = 0;
  private tokensParsed = 0;
  private tokenAvailable = false;
  private streamStartProduced = false;
  private streamEndProduced = false;
  private indent = -1;
  private readonly indents: number[] = [];
  private simpleKeyAllowed = false;
  private readonly simpleKeys: SimpleKey[] = [];
  private readonly simpleKeysByToken = new Map<number, number>();
  private flowLevel = 0;

  constructor(input: string) {
    this.text = Array.from(input, (ch) => ch.codePointAt(0)!);
  }

  private at(offset = 0): number {
    return this.text[this.mark.index + offset] ?? 0;
  }

  private error(problem: string): never {
    throw new LibyamlError(`yaml: line ${this.mark.line + 1}: ${problem}`);
  }

  // ---- moving through the input ----

  private skip(): void {
    this.mark.index++;
    this.mark.column++;
  }

  private skipLine(): void {
    if (this.at() === CR && this.at(1) === LF) {
      this.mark.index += 2;
    } else if (isBreak(this.at())) {
      this.mark.index++;
    } else return;
    this.mark.column = 0;
    this.mark.line++;
  }

  private read(): string {
    const ch = String.fromCodePoint(this.at());
    this.skip();
    return ch;
  }

  /** A line break, as libyaml keeps it in a scalar: CR LF, CR, LF and NEL are '\n'; LS and PS stay. */
  private readLine(): string {
    const c = this.at();
    if (!isBreak(c)) return '';
    const kept = c === LS || c === PS ? String.fromCodePoint(c) : '\n';
    this.skipLine();
    return kept;
  }

  // ---- the token queue ----

  private insert(position: number, token: Token): void {
    if (position < 0) this.tokens.push(token);
    else this.tokens.splice(this.head + position, 0, token);
  }

  /** The next token, fetching as libyaml does: on, while the head token may yet turn out to be a simple key. */
  peek(): Token {
    if (!this.tokenAvailable) {
      for (;;) {
        if (this.head !== this.tokens.length) {
          const index = this.simpleKeysByToken.get(this.tokensParsed);
          if (index === undefined || !this.simpleKeyValid(this.simpleKeys[index]!)) break;
        }
        this.fetchNextToken();
      }
      this.tokenAvailable = true;
    }
    return this.tokens[this.head]!;
  }

  skipToken(): void {
    this.tokenAvailable = false;
    this.tokensParsed++;
    this.streamEndProduced = this.tokens[this.head]!.type === 'STREAM-END';
    this.head++;
    if (this.head > 1024) {
      this.tokens.splice(0, this.head);
      this.head = 0;
    }
  }

  get ended(): boolean {
    return this.streamEndProduced;
  }

  // ---- simple keys and indentation ----

  private simpleKeyValid(key: SimpleKey): boolean {
    if (!key.possible) return false;
    if (key.mark.line < this.mark.line || key.mark.index + 1024 < this.mark.index) {
      if (key.required) this.error("could not find expected ':'");
      key.possible = false;
      return false;
    }
    return true;
  }

  private saveSimpleKey(): void {
    const required = this.flowLevel === 0 && this.indent === this.mark.column;
    if (!this.simpleKeyAllowed) return;
    const key: SimpleKey = { possible: true, required, tokenNumber: this.tokensParsed + (this.tokens.length - this.head), mark: { ...this.mark } };
    this.removeSimpleKey();
    this.simpleKeys[this.simpleKeys.length - 1] = key;
    this.simpleKeysByToken.set(key.tokenNumber, this.simpleKeys.length - 1);
  }

  private removeSimpleKey(): void {
    const key = this.simpleKeys.at(-1)!;
    if (!key.possible) return;
    if (key.required) this.error("could not find expected ':'");
    key.possible = false;
    this.simpleKeysByToken.delete(key.tokenNumber);
  }

  private increaseFlowLevel(): void {
    this.simpleKeys.push({ possible: false, required: false, tokenNumber: this.tokensParsed + (this.tokens.length - this.head), mark: { ...this.mark } });
    this.flowLevel++;
    if (this.flowLevel > MAX_DEPTH) this.error(`exceeded max depth of ${MAX_DEPTH}`);
  }

  private decreaseFlowLevel(): void {
    if (this.flowLevel === 0) return;
    this.flowLevel--;
    this.simpleKeysByToken.delete(this.simpleKeys.pop()!.tokenNumber);
  }

  private rollIndent(column: number, number: number, type: 'BLOCK-SEQUENCE-START' | 'BLOCK-MAPPING-START'): void {
    if (this.flowLevel > 0 || this.indent >= column) return;
    this.indents.push(this.indent);
    this.indent = column;
    if (this.indents.length > MAX_DEPTH) this.error(`exceeded max depth of ${MAX_DEPTH}`);
    this.insert(number > -1 ? number - this.tokensParsed : -1, { type });
  }

  private unrollIndent(column: number): void {
    if (this.flowLevel > 0) return;
    while (this.indent > column) {
      this.insert(-1, { type: 'BLOCK-END' });
      this.indent = this.indents.pop()!;
    }
  }

  // ---- fetching one token ----

  private fetchNextToken(): void {
    if (!this.streamStartProduced) {
      this.indent = -1;
      this.simpleKeys.push({ possible: false, required: false, tokenNumber: 0, mark: { ...this.mark } });
      this.simpleKeyAllowed = true;
      this.streamStartProduced = true;
      this.insert(-1, { type: 'STREAM-START' });
      return;
    }
    this.scanToNextToken();
    this.unrollIndent(this.mark.column);
    const c = this.at();
    if (isZ(c)) return this.fetchStreamEnd();
    const column0 = this.mark.column === 0;
    if (column0 && c === cc('%')) return this.fetchDirective();
    const indicator = (ch: string) => this.at() === cc(ch) && this.at(1) === cc(ch) && this.at(2) === cc(ch) && isBlankZ(this.at(3));
    if (column0 && indicator('-')) return this.fetchDocumentIndicator('DOCUMENT-START');
    if (column0 && indicator('.')) return this.fetchDocumentIndicator('DOCUMENT-END');
    if (c === cc('[')) return this.fetchFlowCollectionStart('FLOW-SEQUENCE-START');
    if (c === cc('{')) return this.fetchFlowCollectionStart('FLOW-MAPPING-START');
    if (c === cc(']')) return this.fetchFlowCollectionEnd('FLOW-SEQUENCE-END');
    if (c === cc('}')) return this.fetchFlowCollectionEnd('FLOW-MAPPING-END');
    if (c === cc(',')) return this.fetchFlowEntry();
    const next = this.at(1);
    if (c === cc('-') && isBlankZ(next)) return this.fetchBlockIndicator('BLOCK-ENTRY');
    if (c === cc('?') && (this.flowLevel > 0 || isBlankZ(next))) return this.fetchBlockIndicator('KEY');
    if (c === cc(':') && (this.flowLevel > 0 || isBlankZ(next))) return this.fetchValue();
    if (c === cc('*')) return this.fetchAnchor('ALIAS');
    if (c === cc('&')) return this.fetchAnchor('ANCHOR');
    if (c === cc('!')) return this.fetchTag();
    if (c === cc('|') && this.flowLevel === 0) return this.fetchBlockScalar(true);
    if (c === cc('>') && this.flowLevel === 0) return this.fetchBlockScalar(false);
    if (c === cc("'")) return this.fetchFlowScalar(true);
    if (c === cc('"')) return this.fetchFlowScalar(false);
    if (
      !(isBlankZ(c) || is(c, "-?:,[]{}#&*!|>'\"%@`")) ||
      (c === cc('-') && !isBlank(next)) ||
      (this.flowLevel === 0 && (c === cc('?') || c === cc(':')) && !isBlankZ(next))
    ) {
      return this.fetchPlainScalar();
    }
    this.error('found character that cannot start any token');
  }

  private scanToNextToken(): void {
    for (;;) {
      // libyaml skips a character at the start of a line here when ITS BUFFER starts with a byte-order
      // mark (go-yaml's is_bom ignores the position it is given), which depends on where its reader
      // refilled the buffer: the caller refuses to read a body where that can happen (go-yaml-view.ts).
      while (this.at() === SPACE || ((this.flowLevel > 0 || !this.simpleKeyAllowed) && this.at() === TAB)) this.skip();
      if (this.at() === cc('#')) while (!isBreakZ(this.at())) this.skip();
      if (!isBreak(this.at())) return;
      this.skipLine();
      if (this.flowLevel === 0) this.simpleKeyAllowed = true;
    }
  }

  private fetchStreamEnd(): void {
    if (this.mark.column !== 0) {
      this.mark.column = 0;
      this.mark.line++;
    }
    this.unrollIndent(-1);
    this.removeSimpleKey();
    this.simpleKeyAllowed = false;
    this.insert(-1, { type: 'STREAM-END' });
  }

  private fetchDirective(): void {
    this.unrollIndent(-1);
    this.removeSimpleKey();
    this.simpleKeyAllowed = false;
    this.insert(-1, this.scanDirective());
  }

  /** A token of one character (three for a document indicator), after which a simple key may start or not. */
  private indicator(type: Token['type'], simpleKeyAllowedAfter: boolean, length = 1): void {
    this.simpleKeyAllowed = simpleKeyAllowedAfter;
    for (let i = 0; i < length; i++) this.skip();
    this.insert(-1, { type } as Token);
  }

  private fetchDocumentIndicator(type: 'DOCUMENT-START' | 'DOCUMENT-END'): void {
    this.unrollIndent(-1);
    this.removeSimpleKey();
    this.indicator(type, false, 3);
  }

  private fetchFlowCollectionStart(type: 'FLOW-SEQUENCE-START' | 'FLOW-MAPPING-START'): void {
    this.saveSimpleKey();
    this.increaseFlowLevel();
    this.indicator(type, true);
  }

  private fetchFlowCollectionEnd(type: 'FLOW-SEQUENCE-END' | 'FLOW-MAPPING-END'): void {
    this.removeSimpleKey();
    this.decreaseFlowLevel();
    this.indicator(type, false);
  }

  private fetchFlowEntry(): void {
    this.removeSimpleKey();
    this.indicator('FLOW-ENTRY', true);
  }

  /** `-` or `?`: in block context, where a simple key could start, they open a block collection. */
  private fetchBlockIndicator(type: 'BLOCK-ENTRY' | 'KEY'): void {
    if (this.flowLevel === 0) {
      if (!this.simpleKeyAllowed) this.error(type === 'KEY' ? 'mapping keys are not allowed in this context' : 'block sequence entries are not allowed in this context');
      this.rollIndent(this.mark.column, -1, type === 'KEY' ? 'BLOCK-MAPPING-START' : 'BLOCK-SEQUENCE-START');
    }
    this.removeSimpleKey();
    this.indicator(type, type === 'BLOCK-ENTRY' || this.flowLevel === 0);
  }

  private fetchValue(): void {
    const key = this.simpleKeys.at(-1)!;
    if (this.simpleKeyValid(key)) {
      // The scalar (or collection) the simple key marks was a key after all: KEY goes before it.
      this.insert(key.tokenNumber - this.tokensParsed, { type: 'KEY' });
      this.rollIndent(key.mark.column, key.tokenNumber, 'BLOCK-MAPPING-START');
      key.possible = false;
      this.simpleKeysByToken.delete(key.tokenNumber);
      this.simpleKeyAllowed = false;
    } else {
      if (this.flowLevel === 0) {
        if (!this.simpleKeyAllowed) this.error('mapping values are not allowed in this context');
        this.rollIndent(this.mark.column, -1, 'BLOCK-MAPPING-START');
      }
      this.simpleKeyAllowed = this.flowLevel === 0;
    }
    this.indicator('VALUE', this.simpleKeyAllowed);
  }

  private fetchAnchor(type: 'ALIAS' | 'ANCHOR'): void {
    this.saveSimpleKey();
    this.simpleKeyAllowed = false;
    this.skip();
    let name = '';
    while (isAlpha(this.at())) name += this.read();
    if (name === '' || !(isBlankZ(this.at()) || is(this.at(), '?:,]}%@`'))) {
      this.error(`did not find expected alphabetic or numeric character (while scanning an ${type === 'ANCHOR' ? 'anchor' : 'alias'})`);
    }
    this.insert(-1, { type, value: name });
  }

  private fetchTag(): void {
    this.saveSimpleKey();
    this.simpleKeyAllowed = false;
    let handle: string;
    let suffix: string;
    if (this.at(1) === cc('<')) {
      this.skip();
      this.skip();
      handle = '';
      suffix = this.scanTagUri(false, '');
      if (this.at() !== cc('>')) this.error("did not find the expected '>'");
      this.skip();
    } else {
      handle = this.scanTagHandle(false);
      if (handle.length > 1 && handle.endsWith('!')) {
        suffix = this.scanTagUri(false, '');
      } else {
        suffix = this.scanTagUri(false, handle);
        handle = '!';
        if (suffix === '') [handle, suffix] = ['', '!'];
      }
    }
    if (!isBlankZ(this.at())) this.error('did not find expected whitespace or line break (while scanning a tag)');
    this.insert(-1, { type: 'TAG', handle, suffix });
  }

  private fetchBlockScalar(literal: boolean): void {
    this.removeSimpleKey();
    this.simpleKeyAllowed = true;
    this.insert(-1, this.scanBlockScalar(literal));
  }

  private fetchFlowScalar(single: boolean): void {
    this.saveSimpleKey();
    this.simpleKeyAllowed = false;
    this.insert(-1, this.scanFlowScalar(single));
  }

  private fetchPlainScalar(): void {
    this.saveSimpleKey();
    this.simpleKeyAllowed = false;
    this.insert(-1, this.scanPlainScalar());
  }

  // ---- scanning what a token holds ----

  private skipToLineEnd(context: string): void {
    while (isBlank(this.at())) this.skip();
    if (this.at() === cc('#')) while (!isBreakZ(this.at())) this.skip();
    if (!isBreakZ(this.at())) this.error(`did not find expected comment or line break (${context})`);
    this.skipLine();
  }

  private scanDirective(): Token {
    this.skip();
    let name = '';
    while (isAlpha(this.at())) name += this.read();
    if (name === '') this.error('could not find expected directive name');
    if (!isBlankZ(this.at())) this.error('found unexpected non-alphabetical character');
    let token: Token;
    if (name === 'YAML') {
      while (isBlank(this.at())) this.skip();
      const major = this.scanVersionNumber();
      if (this.at() !== cc('.')) this.error("did not find expected digit or '.' character");
      this.skip();
      token = { type: 'VERSION-DIRECTIVE', major, minor: this.scanVersionNumber() };
    } else if (name === 'TAG') {
      while (isBlank(this.at())) this.skip();
      const handle = this.scanTagHandle(true);
      if (!isBlank(this.at())) this.error('did not find expected whitespace (while scanning a %TAG directive)');
      while (isBlank(this.at())) this.skip();
      const prefix = this.scanTagUri(true, '');
      if (!isBlankZ(this.at())) this.error('did not find expected whitespace or line break (while scanning a %TAG directive)');
      token = { type: 'TAG-DIRECTIVE', handle, prefix };
    } else {
      this.error('found unknown directive name');
    }
    this.skipToLineEnd('while scanning a directive');
    return token;
  }

  private scanVersionNumber(): number {
    let value = 0;
    let length = 0;
    while (isDigit(this.at())) {
      if (++length > 2) this.error('found extremely long version number');
      value = value * 10 + (this.at() - 0x30);
      this.skip();
    }
    if (length === 0) this.error('did not find expected version number');
    return value;
  }

  private scanTagHandle(directive: boolean): string {
    if (this.at() !== cc('!')) this.error("did not find expected '!'");
    let handle = this.read();
    while (isAlpha(this.at())) handle += this.read();
    if (this.at() === cc('!')) handle += this.read();
    else if (directive && handle !== '!') this.error("did not find expected '!'");
    return handle;
  }

  /** A tag's URI; %-escapes are bytes, which must form UTF-8 sequences as libyaml checks them. */
  private scanTagUri(directive: boolean, head: string): string {
    const bytes: number[] = [...Buffer.from(head.slice(1))];
    let found = head.length > 0;
    for (;;) {
      const c = this.at();
      if (!(isAlpha(c) || is(c, URI_CHARS) || c === cc('%'))) break;
      if (c === cc('%')) this.scanUriEscapes(bytes);
      else bytes.push(...Buffer.from(this.read()));
      found = true;
    }
    if (!found) this.error(`did not find expected tag URI${directive ? ' (while parsing a %TAG directive)' : ''}`);
    return Buffer.from(bytes).toString('utf8');
  }

  private scanUriEscapes(bytes: number[]): void {
    let width = 0;
    for (let first = true; first || width > 0; first = false) {
      if (!(this.at() === cc('%') && isHex(this.at(1)) && isHex(this.at(2)))) this.error('did not find URI escaped octet');
      const octet = parseInt(String.fromCodePoint(this.at(1), this.at(2)), 16);
      if (first) {
        width = (octet & 0x80) === 0 ? 1 : (octet & 0xe0) === 0xc0 ? 2 : (octet & 0xf0) === 0xe0 ? 3 : (octet & 0xf8) === 0xf0 ? 4 : 0;
        if (width === 0) this.error('found an incorrect leading UTF-8 octet');
      } else if ((octet & 0xc0) !== 0x80) {
        this.error('found an incorrect trailing UTF-8 octet');
      }
      bytes.push(octet);
      this.skip();
      this.skip();
      this.skip();
      width--;
    }
  }

  private scanBlockScalar(literal: boolean): Token {
    this.skip();
    let chomping = 0;
    let increment = 0;
    const chompingAt = () => {
      if (this.at() === cc('+') || this.at() === cc('-')) {
        chomping = this.at() === cc('+') ? 1 : -1;
        this.skip();
        return true;
      }
      return false;
    };
    const incrementAt = () => {
      if (!isDigit(this.at())) return;
      if (this.at() === cc('0')) this.error('found an indentation indicator equal to 0');
      increment = this.at() - 0x30;
      this.skip();
    };
    if (chompingAt()) incrementAt();
    else if (isDigit(this.at())) {
      incrementAt();
      chompingAt();
    }
    this.skipToLineEnd('while scanning a block scalar');
    let indent = increment > 0 ? (this.indent >= 0 ? this.indent + increment : increment) : 0;
    let value = '';
    let leadingBreak = '';
    let trailingBreaks = '';
    const breaks = () => {
      let maxIndent = 0;
      for (;;) {
        while ((indent === 0 || this.mark.column < indent) && this.at() === SPACE) this.skip();
        if (this.mark.column > maxIndent) maxIndent = this.mark.column;
        if ((indent === 0 || this.mark.column < indent) && this.at() === TAB) this.error('found a tab character where an indentation space is expected');
        if (!isBreak(this.at())) break;
        trailingBreaks += this.readLine();
      }
      if (indent === 0) indent = Math.max(maxIndent, this.indent + 1, 1);
    };
    breaks();
    let leadingBlank = false;
    while (this.mark.column === indent && !isZ(this.at())) {
      const trailingBlank = isBlank(this.at());
      if (!literal && !leadingBlank && !trailingBlank && leadingBreak.startsWith('\n')) {
        if (trailingBreaks === '') value += ' ';
      } else {
        value += leadingBreak;
      }
      value += trailingBreaks;
      trailingBreaks = '';
      leadingBlank = isBlank(this.at());
      while (!isBreakZ(this.at())) value += this.read();
      leadingBreak = this.readLine();
      breaks();
    }
    if (chomping !== -1) value += leadingBreak;
    if (chomping === 1) value += trailingBreaks;
    return { type: 'SCALAR', value, style: literal ? 'literal' : 'folded' };
  }

  private atDocumentIndicator(): boolean {
    if (this.mark.column !== 0) return false;
    const [a, b, c] = [this.at(), this.at(1), this.at(2)];
    return ((a === cc('-') && b === a && c === a) || (a === cc('.') && b === a && c === a)) && isBlankZ(this.at(3));
  }

  private scanFlowScalar(single: boolean): Token {
    this.skip();
    const fold = new Fold();
    const quote = cc(single ? "'" : '"');
    for (;;) {
      if (this.atDocumentIndicator()) this.error('found unexpected document indicator (while scanning a quoted scalar)');
      if (isZ(this.at())) this.error('found unexpected end of stream (while scanning a quoted scalar)');
      while (!isBlankZ(this.at())) {
        const c = this.at();
        if (single && c === quote && this.at(1) === quote) {
          fold.value += "'";
          this.skip();
          this.skip();
        } else if (c === quote) {
          break;
        } else if (!single && c === cc('\\') && isBreak(this.at(1))) {
          this.skip();
          this.skipLine();
          fold.leadingBlanks = true;
          break;
        } else if (!single && c === cc('\\')) {
          fold.value += this.scanEscape();
        } else {
          fold.value += this.read();
        }
      }
      if (this.at() === quote) break;
      this.foldBlanks(fold);
      fold.flush();
    }
    this.skip();
    return { type: 'SCALAR', value: fold.value, style: single ? 'single' : 'double' };
  }

  /** The blanks and line breaks between the pieces of a flow or plain scalar, into the fold. */
  private foldBlanks(fold: Fold, plainIndent?: number): void {
    while (isBlank(this.at()) || isBreak(this.at())) {
      if (isBlank(this.at())) {
        if (plainIndent !== undefined && fold.leadingBlanks && this.mark.column < plainIndent && this.at() === TAB) {
          this.error('found a tab character that violates indentation (while scanning a plain scalar)');
        }
        if (!fold.leadingBlanks) fold.whitespaces += this.read();
        else this.skip();
      } else if (!fold.leadingBlanks) {
        fold.whitespaces = '';
        fold.leadingBreak = this.readLine();
        fold.leadingBlanks = true;
      } else {
        fold.trailingBreaks += this.readLine();
      }
    }
  }

  private scanEscape(): string {
    const escape = String.fromCodePoint(this.at(1));
    const simple: Record<string, string> = {
      '0': '\0',
      a: '\x07',
      b: '\b',
      t: '\t',
      '\t': '\t',
      n: '\n',
      v: '\v',
      f: '\f',
      r: '\r',
      e: '\x1b',
      ' ': ' ',
      '"': '"',
      "'": "'",
      '\\': '\\',
      N: '\u0085',
      _: '\u00a0',
      L: '\u2028',
      P: '\u2029',
    };
    const length = { x: 2, u: 4, U: 8 }[escape];
    if (simple[escape] === undefined && length === undefined) this.error('found unknown escape character (while parsing a quoted scalar)');
    this.skip();
    this.skip();
    if (length === undefined) return simple[escape]!;
    let code = 0;
    for (let k = 0; k < length; k++) {
      if (!isHex(this.at(k))) this.error('did not find expected hexdecimal number (while parsing a quoted scalar)');
      code = code * 16 + parseInt(String.fromCodePoint(this.at(k)), 16);
    }
    if ((code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) this.error('found invalid Unicode character escape code (while parsing a quoted scalar)');
    for (let k = 0; k < length; k++) this.skip();
    return String.fromCodePoint(code);
  }

  private scanPlainScalar(): Token {
    const fold = new Fold();
    const indent = this.indent + 1;
    for (;;) {
      if (this.atDocumentIndicator() || this.at() === cc('#')) break;
      while (!isBlankZ(this.at())) {
        const c = this.at();
        if ((c === cc(':') && isBlankZ(this.at(1))) || (this.flowLevel > 0 && is(c, ',?[]{}'))) break;
        fold.flush();
        fold.value += this.read();
      }
      if (!(isBlank(this.at()) || isBreak(this.at()))) break;
      this.foldBlanks(fold, indent);
      if (this.flowLevel === 0 && this.mark.column < indent) break;
    }
    if (fold.leadingBlanks) this.simpleKeyAllowed = true;
    return { type: 'SCALAR', value: fold.value, style: 'plain' };
  }
}

/** A flow or plain scalar's text, and the blanks and breaks waiting to be folded into it as libyaml folds them. */
class Fold {
  value = '';
  leadingBreak = '';
  trailingBreaks = '';
  whitespaces = '';
  leadingBlanks = false;

  /** Adds what waits: a line break folded to a space (or kept, after an empty line), else the blanks. */
  flush(): void {
    if (this.leadingBlanks) {
      if (this.leadingBreak.startsWith('\n')) this.value += this.trailingBreaks === '' ? ' ' : this.trailingBreaks;
      else this.value += this.leadingBreak + this.trailingBreaks;
      this.leadingBreak = '';
      this.trailingBreaks = '';
      this.leadingBlanks = false;
    } else {
      this.value += this.whitespaces;
      this.whitespaces = '';
    }
  }
}

// ---- the parser: events, as go-yaml's parser reads them into nodes ----

const DEFAULT_TAG_HANDLES: [string, string][] = [
  ['!', '!'],
  ['!!', 'tag:yaml.org,2002:'],
];

type Event =
  | { type: 'DOCUMENT-START' | 'DOCUMENT-END' | 'STREAM-END' | 'MAPPING-END' | 'SEQUENCE-END' }
  | { type: 'ALIAS'; anchor: string }
  | { type: 'SCALAR'; anchor?: string; tag?: string; value: string; implicit: boolean }
  | { type: 'MAPPING-START' | 'SEQUENCE-START'; anchor?: string; tag?: string };

type State =
  | 'IMPLICIT-DOCUMENT-START'
  | 'DOCUMENT-START'
  | 'DOCUMENT-CONTENT'
  | 'DOCUMENT-END'
  | 'BLOCK-NODE'
  | 'BLOCK-NODE-OR-INDENTLESS-SEQUENCE'
  | 'FLOW-NODE'
  | 'BLOCK-SEQUENCE-FIRST-ENTRY'
  | 'BLOCK-SEQUENCE-ENTRY'
  | 'INDENTLESS-SEQUENCE-ENTRY'
  | 'BLOCK-MAPPING-FIRST-KEY'
  | 'BLOCK-MAPPING-KEY'
  | 'BLOCK-MAPPING-VALUE'
  | 'FLOW-SEQUENCE-FIRST-ENTRY'
  | 'FLOW-SEQUENCE-ENTRY'
  | 'FLOW-SEQUENCE-ENTRY-MAPPING-KEY'
  | 'FLOW-SEQUENCE-ENTRY-MAPPING-VALUE'
  | 'FLOW-SEQUENCE-ENTRY-MAPPING-END'
  | 'FLOW-MAPPING-FIRST-KEY'
  | 'FLOW-MAPPING-KEY'
  | 'FLOW-MAPPING-VALUE'
  | 'FLOW-MAPPING-EMPTY-VALUE';

class Parser {
  private readonly scanner: Scanner;
  private state: State = 'IMPLICIT-DOCUMENT-START';
  private readonly states: State[] = [];
  private tagHandles = new Map<string, string>();

  constructor(input: string) {
    this.scanner = new Scanner(input);
    if (this.scanner.peek().type !== 'STREAM-START') throw new LibyamlError('did not find expected <stream-start>');
    this.scanner.skipToken();
  }

  private error(problem: string): never {
    throw new LibyamlError(`yaml: ${problem}`);
  }

  private pop(): void {
    this.state = this.states.pop()!;
  }

  private emptyScalar(): Event {
    return { type: 'SCALAR', value: '', implicit: true };
  }

  /** In a flow collection: past its start (the first time) or the `,` before the next entry; the token that follows. */
  private nextFlowEntry(end: 'FLOW-SEQUENCE-END' | 'FLOW-MAPPING-END', first: boolean): Token {
    if (first) this.scanner.skipToken();
    const token = this.scanner.peek();
    if (first || token.type === end) return token;
    if (token.type !== 'FLOW-ENTRY') {
      this.error(end === 'FLOW-SEQUENCE-END' ? "did not find expected ',' or ']' (while parsing a flow sequence)" : "did not find expected ',' or '}' (while parsing a flow mapping)");
    }
    this.scanner.skipToken();
    return this.scanner.peek();
  }

  /**
   * The indicator at hand (`-`, `?`, `:`) is skipped; a node follows unless one of `ends` does, in
   * which case the node is an empty scalar. Either way the parser goes on in state `then`.
   */
  private entry(ends: readonly Token['type'][], then: State, block: boolean, indentlessSequence = false): Event {
    this.scanner.skipToken();
    if (!ends.includes(this.scanner.peek().type)) {
      this.states.push(then);
      return this.node(block, indentlessSequence);
    }
    this.state = then;
    return this.emptyScalar();
  }

  next(): Event {
    const { scanner } = this;
    switch (this.state) {
      case 'IMPLICIT-DOCUMENT-START':
      case 'DOCUMENT-START': {
        let token = scanner.peek();
        if (this.state === 'DOCUMENT-START') {
          while (token.type === 'DOCUMENT-END') {
            scanner.skipToken();
            token = scanner.peek();
          }
        }
        if (this.state === 'IMPLICIT-DOCUMENT-START' && !['VERSION-DIRECTIVE', 'TAG-DIRECTIVE', 'DOCUMENT-START', 'STREAM-END'].includes(token.type)) {
          this.directives();
          this.states.push('DOCUMENT-END');
          this.state = 'BLOCK-NODE';
          return { type: 'DOCUMENT-START' };
        }
        if (token.type === 'STREAM-END') {
          scanner.skipToken();
          return { type: 'STREAM-END' };
        }
        this.directives();
        if (scanner.peek().type !== 'DOCUMENT-START') this.error('did not find expected <document start>');
        this.states.push('DOCUMENT-END');
        this.state = 'DOCUMENT-CONTENT';
        scanner.skipToken();
        return { type: 'DOCUMENT-START' };
      }
      case 'DOCUMENT-CONTENT': {
        const { type } = scanner.peek();
        if (type === 'VERSION-DIRECTIVE' || type === 'TAG-DIRECTIVE' || type === 'DOCUMENT-START' || type === 'DOCUMENT-END' || type === 'STREAM-END') {
          this.pop();
          return this.emptyScalar();
        }
        return this.node(true, false);
      }
      case 'DOCUMENT-END': {
        if (scanner.peek().type === 'DOCUMENT-END') scanner.skipToken();
        this.state = 'DOCUMENT-START';
        return { type: 'DOCUMENT-END' };
      }
      case 'BLOCK-NODE':
        return this.node(true, false);
      case 'BLOCK-NODE-OR-INDENTLESS-SEQUENCE':
        return this.node(true, true);
      case 'FLOW-NODE':
        return this.node(false, false);
      case 'BLOCK-SEQUENCE-FIRST-ENTRY':
      case 'BLOCK-SEQUENCE-ENTRY': {
        if (this.state === 'BLOCK-SEQUENCE-FIRST-ENTRY') scanner.skipToken();
        const token = scanner.peek();
        if (token.type === 'BLOCK-ENTRY') return this.entry(['BLOCK-ENTRY', 'BLOCK-END'], 'BLOCK-SEQUENCE-ENTRY', true);
        if (token.type === 'BLOCK-END') {
          this.pop();
          scanner.skipToken();
          return { type: 'SEQUENCE-END' };
        }
        return this.error("did not find expected '-' indicator (while parsing a block collection)");
      }
      case 'INDENTLESS-SEQUENCE-ENTRY': {
        if (scanner.peek().type === 'BLOCK-ENTRY') return this.entry(['BLOCK-ENTRY', 'KEY', 'VALUE', 'BLOCK-END'], 'INDENTLESS-SEQUENCE-ENTRY', true);
        this.pop();
        return { type: 'SEQUENCE-END' };
      }
      case 'BLOCK-MAPPING-FIRST-KEY':
      case 'BLOCK-MAPPING-KEY': {
        if (this.state === 'BLOCK-MAPPING-FIRST-KEY') scanner.skipToken();
        const token = scanner.peek();
        if (token.type === 'KEY') return this.entry(['KEY', 'VALUE', 'BLOCK-END'], 'BLOCK-MAPPING-VALUE', true, true);
        if (token.type === 'BLOCK-END') {
          this.pop();
          scanner.skipToken();
          return { type: 'MAPPING-END' };
        }
        return this.error('did not find expected key (while parsing a block mapping)');
      }
      case 'BLOCK-MAPPING-VALUE': {
        if (scanner.peek().type === 'VALUE') return this.entry(['KEY', 'VALUE', 'BLOCK-END'], 'BLOCK-MAPPING-KEY', true, true);
        this.state = 'BLOCK-MAPPING-KEY';
        return this.emptyScalar();
      }
      case 'FLOW-SEQUENCE-FIRST-ENTRY':
      case 'FLOW-SEQUENCE-ENTRY': {
        const token = this.nextFlowEntry('FLOW-SEQUENCE-END', this.state === 'FLOW-SEQUENCE-FIRST-ENTRY');
        if (token.type === 'KEY') {
          this.state = 'FLOW-SEQUENCE-ENTRY-MAPPING-KEY';
          scanner.skipToken();
          return { type: 'MAPPING-START' };
        }
        if (token.type !== 'FLOW-SEQUENCE-END') {
          this.states.push('FLOW-SEQUENCE-ENTRY');
          return this.node(false, false);
        }
        this.pop();
        scanner.skipToken();
        return { type: 'SEQUENCE-END' };
      }
      case 'FLOW-SEQUENCE-ENTRY-MAPPING-KEY': {
        const { type } = scanner.peek();
        if (type !== 'VALUE' && type !== 'FLOW-ENTRY' && type !== 'FLOW-SEQUENCE-END') {
          this.states.push('FLOW-SEQUENCE-ENTRY-MAPPING-VALUE');
          return this.node(false, false);
        }
        scanner.skipToken();
        this.state = 'FLOW-SEQUENCE-ENTRY-MAPPING-VALUE';
        return this.emptyScalar();
      }
      case 'FLOW-SEQUENCE-ENTRY-MAPPING-VALUE': {
        if (scanner.peek().type === 'VALUE') return this.entry(['FLOW-ENTRY', 'FLOW-SEQUENCE-END'], 'FLOW-SEQUENCE-ENTRY-MAPPING-END', false);
        this.state = 'FLOW-SEQUENCE-ENTRY-MAPPING-END';
        return this.emptyScalar();
      }
      case 'FLOW-SEQUENCE-ENTRY-MAPPING-END':
        this.state = 'FLOW-SEQUENCE-ENTRY';
        return { type: 'MAPPING-END' };
      case 'FLOW-MAPPING-FIRST-KEY':
      case 'FLOW-MAPPING-KEY': {
        const token = this.nextFlowEntry('FLOW-MAPPING-END', this.state === 'FLOW-MAPPING-FIRST-KEY');
        if (token.type === 'KEY') return this.entry(['VALUE', 'FLOW-ENTRY', 'FLOW-MAPPING-END'], 'FLOW-MAPPING-VALUE', false);
        if (token.type !== 'FLOW-MAPPING-END') {
          this.states.push('FLOW-MAPPING-EMPTY-VALUE');
          return this.node(false, false);
        }
        this.pop();
        scanner.skipToken();
        return { type: 'MAPPING-END' };
      }
      case 'FLOW-MAPPING-VALUE':
      case 'FLOW-MAPPING-EMPTY-VALUE': {
        if (this.state === 'FLOW-MAPPING-VALUE' && scanner.peek().type === 'VALUE') return this.entry(['FLOW-ENTRY', 'FLOW-MAPPING-END'], 'FLOW-MAPPING-KEY', false);
        this.state = 'FLOW-MAPPING-KEY';
        return this.emptyScalar();
      }
    }
  }

  /** %YAML and %TAG before a document: only 1.1, each handle once, then the default handles. */
  private directives(): void {
    const { scanner } = this;
    let version = false;
    this.tagHandles = new Map();
    for (let token = scanner.peek(); token.type === 'VERSION-DIRECTIVE' || token.type === 'TAG-DIRECTIVE'; token = scanner.peek()) {
      if (token.type === 'VERSION-DIRECTIVE') {
        if (version) this.error('found duplicate %YAML directive');
        if (token.major !== 1 || token.minor !== 1) this.error('found incompatible YAML document');
        version = true;
      } else {
        if (this.tagHandles.has(token.handle)) this.error('found duplicate %TAG directive');
        this.tagHandles.set(token.handle, token.prefix);
      }
      scanner.skipToken();
    }
    for (const [handle, prefix] of DEFAULT_TAG_HANDLES) if (!this.tagHandles.has(handle)) this.tagHandles.set(handle, prefix);
  }

  private node(block: boolean, indentlessSequence: boolean): Event {
    const { scanner } = this;
    let token = scanner.peek();
    if (token.type === 'ALIAS') {
      this.pop();
      scanner.skipToken();
      return { type: 'ALIAS', anchor: token.value };
    }
    let anchor: string | undefined;
    let tagToken: { handle: string; suffix: string } | undefined;
    for (let i = 0; i < 2; i++) {
      if (token.type === 'ANCHOR' && anchor === undefined) anchor = token.value;
      else if (token.type === 'TAG' && tagToken === undefined) tagToken = token;
      else break;
      scanner.skipToken();
      token = scanner.peek();
    }
    let tag: string | undefined;
    if (tagToken) {
      if (tagToken.handle === '') tag = tagToken.suffix;
      else {
        const prefix = this.tagHandles.get(tagToken.handle);
        if (prefix === undefined) this.error('found undefined tag handle (while parsing a node)');
        tag = prefix + tagToken.suffix;
      }
      if (tag === '') tag = undefined;
    }
    const props = { ...(anchor !== undefined ? { anchor } : {}), ...(tag !== undefined ? { tag } : {}) };
    if (indentlessSequence && token.type === 'BLOCK-ENTRY') {
      this.state = 'INDENTLESS-SEQUENCE-ENTRY';
      return { type: 'SEQUENCE-START', ...props };
    }
    if (token.type === 'SCALAR') {
      this.pop();
      scanner.skipToken();
      return { type: 'SCALAR', ...props, value: token.value, implicit: (tag === undefined && token.style === 'plain') || tag === '!' };
    }
    if (token.type === 'FLOW-SEQUENCE-START') {
      this.state = 'FLOW-SEQUENCE-FIRST-ENTRY';
      return { type: 'SEQUENCE-START', ...props };
    }
    if (token.type === 'FLOW-MAPPING-START') {
      this.state = 'FLOW-MAPPING-FIRST-KEY';
      return { type: 'MAPPING-START', ...props };
    }
    if (block && token.type === 'BLOCK-SEQUENCE-START') {
      this.state = 'BLOCK-SEQUENCE-FIRST-ENTRY';
      return { type: 'SEQUENCE-START', ...props };
    }
    if (block && token.type === 'BLOCK-MAPPING-START') {
      this.state = 'BLOCK-MAPPING-FIRST-KEY';
      return { type: 'MAPPING-START', ...props };
    }
    if (anchor !== undefined || tag !== undefined) {
      this.pop();
      return { type: 'SCALAR', ...props, value: '', implicit: tag === undefined };
    }
    return this.error(`did not find expected node content (while parsing a ${block ? 'block' : 'flow'} node)`);
  }
}

/**
 * The first document's root node as go-yaml v2's parser builds it (aliases bound to their anchors as
 * they are met); undefined for a stream with no document. Throws LibyamlError.
 */
export function firstYamlDocument(input: string): YamlNode | undefined {
  const parser = new Parser(input);
  const first = parser.next();
  if (first.type === 'STREAM-END') return undefined;
  if (first.type !== 'DOCUMENT-START') throw new LibyamlError(`yaml: expected a document, found ${first.type}`);
  const anchors = new Map<string, YamlNode>();
  const open: (YamlNode & { kind: 'mapping' | 'sequence' })[] = [];
  /** Mapping children arrive key, value, key, value: a key waits here for its value. */
  const pendingKeys: (YamlNode | undefined)[] = [];
  let root: YamlNode | undefined;
  const place = (node: YamlNode) => {
    const parent = open.at(-1);
    if (!parent) {
      root = node;
      return;
    }
    if (parent.kind === 'sequence') {
      parent.items.push(node);
      return;
    }
    const key = pendingKeys[pendingKeys.length - 1];
    if (key === undefined) pendingKeys[pendingKeys.length - 1] = node;
    else {
      parent.pairs.push([key, node]);
      pendingKeys[pendingKeys.length - 1] = undefined;
    }
  };
  const anchored = (node: YamlNode, anchor: string | undefined) => {
    if (anchor !== undefined) anchors.set(anchor, node);
  };
  do {
    const event = parser.next();
    switch (event.type) {
      case 'SCALAR': {
        const node: YamlNode = { kind: 'scalar', value: event.value, implicit: event.implicit, ...(event.tag !== undefined ? { tag: event.tag } : {}) };
        anchored(node, event.anchor);
        place(node);
        break;
      }
      case 'ALIAS': {
        const target = anchors.get(event.anchor);
        if (!target) throw new LibyamlError(`yaml: unknown anchor '${event.anchor}' referenced`);
        place({ kind: 'alias', name: event.anchor, target });
        break;
      }
      case 'MAPPING-START':
      case 'SEQUENCE-START': {
        const node: YamlNode & { kind: 'mapping' | 'sequence' } =
          event.type === 'MAPPING-START' ? { kind: 'mapping', pairs: [] } : { kind: 'sequence', items: [] };
        if (event.tag !== undefined) node.tag = event.tag;
        anchored(node, event.anchor);
        place(node);
        open.push(node);
        pendingKeys.push(undefined);
        break;
      }
      case 'MAPPING-END':
      case 'SEQUENCE-END':
        open.pop();
        pendingKeys.pop();
        break;
      default:
        throw new LibyamlError(`yaml: unexpected ${event.type} inside a document`);
    }
  } while (open.length > 0);
  // go-yaml then expects the document's end, which reads the next token (or fails on it).
  const end = parser.next();
  if (end.type !== 'DOCUMENT-END') throw new LibyamlError(`yaml: did not find expected <document end>, found ${end.type}`);
  return root;
}
