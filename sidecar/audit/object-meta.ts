// What the API server's audit.LogRequestObject takes from a create's or update's body for objectRef
// (name, namespace, uid, resourceVersion: k8s.io/apiserver/pkg/audit/request.go), read as the
// request's own handler decodes it (k8s.io/apiserver/pkg/endpoints/handlers/create.go, update.go):
//
// - the serializer is the one the Content-Type names (parameters ignored, letter case too; none is
//   JSON); Content-Encoding is never looked at: the API server does not decode request bodies;
// - JSON: kind and apiVersion are found as encoding/json finds them (member names matched without
//   regard to case, the last one that is not null winning; anything but a string fails); then the
//   object, for a built-in type, as sigs.k8s.io/json decodes into Go structs: `metadata` matched
//   exactly, every occurrence merged into the one ObjectMeta (a later field wins, null changes
//   nothing, anything but an object or a string where one belongs fails); for a custom resource
//   as it decodes into map[string]interface{} (the last `metadata` wins whole, and within it the
//   last `name`; anything but a string reads as empty);
// - YAML: the first document as sigs.k8s.io/yaml turns it into JSON (go-yaml-view.ts), then as JSON;
// - protobuf: the envelope's kind, then ObjectMeta (protobuf-view.ts); custom resources have none;
// - a kind that has no ObjectMeta (a list, options, Status…) gives the API server nothing to take.
//
// Whether the API server got as far as decoding at all is told by its answer (apiServerDecoded).
import { goFieldMatches } from '../authn/jwt/go-json.js';
import { jsonDocument, type JsonView } from './go-json-view.js';
import { yamlDocument } from './go-yaml-view.js';
import { protobufEnvelope, protobufObjectMeta, type ObjectMetaStrings, type StatusFields } from './protobuf-view.js';

export type { ObjectMetaStrings } from './protobuf-view.js';

/** What LogRequestObject would take from a body the API server decodes. */
export type MetadataReading =
  /** The object's metadata as decoded (each field present as a string when the body set it). */
  | { fields: ObjectMetaStrings }
  /** Decoded, but into a kind without ObjectMeta: nothing to take. */
  | { none: string }
  /** Not read: why (the API server may fail to decode it too, and then there is nothing to take either). */
  | { unread: string };

const FIELDS = ['name', 'namespace', 'uid', 'resourceVersion'] as const;

/**
 * The API groups whose types are compiled into kube-apiserver v1.37 (decoded into Go structs); every
 * other group is a custom resource's (decoded into maps) or an aggregated server's. A custom
 * resource's group always has a dot; the dotted ones here are the release's own.
 */
const BUILT_IN_GROUPS = new Set([
  '',
  'admissionregistration.k8s.io',
  'apiextensions.k8s.io',
  'apiregistration.k8s.io',
  'apps',
  'authentication.k8s.io',
  'authorization.k8s.io',
  'autoscaling',
  'batch',
  'certificates.k8s.io',
  'coordination.k8s.io',
  'discovery.k8s.io',
  'events.k8s.io',
  'flowcontrol.apiserver.k8s.io',
  'internal.apiserver.k8s.io',
  'lifecycle.k8s.io',
  'networking.k8s.io',
  'node.k8s.io',
  'policy',
  'rbac.authorization.k8s.io',
  'resource.k8s.io',
  'scheduling.k8s.io',
  'storage.k8s.io',
  'storagemigration.k8s.io',
]);

/**
 * The kinds registered in the built-in groups whose types have no ObjectMeta (meta.Accessor fails on
 * them): every *List and *Options, and these. Found by reading k8s.io/api, apimachinery's meta/v1,
 * apiextensions and apiregistration at v0.37.2 for types with TypeMeta and without ObjectMeta.
 */
const KINDS_WITHOUT_OBJECT_META = new Set([
  'APIGroup',
  'APIVersions',
  'AdmissionReview',
  'ConversionReview',
  'DeploymentRollback',
  'SerializedReference',
  'Status',
  'Table',
  'WatchEvent',
]);

export function hasObjectMeta(kind: string): boolean {
  return kind === '' || !(kind.endsWith('List') || kind.endsWith('Options') || KINDS_WITHOUT_OBJECT_META.has(kind));
}

/** The body cannot be decoded by the API server (it answers 400), so there is nothing to take. */
class Undecodable extends Error {}

/** mime.ParseMediaType's media type, lower-cased; no Content-Type is the first serializer's, JSON. */
export function mediaTypeOf(contentType: string | undefined): string {
  const type = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  return type === '' ? 'application/json' : type;
}

/** encoding/json's Unmarshal into a struct with apiVersion and kind, as SimpleMetaFactory.Interpret does. */
function interpretKind(members: [string, JsonView][]): string {
  const found = { kind: '', apiVersion: '' };
  for (const [name, value] of members) {
    const field = goFieldMatches(name, 'kind') ? 'kind' : goFieldMatches(name, 'apiVersion') ? 'apiVersion' : undefined;
    if (!field || value.type === 'null') continue;
    if (value.type !== 'string') throw new Undecodable(`${field} is not a string`);
    found[field] = value.value;
  }
  if (found.apiVersion.split('/').length > 2) throw new Undecodable(`unexpected GroupVersion string: ${found.apiVersion}`);
  return found.kind;
}

