// What the pipeline knows about each request when it ends: the raw material of an audit event.
import type { RequestInfo } from '../authz/request-info.js';
import type { Authenticated, AuthenticationMethod, Identity } from '../identity.js';

export interface RequestRecord {
  /** The Audit-ID sent upstream, chosen by the sidecar; never the client's. */
  auditID: string;
  receivedAt: Date;
  completedAt: Date;
  method: string;
  requestURI: string;
  sourceIP: string;
  userAgent: string | undefined;
  info: RequestInfo;
  authenticated?: Authenticated;
  authenticationFailures: { method: AuthenticationMethod; reason: string }[];
  /** The identity sent upstream (after nested impersonation), when the request was forwarded. */
  impersonated?: Identity;
  nestedImpersonation: boolean;
  decision?: { allowed: boolean; reason: string };
  forwarded: boolean;
  responseCode: number;
  /** Why the sidecar refused or failed, in words for the security team. */
  error?: string;
}

/** Where each finished request goes; the audit issue's event writer implements it. */
export interface AuditRecorder {
  record(record: RequestRecord): void;
}
