// Request and response bodies for Request and RequestResponse events: copied as they stream
// through (never buffered in their way), up to a limit, and decoded only when the event is written.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';
import type { RecordedBody } from './event.js';

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
    if (this.overflowed) return;
    if (this.size > Math.max(this.limit, this.keep)) {
      this.overflowed = true;
      this.chunks = [];
      return;
    }
    this.chunks.push(chunk);
  }

  /** The stream ended as its sender framed it (not cut off). */
  get ended(): boolean {
    return this.complete;
  }

  /** Every byte, when all were kept; undefined past `keep`. */
  bytes(): Buffer | undefined {
    return this.overflowed ? undefined : Buffer.concat(this.chunks);
  }

  /** The body as the event records it; undefined when there was none. */
  recorded(omitManagedFields: boolean): RecordedBody {
    if (this.size === 0) return undefined;
    if (this.overflowed || this.size > this.limit) return { omitted: `the body is larger than the ${this.limit}-byte limit (--audit-body-limit)` };
    return decodeBody(Buffer.concat(this.chunks), this.headers, this.limit, omitManagedFields);
  }
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;
const YAML_TYPE = /^application\/(?:[\w.+-]+\+)?yaml$/i;

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

/** JSON (and JSON patches), or YAML (server-side apply); anything else, protobuf above all, is named and left out. */
export function decodeBody(bytes: Buffer, headers: IncomingHttpHeaders, limit: number, omitManagedFields: boolean): RecordedBody {
  const contentType = (headers['content-type'] ?? '').split(';', 1)[0]!.trim();
  const isJson = JSON_TYPE.test(contentType);
  if (!isJson && !YAML_TYPE.test(contentType)) return { omitted: `the body is ${contentType || 'of no declared type'}, not JSON` };
  let object: unknown;
  try {
    const text = decompress(bytes, (headers['content-encoding'] ?? '').trim().toLowerCase(), limit).toString('utf8');
    object = isJson ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const reason = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? `larger than the ${limit}-byte limit (--audit-body-limit) once decompressed` : (err as Error).message;
    return { omitted: `the body could not be decoded: ${reason}` };
  }
  return { object: omitManagedFields ? withoutManagedFields(object) : object };
}

function stripMeta(object: unknown): unknown {
  const metadata = (object as { metadata?: unknown } | null)?.metadata;
  if (typeof metadata !== 'object' || metadata === null || !('managedFields' in metadata)) return object;
  const rest: Record<string, unknown> = { ...(metadata as Record<string, unknown>) };
  delete rest.managedFields;
  return { ...(object as object), metadata: rest };
}

/** omitManagedFields: drops metadata.managedFields from an object, each item of a list, each row of a Table. */
export function withoutManagedFields(object: unknown): unknown {
  if (typeof object !== 'object' || object === null || Array.isArray(object)) return object;
  let result = stripMeta(object) as Record<string, unknown>;
  if (Array.isArray(result.items)) result = { ...result, items: result.items.map(stripMeta) };
  if (result.kind === 'Table' && Array.isArray(result.rows)) {
    result = {
      ...result,
      rows: result.rows.map((row: unknown) => {
        const r = row as { object?: unknown } | null;
        return r && typeof r === 'object' && 'object' in r ? { ...r, object: stripMeta(r.object) } : row;
      }),
    };
  }
  return result;
}
