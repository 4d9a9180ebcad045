// The audit recorder the pipeline talks to: applies the policy to each request, keeps the bodies
// the policy asks for, and writes one event per stage to every sink. Back-pressure (block mode)
// is applied when a request arrives, never by dropping what is already recorded.
import type { Logger } from '../../lib/log.js';
import { isLongRunning } from '../authz/classify.js';
import { BodyCopy, valueOf } from './body.js';
import { buildEvent, completesObjectRef, responseStatusOf, serialiseEvent, type RecordedBody, type Served } from './event.js';
import { apiServerDecoded, mediaTypeOf, readObjectMetadata, type MetadataReading } from './object-meta.js';
import { protobufEnvelope, protobufStatus, type StatusFields } from './protobuf-view.js';
import { levelAtLeast, type AuditPolicy, type PolicyAttributes, type RequestAuditConfig, type Stage } from '../../lib/sidecar-config/audit-policy.js';
import type { Identity } from '../identity.js';
import type { RequestInfo } from '../authz/request-info.js';
import type { AuditRecorder, RequestRecord } from './record.js';
import type { UpstreamResponse } from '../forward/http.js';
import type { SinkName } from '../../lib/sidecar-config/audit.js';
import type { Sink, SinkStats } from './sinks/sink.js';
import { serviceUnavailable, toStatus, unsupportedMediaType } from '../../lib/status.js';
import type { ClientRequest } from '../../lib/client-exchange.js';

/** Counters for /metrics: events written, and per sink what was written, dropped and is waiting. */
export interface AuditStats {
  /** Requests that ended (each one audited, or not audited because the policy said None). */
  requests: number;
  /** Events produced (one request may produce two: ResponseStarted and ResponseComplete). */
  events: number;
  sinks: Partial<Record<SinkName, SinkStats>>;
}

export interface AuditorOptions {
  policy: AuditPolicy;
  sinks: Sink[];
  served: Served;
  /** The largest body kept for an event. */
  bodyLimit: number;
  /**
   * The largest request body the sidecar forwards (--max-request-body-bytes): a create's or update's
   * body is read whole, up to this, for the metadata the API server records in objectRef.
   */
  maxRequestBodyBytes?: number;
  log: Logger;
  /** Microseconds since the epoch. */
  clock?: () => number;
}

/** Wall-clock microseconds: Date.now() gives milliseconds only, performance.now() the rest. */
export function microClock(): () => number {
  let offset = Date.now() - performance.now();
  return () => {
    const now = performance.now();
    const wall = Date.now();
    // Follow the wall clock when it is set (NTP steps), as the API server's clock does.
    if (Math.abs(offset + now - wall) > 1) offset = wall - now;
    return Math.floor((offset + now) * 1000);
  };
}

interface RequestState {
  receivedMicros: number;
  config?: RequestAuditConfig;
  requestBody?: BodyCopy;
  responseBody?: BodyCopy;
  /** The status code the API server answered with, once its response started. */
  upstreamCode?: number;
  startedWritten: boolean;
  /** The create's or update's metadata, read once when the first event needs it. */
  objectMeta?: MetadataReading;
}

const BODY_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

/** Media types the API server can be configured to decode (CBOR, behind CBORServingAndStorage) and chaperone does not read. */
const UNREAD_MEDIA_TYPES = new Set(['application/cbor']);

/** The Status in the API server's failure answer (JSON or protobuf), when it answered with one. */
function statusOf(answer: BodyCopy | undefined): StatusFields | undefined {
  const bytes = answer?.bytes();
  if (!answer || !bytes) return undefined;
  try {
    if (mediaTypeOf(answer.headers['content-type']) === 'application/vnd.kubernetes.protobuf') {
      const envelope = protobufEnvelope(bytes);
      return envelope.kind === 'Status' ? protobufStatus(envelope.raw) : undefined;
    }
    const recorded = answer.recorded(false);
    const object = recorded && 'object' in recorded ? (valueOf(recorded.object) as Record<string, unknown> | null) : undefined;
    if (object?.kind !== 'Status') return undefined;
    const details = (typeof object.details === 'object' && object.details !== null ? object.details : {}) as Record<string, unknown>;
    const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
    return {
      ...(text(object.message) !== undefined ? { message: text(object.message) } : {}),
      ...(text(object.reason) !== undefined ? { reason: text(object.reason) } : {}),
      details: { ...(text(details.group) !== undefined ? { group: text(details.group) } : {}), ...(text(details.kind) !== undefined ? { kind: text(details.kind) } : {}) },
    };
  } catch {
    return undefined;
  }
}