/** sigs.k8s.io/json into a built-in type: every `metadata` merged into one ObjectMeta. */
function structMetadata(document: JsonView): MetadataReading {
  if (document.type === 'null') return { fields: {} };
  if (document.type !== 'object') throw new Undecodable('the body is not a JSON object');
  const members = document.members();
  const kind = interpretKind(members);
  if (!hasObjectMeta(kind)) return { none: `a ${kind} has no ObjectMeta` };
  const fields: ObjectMetaStrings = {};
  for (const [name, metadata] of members) {
    if (name !== 'metadata' || metadata.type === 'null') continue;
    if (metadata.type !== 'object') throw new Undecodable('metadata is not an object');
    for (const [key, value] of metadata.members()) {
      const field = FIELDS.find((f) => f === key);
      if (!field || value.type === 'null') continue;
      if (value.type !== 'string') throw new Undecodable(`metadata.${field} is not a string`);
      fields[field] = value.value;
    }
  }
  return { fields };
}

/** map[string]interface{} for a custom resource: the last `metadata` whole, and in it the last of each field. */
function mapMetadata(document: JsonView): MetadataReading {
  if (document.type !== 'object') throw new Undecodable('the body is not a JSON object');
  const last = (members: [string, JsonView][], name: string) => members.findLast(([key]) => key === name)?.[1];
  const metadata = last(document.members(), 'metadata');
  const fields: ObjectMetaStrings = {};
  if (metadata?.type !== 'object') return { fields };
  const members = metadata.members();
  for (const field of FIELDS) {
    const value = last(members, field);
    if (value?.type === 'string') fields[field] = value.value;
  }
  return { fields };
}

/**
 * What the API server's handler decodes from a create's or update's body for objectRef. `apiGroup`
 * is the request's (from its URL): it says whether the type is built in.
 */
export function readObjectMetadata(body: Uint8Array, contentType: string | undefined, apiGroup: string): MetadataReading {
  const builtIn = BUILT_IN_GROUPS.has(apiGroup);
  const mediaType = mediaTypeOf(contentType);
  const decode = builtIn ? structMetadata : mapMetadata;
  try {
    switch (mediaType) {
      case 'application/json':
        return decode(jsonDocument(body));
      case 'application/yaml':
        return decode(yamlDocument(body));
      case 'application/vnd.kubernetes.protobuf': {
        if (!builtIn) return { unread: 'custom resources are not decoded from protobuf' };
        const envelope = protobufEnvelope(body);
        if (!hasObjectMeta(envelope.kind)) return { none: `a ${envelope.kind} has no ObjectMeta` };
        return { fields: protobufObjectMeta(envelope.raw) };
      }
      default:
        return { unread: `the API server decodes no ${mediaType} body` };
    }
  } catch (err) {
    return { unread: `the ${mediaType} body does not decode: ${(err as Error).message}` };
  }
}

// ---- whether the API server decoded the body at all: its answer says ----

/** The request failed before its handler decoded the body (and called LogRequestObject), by these messages. */
const NOT_DECODED_400 = [
  // transformDecodeError (handlers/rest.go): the body did not decode.
  /^.* in version ".*" cannot be handled as a .*: /s,
  /^the object provided is unrecognized \(must be of type .*\): /s,
  // The body decoded to another group/version than the endpoint's (create.go, update.go).
  /^the API version in the data \(.*\) does not match the expected API version \(.*\)$/s,
];
const NOT_DECODED_503 = ['apiserver is shutting down', 'the request has been made before all known HTTP paths have been installed, please try again'];

/**
 * Whether the API server's handler decoded the body and so called LogRequestObject, from its answer:
 * a success, or a failure that comes after decoding (admission, validation, storage, a conflict).
 * Failures before it: authentication (401), authorization and impersonation (403 "User … cannot …"),
 * no such resource or method (404, 405), negotiation (406, 415), the body limit (413), the body not
 * decoding (400 with transformDecodeError's words), invalid options (422 on CreateOptions or
 * UpdateOptions), the server starting or stopping (503), and the answers filters write as plain text
 * (priority and fairness's 429) rather than as a Status.
 */
export function apiServerDecoded(code: number, status: StatusFields | undefined): boolean {
  if (code >= 200 && code < 300) return true;
  if (!status) return false;
  const message = status.message ?? '';
  switch (code) {
    case 401:
    case 405:
    case 406:
    case 415:
      return false;
    case 400:
      return !NOT_DECODED_400.some((pattern) => pattern.test(message));
    case 403:
      return !/User ".*" cannot \S+ (?:resource|path) /s.test(message);
    case 404:
      return message !== 'the server could not find the requested resource';
    case 413:
      return !message.startsWith('Request entity too large: limit is ');
    case 422:
      return !(status.details?.group === 'meta.k8s.io' && (status.details.kind === 'CreateOptions' || status.details.kind === 'UpdateOptions'));
    case 503:
      return !NOT_DECODED_503.includes(message) && !message.startsWith('wait for storage version registration to complete');
    default:
      return true;
  }
}
