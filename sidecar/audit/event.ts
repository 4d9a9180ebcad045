// A finished (or started) request as an audit.k8s.io/v1 Event, shaped field for field like the
// API server's own, so both logs read alike and join on auditID. Pure: no I/O, no clock.
import { randomUUID } from 'node:crypto';
import type { RequestInfo } from '../authz/request-info.js';
import type { Identity } from '../identity.js';
import { toStatus } from '../../lib/status.js';
import { RawJson } from './body.js';
import type { MetadataReading, ObjectMetaStrings } from './object-meta.js';
import type { RequestRecord, Review } from './record.js';
import { AUDIT_API_VERSION, type Level, type Stage } from '../../lib/sidecar-config/audit-policy.js';
import type { Event, ObjectReference, ResponseStatus, UserInfo } from './types.js';

/**
 * The annotations the sidecar adds to every event. The API server writes its own under
 * authorization.k8s.io/; these describe what the sidecar saw and decided.
 */
export const ANNOTATIONS = {
  /** How the person authenticated: x509, oidc, webhook, cluster-token-review or anonymous. Absent when nobody was authenticated. */
  authenticationMethod: 'chaperone.dev/authentication-method',
  /** Why methods tried before (or instead of) the one that worked failed; "<method>: <reason>; ...". */
  authenticationFailures: 'chaperone.dev/authentication-failures',
  /** The sidecar's SubjectAccessReview: allow or forbid (the API server's words). Absent when no review was made. */
  authorizationDecision: 'chaperone.dev/authorization-decision',
  /** The reason the SubjectAccessReview gave (often empty, as in the API server's own events). */
  authorizationReason: 'chaperone.dev/authorization-reason',
  /**
   * When more than one review settled the request (kubectl --as, exec and the other compound
   * creates): each of them, in order, as JSON.
   */
  authorizationReviews: 'chaperone.dev/authorization-reviews',
  /** "true" when the client itself sent Impersonate-* headers (kubectl --as). */
  nestedImpersonation: 'chaperone.dev/nested-impersonation',
  /** "true" when the request was sent on to the API server, whose log then has the same auditID. */
  forwarded: 'chaperone.dev/forwarded',
  /** Why the sidecar refused or failed the request. */
  error: 'chaperone.dev/error',
  /** The pod and namespace the sidecar serves. */
  podName: 'chaperone.dev/pod-name',
  podNamespace: 'chaperone.dev/pod-namespace',
  /** Why a body the level asks for is not in the event (too large, not JSON). */
  requestObjectOmitted: 'chaperone.dev/request-object-omitted',
  responseObjectOmitted: 'chaperone.dev/response-object-omitted',
  /**
   * Why objectRef may lack what the API server took from a create's or update's body: the API server
   * decoded a body chaperone could not read.
   */
  objectRefIncomplete: 'chaperone.dev/object-ref-incomplete',
} as const;

/** The message of a request its client abandoned before any answer. */
export const ABANDONED = 'context canceled: the client went away before the request was answered';

/** What the sidecar serves, from its configuration. */
export interface Served {
  podName?: string | undefined;
  podNamespace?: string | undefined;
}

/** A body as the event records it: the object (a JSON body as its own bytes, RawJson), or why it is left out. */
export type RecordedBody = { object: unknown } | { omitted: string } | undefined;

export interface EventInput {
  record: RequestRecord;
  level: Exclude<Level, 'None'>;
  stage: Stage;
  /** Microseconds since the epoch. */
  receivedMicros: number;
  stageMicros: number;
  served: Served;
  responseStatus: ResponseStatus;
  /** Recorded from Request level up. */
  requestBody?: RecordedBody;
  /**
   * For a create or update whose body the API server decoded: what its LogRequestObject took from
   * the object's metadata into objectRef, at every level (undefined: it decoded nothing).
   */
  objectMeta?: MetadataReading;
  /** Only at RequestResponse level. */
  responseBody?: RecordedBody;
}

const MAX_USER_AGENT = 1024;

/** metav1.MicroTime as JSON: RFC 3339 in UTC with exactly six fractional digits. */
export function microTime(micros: number): string {
  const whole = Math.floor(micros);
  const seconds = new Date(Math.floor(whole / 1000)).toISOString().slice(0, 19);
  return `${seconds}.${String(whole % 1_000_000).padStart(6, '0')}Z`;
}

export function userInfo(identity: Identity | undefined): UserInfo {
  if (!identity) return {};
  return {
    username: identity.username,
    ...(identity.uid ? { uid: identity.uid } : {}),
    ...(identity.groups.length > 0 ? { groups: [...identity.groups] } : {}),
    ...(Object.keys(identity.extra).length > 0 ? { extra: structuredClone(identity.extra) } : {}),
  };
}