/** The attributes of a request (its RequestInfo) made by this person (undefined: nobody authenticated). */
export function policyAttributes(info: RequestInfo, person: Identity | undefined): PolicyAttributes {
  return {
    ...(person ? { user: { username: person.username, groups: person.groups } } : {}),
    verb: info.verb,
    isResourceRequest: info.isResourceRequest,
    namespace: info.namespace,
    apiGroup: info.apiGroup,
    resource: info.resource,
    subresource: info.subresource,
    name: info.name,
    path: info.path,
  };
}

const attributesOf = (record: RequestRecord): PolicyAttributes => policyAttributes(record.info, record.authenticated?.identity);

export class Auditor implements AuditRecorder {
  private readonly states = new WeakMap<RequestRecord, RequestState>();
  private readonly clock: () => number;
  private requests = 0;
  private events = 0;

  constructor(private readonly options: AuditorOptions) {
    this.clock = options.clock ?? microClock();
  }

  private stateOf(record: RequestRecord): RequestState {
    let state = this.states.get(record);
    if (!state) {
      state = { receivedMicros: record.receivedAt.getTime() * 1000, startedWritten: false };
      this.states.set(record, state);
    }
    return state;
  }

  /** Evaluated once, when the person is known (or known to be nobody), and kept for every stage. */
  private configOf(record: RequestRecord, state: RequestState): RequestAuditConfig {
    state.config ??= this.options.policy.evaluate(attributesOf(record));
    return state.config;
  }

  async begin(record: RequestRecord, req: ClientRequest): Promise<void> {
    const state = this.stateOf(record);
    state.receivedMicros = this.clock();
    const { info } = record;
    const mayCarryObject = info.isResourceRequest && BODY_VERBS.has(info.verb) && req.headers.upgrade === undefined;
    const highest = this.options.policy.highestLevel(attributesOf(record));
    // The object's metadata completes the objectRef at every level (a create's name), the object itself from Request up.
    const completes = completesObjectRef(info) && highest !== 'None';
    if (completes && UNREAD_MEDIA_TYPES.has(mediaTypeOf(req.headers['content-type']))) {
      // The API server may decode it (behind a feature gate); then its log would name an object this one cannot.
      throw unsupportedMediaType(
        `chaperone does not read ${mediaTypeOf(req.headers['content-type'])} bodies, so it could not record which object this ${info.verb} touches; send JSON, YAML or protobuf`,
      );
    }
    if (mayCarryObject && (completes || levelAtLeast(highest, 'Request'))) {
      const keep = completes ? Math.max(this.options.bodyLimit, this.options.maxRequestBodyBytes ?? 0) : this.options.bodyLimit;
      state.requestBody = new BodyCopy(this.options.bodyLimit, req.headers, keep).watch(req);
    }
    await this.room();
    // Held back so long that the client gave up: its event is written; the request must not go on.
    if (req.socket?.destroyed) throw serviceUnavailable('the client went away while chaperone waited for room in the audit buffer');
  }

  /**
   * What the API server's LogRequestObject took from a create's or update's body into objectRef:
   * nothing unless the request reached it and its handler decoded the body (the answer says so; a
   * body sent whole upstream with no answer is taken to have been decoded); then the metadata, read as its
   * decoder reads it.
   */
  private objectMetaOf(record: RequestRecord, state: RequestState): MetadataReading | undefined {
    if (!completesObjectRef(record.info) || !record.forwarded || !state.requestBody) return undefined;
    // A body that did not arrive whole was ended short upstream: the API server's read of it failed, whatever it answered.
    const whole = state.requestBody.ended && record.bodySent === true;
    const decoded = whole && (state.upstreamCode === undefined || apiServerDecoded(state.upstreamCode, statusOf(state.responseBody)));
    if (!decoded) return undefined;
    if (!state.objectMeta) {
      const bytes = state.requestBody.bytes();
      state.objectMeta = bytes
        ? readObjectMetadata(bytes, state.requestBody.headers['content-type'], record.info.apiGroup)
        : { unread: 'the body is larger than chaperone keeps (--max-request-body-bytes)' };
    }
    return state.objectMeta;
  }

