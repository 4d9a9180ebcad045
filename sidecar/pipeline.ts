// The request path, top to bottom:
// authenticate -> read nested impersonation -> guard -> authorise -> sanitise + impersonate -> forward -> record.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from '../lib/log.js';
import { requestInfo, type RequestInfo } from './authz/request-info.js';
import { attributesOf, type AccessReviewer } from './authz/review.js';
import { AuthenticationFailed, type AuthenticatorChain } from './authn/chain.js';
import type { AuditRecorder, RequestRecord } from './audit/record.js';
import { HttpForwarder, UnauthorisedForward } from './forward/http.js';
import type { Upstream } from './forward/upstream.js';
import { guardAuthenticated, guardEffective, type GuardPolicy } from './guard.js';
import { authorizeImpersonation, impersonationHeaders, readImpersonationRequest } from './impersonation.js';
import { sanitiseHeaders } from './sanitise.js';
import { badRequest, forbidden, internalError, serviceUnavailable, StatusError, writeStatus } from './status.js';

export interface PipelineOptions {
  authenticators: AuthenticatorChain;
  reviewer: AccessReviewer;
  guard: GuardPolicy;
  upstream: Upstream;
  audit: AuditRecorder;
  log: Logger;
  /** Timeout for requests that are not long-running. */
  upstreamTimeoutMs: number;
}

/** The API server's long-running requests: never cut by a timeout. */
export function isLongRunning(info: RequestInfo): boolean {
  return info.verb === 'watch' || info.verb === 'proxy' || ['attach', 'exec', 'proxy', 'log', 'portforward'].includes(info.subresource);
}

export class Pipeline {
  private readonly forwarder: HttpForwarder;

  constructor(private readonly options: PipelineOptions) {
    this.forwarder = new HttpForwarder(options.upstream);
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const record = this.startRecord(req);
    res.once('close', () => this.finish(record, res));
    this.run(req, res, record).catch((err: unknown) => this.refuse(res, record, err));
  };

  private async run(req: IncomingMessage, res: ServerResponse, record: RequestRecord): Promise<void> {
    if (!record.requestURI.startsWith('/')) throw badRequest('chaperone accepts only a path as the request target, not a full URL');
    const { authenticated, failures } = await this.options.authenticators.authenticate(req);
    record.authenticated = authenticated;
    record.authenticationFailures = failures;

    const nested = readImpersonationRequest(req.rawHeaders);
    record.nestedImpersonation = nested !== undefined;
    guardAuthenticated(authenticated, this.options.guard);
    const effective = nested ? await authorizeImpersonation(this.options.reviewer, authenticated.identity, nested) : authenticated.identity;
    guardEffective(effective, this.options.guard);

    const decision = await this.options.reviewer.review(effective, attributesOf(record.info));
    record.decision = decision;
    if (!decision.allowed) throw forbidden(effective.username, record.info, decision.reason);

    const token = this.options.upstream.bearerToken();
    if (!token) throw serviceUnavailable('chaperone has no service-account token to reach the API server with');
    const identityHeaders: OutgoingHttpHeaders = {
      ...impersonationHeaders(effective),
      authorization: `Bearer ${token}`,
      'audit-id': record.auditID,
    };
    record.impersonated = effective;
    record.forwarded = true;
    this.forwarder.forward({
      req,
      res,
      headers: { ...sanitiseHeaders(req.rawHeaders), ...identityHeaders },
      identityHeaders,
      timeoutMs: isLongRunning(record.info) ? undefined : this.options.upstreamTimeoutMs,
      onError: (err) => this.refuse(res, record, err),
    });
  }

  private startRecord(req: IncomingMessage): RequestRecord {
    const requestURI = req.url ?? '/';
    return {
      auditID: randomUUID(),
      receivedAt: new Date(),
      completedAt: new Date(),
      method: req.method ?? 'GET',
      requestURI,
      sourceIP: req.socket.remoteAddress ?? '',
      userAgent: req.headers['user-agent'],
      info: requestInfo(req.method ?? 'GET', requestURI),
      authenticationFailures: [],
      nestedImpersonation: false,
      forwarded: false,
      responseCode: 0,
    };
  }

  private refuse(res: ServerResponse, record: RequestRecord, err: unknown): void {
    if (err instanceof UnauthorisedForward) record.forwarded = false;
    const status = this.toStatusError(err, record);
    record.error = err instanceof AuthenticationFailed ? `authentication failed: ${err.message}` : (err as Error).message;
    if (status.code >= 500) this.options.log.error({ auditID: record.auditID, err: record.error }, 'request failed');
    writeStatus(res, status, record.auditID);
  }

  private toStatusError(err: unknown, record: RequestRecord): StatusError {
    if (err instanceof AuthenticationFailed) return err.status;
    if (err instanceof StatusError) return err;
    if (err instanceof UnauthorisedForward) return internalError('chaperone stopped a request on its way out that was not the one it authorised');
    if (record.forwarded) return serviceUnavailable(`chaperone could not reach the API server: ${(err as Error).message}`);
    return internalError('chaperone failed to handle the request');
  }

  private finish(record: RequestRecord, res: ServerResponse): void {
    record.completedAt = new Date();
    record.responseCode = res.statusCode;
    this.options.audit.record(record);
  }

  close(): void {
    this.forwarder.close();
  }
}