/** As Go prints an address: an IPv4-mapped IPv6 address is plain IPv4. */
export function sourceIP(address: string): string {
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
}

export function objectRef(info: RequestInfo): ObjectReference | undefined {
  if (!info.isResourceRequest) return undefined;
  const ref: ObjectReference = {};
  if (info.resource) ref.resource = info.resource;
  if (info.namespace) ref.namespace = info.namespace;
  if (info.name) ref.name = info.name;
  if (info.apiGroup) ref.apiGroup = info.apiGroup;
  if (info.apiVersion) ref.apiVersion = info.apiVersion;
  if (info.subresource) ref.subresource = info.subresource;
  return ref;
}

/** The subresources whose requests the API server connects (its ConnectResource handler) instead of decoding a body. */
const CONNECT_SUBRESOURCES: Readonly<Record<string, readonly string[]>> = { pods: ['attach', 'exec', 'portforward', 'proxy'], services: ['proxy'], nodes: ['proxy'] };

/**
 * The verbs whose handlers call the API server's audit.LogRequestObject, which fills in what the URL
 * leaves open (a create's name) from the object's metadata at every level from Metadata up. Patches
 * are logged as patches, a delete's body is DeleteOptions, and a POST to exec or a proxy is
 * connected, not decoded: none of them completes the objectRef.
 */
export function completesObjectRef(info: RequestInfo): boolean {
  if (!info.isResourceRequest || (info.verb !== 'create' && info.verb !== 'update')) return false;
  return !(info.apiGroup === '' && CONNECT_SUBRESOURCES[info.resource]?.includes(info.subresource));
}

/** LogRequestObject: what the URL leaves open (a create's name) is taken from the object's metadata. */
function completedObjectRef(ref: ObjectReference | undefined, metadata: ObjectMetaStrings): ObjectReference | undefined {
  if (!ref) return ref;
  const text = (key: keyof ObjectMetaStrings) => (metadata[key] ? metadata[key] : undefined);
  const completed: ObjectReference = {};
  const fill = (key: keyof ObjectReference, value: string | undefined) => {
    if (value !== undefined) completed[key] = value;
  };
  fill('resource', ref.resource);
  fill('namespace', ref.namespace ?? text('namespace'));
  fill('name', ref.name ?? text('name'));
  fill('uid', text('uid'));
  fill('apiGroup', ref.apiGroup);
  fill('apiVersion', ref.apiVersion);
  fill('resourceVersion', text('resourceVersion'));
  fill('subresource', ref.subresource);
  return completed;
}

/**
 * The response status as the API server records it: the code alone on success, the Status's
 * bounded fields on failure. What the client saw decides: the API server's answer once it
 * started, else the sidecar's own.
 */
export function responseStatusOf(record: RequestRecord, upstreamCode: number | undefined, upstreamBody: unknown): ResponseStatus {
  if (upstreamCode === undefined && record.refusal) {
    const { metadata, status, message, reason, details, code } = toStatus(record.refusal);
    return { metadata, status, message, reason, ...(details ? { details } : {}), code };
  }
  if (upstreamCode === undefined) {
    // The client went away and there is no answer (it was not forwarded, or its stream was cut):
    // the API server records a request whose client's cancellation it notices as a 500.
    return { metadata: {}, status: 'Failure', message: ABANDONED, reason: 'InternalError', code: 500 };
  }
  const body = upstreamBody as Partial<Record<'kind' | 'status' | 'message' | 'reason', unknown>> & { details?: unknown } | undefined;
  if (body?.kind !== 'Status') return { metadata: {}, code: upstreamCode };
  const status: ResponseStatus = { metadata: {} };
  if (body.status === 'Success' || body.status === 'Failure') status.status = body.status;
  if (typeof body.message === 'string' && body.message) status.message = body.message;
  if (typeof body.reason === 'string' && body.reason) status.reason = body.reason;
  if (typeof body.details === 'object' && body.details !== null) status.details = body.details;
  status.code = upstreamCode;
  return status;
}

/** A review as a security team reads it: who, what, and the answer, the empty fields left out. */
function describeReview({ user, attributes, decision }: Review): Record<string, string> {
  const asked = 'resource' in attributes ? attributes.resource : attributes.nonResource;
  const fields: Record<string, string | undefined> = { user, ...asked, decision: decision.allowed ? 'allow' : 'forbid', reason: decision.reason };
  return Object.fromEntries(Object.entries(fields).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''));
}

