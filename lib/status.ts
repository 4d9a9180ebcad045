// The one error family of chaperone's answers: every refusal the sidecar or the injector gives is a
// StatusError, the Kubernetes Status object that kubectl and dashboards already know how to show,
// with a stable reason. What the client reads (message) and what the log and audit event say
// (internal) may differ: an authentication failure tells the client only "Unauthorized".
import { STATUS_CODES } from 'node:http';
import { writeHead, type ClientResponse } from './client-exchange.js';
import type { Duplex } from 'node:stream';

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

export interface StatusErrorOptions {
  details?: StatusDetails;
  /** For the log and the audit event only, when it says more than the client may read. */
  internal?: string;
}

/** A refusal with the code, reason and message the client should see. */
export class StatusError extends Error {
  readonly details: StatusDetails | undefined;
  /** What the log and the audit event record. */
  readonly internal: string;

  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    options: StatusErrorOptions = {},
  ) {
    super(message);
    this.name = new.target.name;
    this.details = options.details;
    this.internal = options.internal ?? message;
  }
}

/**
 * The Status for any error: a StatusError is its own; anything else is a failure nobody planned
 * for, a 500 that says nothing of its cause (the API server's own answer to a panic).
 */
export function statusOf(err: unknown): StatusError {
  return err instanceof StatusError ? err : internalError('chaperone failed to handle the request');
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

export function writeStatus(res: ClientResponse, error: StatusError, auditID?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(toStatus(error));
  writeHead(res, error.code, {
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

/** A refusal that is not about RBAC (the guard, nested impersonation): the message says why. */
export function forbiddenBecause(message: string): StatusError {
  return new StatusError(403, 'Forbidden', message);
}
