// Errors as the Kubernetes Status objects that kubectl and dashboards already know how to show.
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RequestInfo } from './authz/request-info.js';

export type StatusReason =
  | 'BadRequest'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'RequestEntityTooLarge'
  | 'UnsupportedMediaType'
  | 'TooManyRequests'
  | 'InternalError'
  | 'ServiceUnavailable'
  | 'Timeout';

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
}

/** A refusal with the code, reason and message the client should see. */
export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
    this.name = 'StatusError';
  }
}

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: StatusReason;
  details?: StatusDetails;
  code: number;
}

export function toStatus(error: StatusError): Status {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: error.message,
    reason: error.reason,
    ...(error.details ? { details: error.details } : {}),
    code: error.code,
  };
}

export function writeStatus(res: ServerResponse, error: StatusError, auditID?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(toStatus(error));
  res.writeHead(error.code, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-cache, private',
    ...(auditID ? { 'Audit-Id': auditID } : {}),
  });
  res.end(body);
}

/** The same Status on a connection that asked to be upgraded: there is no response object, only the socket. */
export function writeStatusToSocket(socket: Duplex, error: StatusError, auditID?: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(toStatus(error));
  const head = [
    `HTTP/1.1 ${error.code} ${STATUS_CODES[error.code] ?? ''}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-cache, private',
    ...(auditID ? [`Audit-Id: ${auditID}`] : []),
    'Connection: close',
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

/** Exactly the API server's 401 for a request without valid credentials. */
export function unauthorized(): StatusError {
  return new StatusError(401, 'Unauthorized', 'Unauthorized');
}

export function badRequest(message: string): StatusError {
  return new StatusError(400, 'BadRequest', message);
}

export function serviceUnavailable(message: string): StatusError {
  return new StatusError(503, 'ServiceUnavailable', message);
}

export function tooLarge(message: string): StatusError {
  return new StatusError(413, 'RequestEntityTooLarge', message);
}

export function unsupportedMediaType(message: string): StatusError {
  return new StatusError(415, 'UnsupportedMediaType', message);
}

export function tooManyRequests(message: string): StatusError {
  return new StatusError(429, 'TooManyRequests', message);
}

export function gatewayTimeout(message: string): StatusError {
  return new StatusError(504, 'Timeout', message);
}

export function internalError(message: string): StatusError {
  return new StatusError(500, 'InternalError', message);
}

/** What the API server says when it refuses (responsewriters.forbiddenMessage), so both read the same. */
function forbiddenMessage(username: string, info: RequestInfo): string {
  if (!info.isResourceRequest) return `User ${JSON.stringify(username)} cannot ${info.verb} path ${JSON.stringify(info.path)}`;
  const resource = info.subresource ? `${info.resource}/${info.subresource}` : info.resource;
  const scope = info.namespace ? `in the namespace ${JSON.stringify(info.namespace)}` : 'at the cluster scope';
  return `User ${JSON.stringify(username)} cannot ${info.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(info.apiGroup)} ${scope}`;
}

/** A 403 worded as the API server's own (apierrors.NewForbidden), with the authoriser's reason appended. */
export function forbidden(username: string, info: RequestInfo, reason = ''): StatusError {
  const cause = reason ? `${forbiddenMessage(username, info)}: ${reason}` : forbiddenMessage(username, info);
  if (!info.isResourceRequest) return new StatusError(403, 'Forbidden', `forbidden: ${cause}`, {});
  const qualified = info.apiGroup ? `${info.resource}.${info.apiGroup}` : info.resource;
  const subject = info.name ? `${qualified} ${JSON.stringify(info.name)}` : qualified;
  return new StatusError(403, 'Forbidden', `${subject} is forbidden: ${cause}`, {
    ...(info.name ? { name: info.name } : {}),
    ...(info.apiGroup ? { group: info.apiGroup } : {}),
    kind: info.resource,
  });
}

/** A refusal that is not about RBAC (the guard, nested impersonation): the message says why. */
export function forbiddenBecause(message: string): StatusError {
  return new StatusError(403, 'Forbidden', message);
}