export function annotationsOf(
  record: RequestRecord,
  served: Served,
  bodies: { request?: RecordedBody; response?: RecordedBody; objectMeta?: MetadataReading },
): Record<string, string> {
  const annotations: Record<string, string> = {};
  if (record.authenticated) annotations[ANNOTATIONS.authenticationMethod] = record.authenticated.method;
  if (record.authenticationFailures.length > 0) {
    annotations[ANNOTATIONS.authenticationFailures] = record.authenticationFailures.map((f) => `${f.method}: ${f.reason}`).join('; ');
  }
  if (record.decision) {
    annotations[ANNOTATIONS.authorizationDecision] = record.decision.allowed ? 'allow' : 'forbid';
    annotations[ANNOTATIONS.authorizationReason] = record.decision.reason;
  }
  if (record.reviews.length > 1) annotations[ANNOTATIONS.authorizationReviews] = JSON.stringify(record.reviews.map(describeReview));
  if (record.nestedImpersonation) annotations[ANNOTATIONS.nestedImpersonation] = 'true';
  annotations[ANNOTATIONS.forwarded] = String(record.forwarded);
  if (record.error) annotations[ANNOTATIONS.error] = record.error;
  if (served.podName) annotations[ANNOTATIONS.podName] = served.podName;
  if (served.podNamespace) annotations[ANNOTATIONS.podNamespace] = served.podNamespace;
  if (bodies.request && 'omitted' in bodies.request) annotations[ANNOTATIONS.requestObjectOmitted] = bodies.request.omitted;
  if (bodies.response && 'omitted' in bodies.response) annotations[ANNOTATIONS.responseObjectOmitted] = bodies.response.omitted;
  if (bodies.objectMeta && 'unread' in bodies.objectMeta) annotations[ANNOTATIONS.objectRefIncomplete] = bodies.objectMeta.unread;
  return annotations;
}

export function buildEvent(input: EventInput): Event {
  const { record, level, objectMeta } = input;
  const requestBody = level === 'Metadata' ? undefined : input.requestBody;
  const responseBody = level === 'RequestResponse' ? input.responseBody : undefined;
  const requestObject = requestBody && 'object' in requestBody ? requestBody.object : undefined;
  const responseObject = responseBody && 'object' in responseBody ? responseBody.object : undefined;
  const userAgent = record.userAgent ?? '';
  const ip = sourceIP(record.sourceIP);
  const ref = completesObjectRef(record.info) && objectMeta && 'fields' in objectMeta ? completedObjectRef(objectRef(record.info), objectMeta.fields) : objectRef(record.info);
  const event: Event = {
    kind: 'Event',
    apiVersion: AUDIT_API_VERSION,
    level,
    auditID: record.auditID,
    stage: input.stage,
    requestURI: record.requestURI,
    verb: record.info.verb,
    user: userInfo(record.authenticated?.identity),
    ...(record.forwarded && record.impersonated ? { impersonatedUser: userInfo(record.impersonated) } : {}),
    ...(ip ? { sourceIPs: [ip] } : {}),
    ...(userAgent ? { userAgent: userAgent.length > MAX_USER_AGENT ? `${userAgent.slice(0, MAX_USER_AGENT)}...TRUNCATED` : userAgent } : {}),
    ...(ref ? { objectRef: ref } : {}),
    responseStatus: input.responseStatus,
    ...(requestObject !== undefined ? { requestObject } : {}),
    ...(responseObject !== undefined ? { responseObject } : {}),
    requestReceivedTimestamp: microTime(input.receivedMicros),
    stageTimestamp: microTime(input.stageMicros),
  };
  const annotations = annotationsOf(record, input.served, { request: requestBody, response: responseBody, objectMeta });
  if (Object.keys(annotations).length > 0) event.annotations = annotations;
  return event;
}

/** Stands in for a raw JSON body while the rest of the event is serialised; no string sent can be it. */
const RAW_MARK = `\u0000raw-json-${randomUUID()}\u0000`;
const RAW_PLACEHOLDER = new RegExp(`"${JSON.stringify(RAW_MARK).slice(1, -1).replace(/\\/g, '\\\\')}(\\d+)"`, 'g');

/** The event as one line of JSON, its bodies (RawJson) written as the bytes they are. */
export function serialiseEvent(event: Event): string {
  // Bodies are all a RawJson can be; without them (Metadata level) no replacer is needed, and
  // JSON.stringify is several times faster without one.
  if (event.requestObject === undefined && event.responseObject === undefined) return JSON.stringify(event);
  const raw: string[] = [];
  const json = JSON.stringify(event, (_key, value: unknown) => (value instanceof RawJson ? `${RAW_MARK}${raw.push(value.text) - 1}` : value));
  return raw.length === 0 ? json : json.replace(RAW_PLACEHOLDER, (_match, index: string) => raw[Number(index)]!);
}
