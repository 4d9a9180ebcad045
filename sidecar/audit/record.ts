// What the pipeline knows about each request when it ends: the raw material of an audit event.
import type { UpstreamResponse } from '../forward/http.js';
import type { RequestInfo } from '../authz/request-info.js';
import type { Attributes, Decision } from '../authz/review.js';
import type { Authenticated, AuthenticationMethod, Identity } from '../identity.js';
import type { StatusError } from '../../lib/status.js';
import type { ClientRequest } from '../../lib/client-exchange.js';

/** One SubjectAccessReview the sidecar made (or answered from its cache) for a request. */
export interface Review {
  /** The user reviewed: the person, or for a request under nested impersonation, the one impersonated. */
  user: string;
  attributes: Attributes;
  decision: Decision;
}

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
  /** The decision of the last review made, the one that settled the request (a refusal stops at the first). */
  decision?: Decision;
  /** Every review made for the request, in order: nested impersonation's, the request's, a compound create's. */
  reviews: Review[];
  forwarded: boolean;
  /** The whole body (or none) reached the API server's stream; until then it cannot have decoded it. */
  bodySent?: boolean;
  responseCode: number;
  /** Why the sidecar refused or failed, in words for the security team. */
  error?: string;
  /** The Status the sidecar itself answered with, when it refused or failed the request. */
  refusal?: StatusError;
  /** The handler failed in a way nobody planned for (the API server's Panic stage). */
  crashed?: boolean;
}

/** Where each request goes, at its start, when its response starts, and when it ends. */
export interface AuditRecorder {
  /**
   * The request has arrived and nothing of it has been read yet. May watch the request body (the
   * policy may want it). Resolves when the request may go on: while the audit buffer is full in
   * block mode, that is later (back-pressure).
   */
  begin?(record: RequestRecord, req: ClientRequest): Promise<void>;
  /**
   * The API server's response headers arrived (HTTP: pass the response, whose body may be kept for
   * the event) or an upgrade was answered (code only). Long-running requests get their
   * ResponseStarted event here.
   */
  started?(record: RequestRecord, code: number, response?: UpstreamResponse): void;
  /** The request is over: its ResponseComplete (or Panic) event. Never throws. */
  record(record: RequestRecord): void;
}