  /** Waits while any sink is full in block mode. */
  private async room(): Promise<void> {
    for (;;) {
      const waits = this.options.sinks.map((sink) => sink.ready()).filter((wait) => wait !== undefined);
      if (waits.length === 0) return;
      await Promise.all(waits);
    }
  }

  started(record: RequestRecord, code: number, response?: UpstreamResponse): void {
    this.safely(record, () => {
      const state = this.stateOf(record);
      state.upstreamCode = code;
      const config = this.configOf(record, state);
      if (config.level === 'None') return;
      const longRunning = isLongRunning(record.info);
      // Failures carry a Status worth recording at every level; objects only at RequestResponse.
      if (response && (code >= 400 || (config.level === 'RequestResponse' && !longRunning))) {
        state.responseBody = new BodyCopy(this.options.bodyLimit, response.headers).watch(response.body);
      }
      if (longRunning) this.writeStarted(record, state, config);
    });
  }

  record(record: RequestRecord): void {
    this.requests++;
    this.safely(record, () => {
      const state = this.stateOf(record);
      const config = this.configOf(record, state);
      if (config.level === 'None') return;
      // A refused watch or upgrade never started streaming; it still gets both stages, as in the API server.
      if (isLongRunning(record.info)) this.writeStarted(record, state, config);
      this.write(record, state, config, record.crashed ? 'Panic' : 'ResponseComplete');
    });
  }

  private writeStarted(record: RequestRecord, state: RequestState, config: RequestAuditConfig): void {
    if (state.startedWritten) return;
    state.startedWritten = true;
    this.write(record, state, config, 'ResponseStarted');
  }

  private write(record: RequestRecord, state: RequestState, config: RequestAuditConfig, stage: Stage): void {
    if (config.level === 'None' || config.omitStages.has(stage)) return;
    const complete = stage !== 'ResponseStarted';
    const upstream: RecordedBody = complete ? state.responseBody?.recorded(config.omitManagedFields) : undefined;
    const upstreamObject = upstream && 'object' in upstream ? valueOf(upstream.object) : undefined;
    const responseStatus = complete || state.upstreamCode === undefined ? responseStatusOf(record, state.upstreamCode, upstreamObject) : { metadata: {}, code: state.upstreamCode };
    const ownAnswer: RecordedBody = state.upstreamCode === undefined && record.refusal ? { object: toStatus(record.refusal) } : undefined;
    const event = buildEvent({
      record,
      level: config.level,
      stage,
      receivedMicros: state.receivedMicros,
      stageMicros: this.clock(),
      served: this.options.served,
      responseStatus,
      ...(complete ? { requestBody: state.requestBody?.recorded(config.omitManagedFields, record.info.verb === 'patch'), responseBody: upstream ?? ownAnswer } : {}),
      objectMeta: this.objectMetaOf(record, state),
    });
    const serialised = { auditID: record.auditID, json: serialiseEvent(event) };
    this.events++;
    for (const sink of this.options.sinks) sink.write(serialised);
  }

  /** An audit failure must never take the request path (or the process) down with it. */
  private safely(record: RequestRecord, work: () => void): void {
    try {
      work();
    } catch (err) {
      this.options.log.error({ auditID: record.auditID, err: (err as Error).message }, 'could not write the audit event');
    }
  }

  stats(): AuditStats {
    return { requests: this.requests, events: this.events, sinks: Object.fromEntries(this.options.sinks.map((sink) => [sink.name, sink.stats()])) };
  }

  /** Delivers what the sinks still hold (within their flush timeout) and closes them. */
  async close(): Promise<void> {
    await Promise.all(this.options.sinks.map((sink) => sink.close()));
  }
}
