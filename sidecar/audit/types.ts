// The audit.k8s.io/v1 shapes the sidecar writes and reads, as the API server serialises them
// (k8s.io/apiserver/pkg/apis/audit/v1): empty fields are left out, timestamps have microseconds.

export const AUDIT_API_VERSION = 'audit.k8s.io/v1';

export const LEVELS = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;
export type Level = (typeof LEVELS)[number];

export const STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;
export type Stage = (typeof STAGES)[number];

/** True when `level` records at least what `atLeast` does. */
export function levelAtLeast(level: Level, atLeast: Level): boolean {
  return LEVELS.indexOf(level) >= LEVELS.indexOf(atLeast);
}

/** authentication.k8s.io/v1 UserInfo. */
export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface ObjectReference {
  resource?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiGroup?: string;
  apiVersion?: string;
  resourceVersion?: string;
  subresource?: string;
}

/** meta/v1 Status as the audit event carries it: the bounded fields only. */
export interface ResponseStatus {
  metadata: Record<string, never>;
  status?: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: object;
  code?: number;
}

export interface Event {
  kind: 'Event';
  apiVersion: typeof AUDIT_API_VERSION;
  level: Level;
  auditID: string;
  stage: Stage;
  requestURI: string;
  verb: string;
  user: UserInfo;
  impersonatedUser?: UserInfo;
  sourceIPs?: string[];
  userAgent?: string;
  objectRef?: ObjectReference;
  responseStatus?: ResponseStatus;
  requestObject?: unknown;
  responseObject?: unknown;
  /** RFC 3339 with microseconds, in UTC: 2026-01-02T15:04:05.123456Z */
  requestReceivedTimestamp: string;
  stageTimestamp: string;
  annotations?: Record<string, string>;
}

export interface EventList {
  kind: 'EventList';
  apiVersion: typeof AUDIT_API_VERSION;
  metadata: Record<string, never>;
  items: Event[];
}
