// Request and response bodies for Request and RequestResponse events: copied as they stream
// through (never buffered in their way), up to a limit, and decoded only when the event is written.
import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import type { RecordedBody } from './event.js';
import { compactJson, jsonDepth, tooDeepToRecord } from './go-json-view.js';
import { yamlAsJson } from './yaml-json.js';

/**
 * A copy of what streams through. Up to `limit` bytes are recorded (--audit-body-limit); up to `keep`
 * bytes are kept for reading (a create's metadata is read from the whole body, which
 * --max-request-body-bytes bounds); past that only the size is known.
 */
export class BodyCopy {
  private chunks: Buffer[] = [];
  private size = 0;
  private overflowed = false;
  private complete = false;

  constructor(
    private readonly limit: number,
    readonly headers: IncomingHttpHeaders,
    private readonly keep = limit,
  ) {}

  /**
   * Copies the stream's chunks as its consumer reads them. Pausing first means the listener does
   * not start the flow: the pipe that forwards the stream does, so no chunk is missed or lost.
   */
  watch(stream: Readable): this {
    stream.pause();
    stream.on('data', (chunk: Buffer | string) => this.add(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    stream.once('end', () => (this.complete = true));
    return this;
  }

  private add(chunk: Buffer): void {
    this.size += chunk.length;
    // All the bytes its Content-Length declares: whole, though 'end' comes a tick later (an event
    // written in between, at the upstream timeout, must not say it was cut).
    if (this.size === this.declaredLength()) this.complete = true;
    if (this.overflowed) return;
    if (this.size > Math.max(this.limit, this.keep)) {
      this.overflowed = true;
      this.chunks = [];
      return;
    }
    this.chunks.push(chunk);
  }

  private declaredLength(): number | undefined {
    const text = this.headers['content-length'];
    return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
  }

  /** The stream ended as its sender framed it (not cut off). */
  get ended(): boolean {
    return this.complete;
  }

  /** Every byte, when all were kept; undefined past `keep`. */
  bytes(): Buffer | undefined {
    return this.overflowed ? undefined : Buffer.concat(this.chunks);
  }

  /**
   * The body as the event records it; undefined when there was none (but a YAML patch with none is
   * the JSON null, as the API server records it). `patch`: the body of a patch, which the API server
   * records as sent, managedFields and all.
   */
  recorded(omitManagedFields: boolean, patch = false): RecordedBody {
    if (this.size === 0 && !(patch && YAML_TYPE.test(mediaType(this.headers)))) return undefined;
    if (this.overflowed || this.size > this.limit) return { omitted: `the body is larger than the ${this.limit}-byte limit (--audit-body-limit)` };
    return decodeBody(Buffer.concat(this.chunks), this.headers, this.limit, omitManagedFields && !patch, patch);
  }
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;
const YAML_TYPE = /^application\/(?:[\w.+-]+\+)?yaml$/i;
const mediaType = (headers: IncomingHttpHeaders) => (headers['content-type'] ?? '').split(';', 1)[0]!.trim();

function decompress(bytes: Buffer, encoding: string, limit: number): Buffer {
  const options = { maxOutputLength: limit };
  switch (encoding) {
    case '':
    case 'identity':
      return bytes;
    case 'gzip':
    case 'x-gzip':
      return gunzipSync(bytes, options);
    case 'deflate':
      return inflateSync(bytes, options);
    case 'br':
      return brotliDecompressSync(bytes, options);
    default:
      throw new Error(`content encoding ${encoding} is not decoded`);
  }
}

/**
 * A JSON body as the event records it: its own bytes, compacted and escaped as Go's encoding/json
 * writes raw JSON into the API server's event (a patch's runtime.Unknown), never decoded and written
 * again, so integers beyond 2^53, escapes, key order and duplicate keys stay as they were sent.
 */
export class RawJson {
  constructor(readonly text: string) {}

  /** The value, for reading a field or two (a Status); lossy where JSON.parse is. */
  value(): unknown {
    return JSON.parse(this.text);
  }
}

/**
 * JSON (and JSON patches) as its own bytes, or YAML (server-side apply) as the JSON the API server
 * makes of it (yaml-json.ts); anything else, protobuf above all, is named and left out.
 */
export function decodeBody(bytes: Buffer, headers: IncomingHttpHeaders, limit: number, omitManagedFields: boolean, patch = false): RecordedBody {
  const contentType = mediaType(headers);
  const isJson = JSON_TYPE.test(contentType);
  if (!isJson && !YAML_TYPE.test(contentType)) return { omitted: `the body is ${contentType || 'of no declared type'}, not JSON` };
  let text: string;
  let object: unknown;
  try {
    const decompressed = decompress(bytes, (headers['content-encoding'] ?? '').trim().toLowerCase(), limit);
    if (isJson) {
      // A patch is recorded as its bytes; the sidecar writes text, and would write U+FFFD for bytes that are not UTF-8.
      if (patch && !isUtf8(decompressed)) return { omitted: 'the patch is not UTF-8: the API server records its bytes as they are, which chaperone does not write' };
      text = decompressed.toString('utf8');
      const tooDeep = tooDeepToRecord(jsonDepth(text));
      if (tooDeep) return { omitted: tooDeep };
    } else {
      const converted = yamlAsJson(decompressed, { patch, limit });
      if ('omitted' in converted) return converted;
      text = converted.json;
    }
    object = JSON.parse(text);
  } catch (err) {
    const reason = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? `larger than the ${limit}-byte limit (--audit-body-limit) once decompressed` : (err as Error).message;
    return { omitted: `the body could not be decoded: ${reason}` };
  }
  const compact = isJson ? compactJson(text) : text;
  return { object: new RawJson(omitManagedFields ? withoutManagedFieldsText(compact, object) : compact) };
}

/** The value of a recorded body, for reading it (raw JSON decoded). */
export const valueOf = (object: unknown): unknown => (object instanceof RawJson ? object.value() : object);

// ---- omitManagedFields on the text: the members to drop are found by position, the rest left as it is ----

interface Member {
  key: string;
  /** Where the member starts (its key's quote) and where its value ends. */
  start: number;
  end: number;
  valueStart: number;
}

/** The end of the value starting at `at` in compact JSON. */
function skipValue(text: string, at: number): number {
  let depth = 0;
  let i = at;
  for (;;) {
    const c = text[i]!;
    if (c === '"') {
      i++;
      while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '{' || c === '[') {
      depth++;
      i++;
    } else if (c === '}' || c === ']') {
      depth--;
      i++;
    } else if (c === ',' || c === ':') {
      i++; // inside a container only
    } else {
      while (i < text.length && !',:}]'.includes(text[i]!)) i++;
    }
    if (depth === 0) return i;
  }
}

/** The members of the object at `at`, or undefined when the value there is not an object. */
function membersAt(text: string, at: number): Member[] | undefined {
  if (text[at] !== '{') return undefined;
  const members: Member[] = [];
  let i = at + 1;
  while (text[i] !== '}') {
    const keyEnd = skipValue(text, i);
    const valueStart = keyEnd + 1;
    const end = skipValue(text, valueStart);
    members.push({ key: JSON.parse(text.slice(i, keyEnd)) as string, start: i, end, valueStart });
    i = text[end] === ',' ? end + 1 : end;
  }
  return members;
}

/** The elements' starts of the array at `at`. */
function elementsAt(text: string, at: number): number[] {
  if (text[at] !== '[') return [];
  const starts: number[] = [];
  let i = at + 1;
  while (text[i] !== ']') {
    starts.push(i);
    const end = skipValue(text, i);
    i = text[end] === ',' ? end + 1 : end;
  }
  return starts;
}

type Replacement = [from: number, to: number, text: string];

/** Every metadata member of the object at `at` without its managedFields members (Go's decoder merges them all). */
function managedFieldsAt(text: string, at: number): Replacement[] {
  const replacements: Replacement[] = [];
  for (const metadata of membersAt(text, at)?.filter((m) => m.key === 'metadata') ?? []) {
    const members = membersAt(text, metadata.valueStart);
    if (!members?.some((m) => m.key === 'managedFields')) continue;
    const kept = members.filter((m) => m.key !== 'managedFields').map((m) => text.slice(m.start, m.end));
    replacements.push([metadata.valueStart, metadata.end, `{${kept.join(',')}}`]);
  }
  return replacements;
}

/** omitManagedFields on compact JSON: metadata.managedFields of the object, of each list item and of each Table row's object, dropped from the text. */
function withoutManagedFieldsText(text: string, value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return text;
  const members = membersAt(text, 0) ?? [];
  const replacements = managedFieldsAt(text, 0);
  const items = members.findLast((m) => m.key === 'items');
  if (items) for (const start of elementsAt(text, items.valueStart)) replacements.push(...managedFieldsAt(text, start));
  const rows = (value as { kind?: unknown }).kind === 'Table' ? members.findLast((m) => m.key === 'rows') : undefined;
  if (rows) {
    for (const start of elementsAt(text, rows.valueStart)) {
      const object = membersAt(text, start)?.findLast((m) => m.key === 'object');
      if (object) replacements.push(...managedFieldsAt(text, object.valueStart));
    }
  }
  let result = text;
  for (const [from, to, replacement] of replacements.sort((x, y) => y[0] - x[0])) result = result.slice(0, from) + replacement + result.slice(to);
  return result;
}
