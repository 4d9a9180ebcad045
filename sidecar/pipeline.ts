// The request path, top to bottom:
// authenticate -> read nested impersonation -> guard -> access policy -> authorize -> sanitise + impersonate -> forward -> record.
// Plain requests and upgraded connections (exec, attach, port-forward) go through the same decision.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { Logger } from '../lib/log.js';
import { compoundCreate, isLongRunning } from './authz/classify.js';
import { requestInfo, type RequestInfo } from './authz/request-info.js';
import { attributesOf, type AccessReviewer } from './authz/review.js';
import { AuthenticationFailed, type ChainOutcome } from './authn/chain.js';
import type { AuditRecorder, RequestRecord } from './audit/record.js';
import { bodyFraming } from './forward/framing.js';
import { NotForwarded, UnauthorizedForward, type ForwardRequest } from './forward/http.js';
import type { UpgradeRequest } from './forward/upgrade.js';
import { guardAuthenticated, guardEffective, type GuardPolicy } from './guard.js';
import type { Authenticated, Identity } from './identity.js';
import type { ImpersonationMode } from '../lib/access-policy.js';
import { asForwarded, authorizeImpersonation, impersonationHeaders, readImpersonationRequest, type ImpersonationRequest } from './impersonation.js';
import type { SidecarMetrics } from './metrics.js';
import { sanitiseHeaders } from './sanitise.js';
import { badRequest, serviceUnavailable, statusOf, StatusError, tooLarge, tooManyRequests, writeStatus, writeStatusToSocket } from '../lib/status.js';
import { forbidden } from './authz/forbidden.js';
import { responseGone, type ClientRequest, type ClientResponse } from '../lib/client-exchange.js';

/** Who is asking: the authenticator chain (authn/chain.ts). Throws AuthenticationFailed. */
export interface Authenticate {
  authenticate(req: ClientRequest): Promise<ChainOutcome>;
}

/** The namespace's access policy and the pod's read-only mark (access.ts): throw the Status that refuses. */
export interface PolicyGate {
  mode(): ImpersonationMode;
  checkNested(request: ImpersonationRequest): void;
  /** upgrade: the client asked to upgrade the connection (websocket, SPDY): a stream both ways, not a read. */
  check(identity: Identity, info: RequestInfo, upgrade?: boolean): void;
}

/** The scoped service account's token, which every forwarded request carries. */
export interface TokenSource {
  bearerToken(): string | undefined;
}

/** How an authorized request leaves (forward/http.ts): one stream of its own to the API server. */
export interface RequestForwarder {
  forward(request: ForwardRequest): void;
}

/** How an authorized upgrade leaves (forward/upgrade.ts): one connection of its own. */
export interface UpgradeRelay {
  forward(upgrade: UpgradeRequest): void;
  closeAll(): void;
}

/**
 * The stages, in the order a request meets them: authenticate, guard (its allow and deny lists),
 * policy gate, review (SubjectAccessReview), token, forward; and the audit recorder, which sees each
 * request begin, start and end.
 */
export interface PipelineOptions {
  authenticators: Authenticate;
  reviewer: AccessReviewer;
  guard: GuardPolicy;
  access: PolicyGate;
  token: TokenSource;
  http: RequestForwarder;
  upgrades: UpgradeRelay;
  audit: AuditRecorder;
  metrics: SidecarMetrics;
  log: Logger;
  /** How long the API server may take to start answering a request that is not long-running. */
  upstreamTimeoutMs: number;
  maxRequestBodyBytes: number;
  maxUpgrades: number;
}

/** A request target that is not a path, or a body on a request to upgrade: refused before anything else. */
function refuseMalformedTarget(req: ClientRequest, record: RequestRecord): void {
  if (!record.requestURI.startsWith('/')) throw badRequest('chaperone accepts only a path as the request target, not a full URL');
  if (bodyFraming(req) !== 'none' && req.headers.upgrade !== undefined && req.headers.connection?.toLowerCase().includes('upgrade')) {
    throw badRequest('chaperone accepts no body on a request to upgrade the connection');
  }
}

/** The reviewer, with every review it makes for this request kept in its record. */
function recordingReviews(reviewer: AccessReviewer, record: RequestRecord): AccessReviewer {
  return {
    review: async (identity, attributes) => {
      const decision = await reviewer.review(identity, attributes);
      record.reviews.push({ user: identity.username, attributes, decision });
      record.decision = decision;
      return decision;
    },
  };
}

async function authorize(reviewer: AccessReviewer, identity: Identity, info: RequestInfo): Promise<void> {
  const decision = await reviewer.review(identity, attributesOf(info));
  if (!decision.allowed) throw forbidden(identity.username, info, decision.reason);
}

/** A stream being relayed, so shutdown can end it cleanly instead of cutting it. */
interface Streaming {
  res: ClientResponse;
  upstream: Readable;
}

export class Pipeline {
  private readonly streaming = new Set<Streaming>();
  /** Upgrade requests from arrival until their connection closes: deciding, relaying, or answered. */
  private upgradesInProgress = 0;
  /** Forwarded requests whose stream to the API server is still open: settled when it closes. */
  private readonly upstreamOpen = new WeakMap<RequestRecord, Promise<void>>();

  private guard: GuardPolicy;
  private audit: AuditRecorder;
  /** Each request's recorder, the one in use when it arrived. */
  private readonly recorders = new WeakMap<RequestRecord, AuditRecorder>();
  /** How many requests each recorder began and has not recorded yet; drained is called at none after it was replaced. */
  private readonly openRecords = new Map<AuditRecorder, { count: number; drained?: () => void }>();
  private begun = 0;

  constructor(private readonly options: PipelineOptions) {
    this.guard = options.guard;
    this.audit = options.audit;
  }

  /** Another installation configuration's guard lists, for the requests that arrive from now on. */
  useGuard(guard: GuardPolicy): void {
    this.guard = guard;
  }

  /**
   * Another audit recorder, for the requests that arrive from now on; those under way are recorded
   * by the one they began with. Resolves once the last of those is recorded.
   */
  useAudit(next: AuditRecorder): Promise<void> {
    const previous = this.audit;
    this.audit = next;
    const open = this.openRecords.get(previous);
    if (!open || open.count === 0) return Promise.resolve();
    return new Promise((resolve) => (open.drained = resolve));
  }

  /** Requests and upgrades that have arrived since the sidecar started. */
  get requestsBegun(): number {
    return this.begun;
  }

  private auditOf(record: RequestRecord): AuditRecorder {
    return this.recorders.get(record) ?? this.audit;
  }

  readonly handle = (req: ClientRequest, res: ClientResponse): void => {
    const record = this.startRecord(req);
    // A request left to finish upstream after its client went away is recorded once the API server
    // settled it (bounded by the upstream timeout), with what the API server answered.
    res.once('close', () => {
      // Nothing answered yet: the client went away, which the API server counts as a 500 (its
      // audit event says so too); Node's statusCode would read 200.
      const code = res.headersSent ? res.statusCode : 500;
      const upstream = this.upstreamOpen.get(record);
      if (!upstream) return this.finish(record, code);
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.upstreamTimeoutMs)));
      void Promise.race([upstream, bound]).then(() => {
        clearTimeout(timer);
        this.finish(record, code);
      });
    });
    this.decide(req, record)
      .then((identityHeaders) => this.forward(req, res, record, identityHeaders))
      .catch((err: unknown) => this.refuse(res, record, err));
  };

  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const record = this.startRecord(req);
    let code = 0;
    let relayed = false; // then the relay says when it is over (the API server may answer after the client left)
    socket.once('close', () => relayed || this.finish(record, code));
    const refuse = (err: unknown) => {
      const status = this.statusFor(err, record);
      code = status.code;
      writeStatusToSocket(socket, status, record.auditID);
    };
    // Counted from arrival, not from the 101: many arriving at once would all pass while deciding.
    if (this.upgradesInProgress >= this.options.maxUpgrades) {
      refuse(tooManyRequests(`chaperone already relays ${this.options.maxUpgrades} upgraded connections (--max-upgrades)`));
      return;
    }
    this.upgradesInProgress++;
    socket.once('close', () => this.upgradesInProgress--);
    this.decide(req, record)
      .then((identityHeaders) => {
        if (socket.destroyed) {
          record.error = 'the client went away before the connection was forwarded';
          return;
        }
        record.forwarded = true;
        this.options.metrics.openUpgrades.inc();
        socket.once('close', () => this.options.metrics.openUpgrades.dec());
        this.options.upgrades.forward({
          req,
          socket,
          head,
          headers: { ...sanitiseHeaders(req.rawHeaders), ...identityHeaders },
          identityHeaders,
          onResponse: (statusCode) => {
            code = statusCode;
            this.auditOf(record).started?.(record, statusCode);
          },
          timeoutMs: this.options.upstreamTimeoutMs,
          onError: refuse,
          onClose: () => this.finish(record, code),
        });
        relayed = true;
      })
      .catch(refuse);
  };

  /** Who is asking, may they, and as whom the request goes upstream: the identity headers to send. */
  private async decide(req: ClientRequest, record: RequestRecord): Promise<OutgoingHttpHeaders> {
    await this.auditOf(record).begin?.(record, req); // waits while the audit buffer is full (block mode)
    refuseMalformedTarget(req, record);
    const authenticated = await this.authenticate(req, record);
    const reviewer = recordingReviews(this.options.reviewer, record);
    const effective = await this.effectiveIdentity(req, record, authenticated, reviewer);

    const create = compoundCreate(record.info);
    const { access } = this.options;
    const upgrade = req.headers.upgrade !== undefined;
    access.check(effective, record.info, upgrade);
    if (create) access.check(effective, create, upgrade);
    await authorize(reviewer, effective, record.info);
    if (create) await authorize(reviewer, effective, create);

    const token = this.options.token.bearerToken();
    if (!token) throw serviceUnavailable('chaperone has no service-account token to reach the API server with');
    record.impersonated = asForwarded(effective, access.mode());
    return { ...impersonationHeaders(effective, access.mode()), authorization: `Bearer ${token}`, 'audit-id': record.auditID };
  }

  /** The person, or whom she impersonates (kubectl --as) once she may: each past the guard. */
  private async effectiveIdentity(req: ClientRequest, record: RequestRecord, authenticated: Authenticated, reviewer: AccessReviewer): Promise<Identity> {
    const nested = readImpersonationRequest(req.rawHeaders);
    record.nestedImpersonation = nested !== undefined;
    if (nested) this.options.access.checkNested(nested);
    guardAuthenticated(authenticated, this.guard);
    const effective = nested ? await authorizeImpersonation(reviewer, authenticated.identity, nested) : authenticated.identity;
    guardEffective(effective, this.guard);
    return effective;
  }

  private async authenticate(req: ClientRequest, record: RequestRecord): Promise<Authenticated> {
    const { metrics } = this.options;
    const countFailures = (failures: RequestRecord['authenticationFailures']) => {
      record.authenticationFailures = failures;
      failures.forEach((f) => metrics.authentications.inc({ method: f.method, outcome: 'failure' }));
    };
    try {
      const outcome = await this.options.authenticators.authenticate(req);
      countFailures(outcome.failures);
      metrics.authentications.inc({ method: outcome.authenticated.method, outcome: 'success' });
      record.authenticated = outcome.authenticated;
      return outcome.authenticated;
    } catch (err) {
      if (err instanceof AuthenticationFailed) countFailures(err.failures);
      throw err;
    }
  }

  private forward(req: ClientRequest, res: ClientResponse, record: RequestRecord, identityHeaders: OutgoingHttpHeaders): void {
    const { metrics, maxRequestBodyBytes } = this.options;
    // The client may have gone while the decision was being made: then nothing goes upstream
    // (a watch opened for nobody would stream until the API server's own timeout).
    if (responseGone(res) || req.socket.destroyed) {
      record.error = 'the client went away before the request was forwarded';
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxRequestBodyBytes) throw tooLarge(`the request body is larger than ${maxRequestBodyBytes} bytes`);

    const longRunning = isLongRunning(record.info);
    const started = process.hrtime.bigint();
    let upstreamClosed = () => undefined as void;
    const settled = new Promise<void>((resolve) => (upstreamClosed = resolve));
    this.options.http.forward({
      req,
      res,
      maxBodyBytes: maxRequestBodyBytes,
      headers: { ...sanitiseHeaders(req.rawHeaders), ...identityHeaders },
      identityHeaders,
      longRunning,
      timeoutMs: this.options.upstreamTimeoutMs,
      onResponse: (upstream) => {
        this.auditOf(record).started?.(record, upstream.statusCode, upstream);
        metrics.upstreamLatency.observe({ verb: record.info.verb }, Number(process.hrtime.bigint() - started) / 1e9);
        if (!longRunning) return;
        const entry = { res, upstream: upstream.body };
        this.streaming.add(entry);
        metrics.openWatches.inc();
        res.once('close', () => {
          this.streaming.delete(entry);
          metrics.openWatches.dec();
        });
      },
      onOpened: () => this.upstreamOpen.set(record, settled),
      onForwarded: () => (record.forwarded = true),
      onUpstreamClosed: () => upstreamClosed(),
      onBodySent: () => (record.bodySent = true),
      onError: (err) => this.refuse(res, record, err),
    });
  }

  private startRecord(req: ClientRequest): RequestRecord {
    this.begun++;
    const requestURI = req.url ?? '/';
    const record: RequestRecord = {
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
      reviews: [],
      forwarded: false,
      responseCode: 0,
    };
    this.recorders.set(record, this.audit);
    const open = this.openRecords.get(this.audit) ?? { count: 0 };
    open.count++;
    this.openRecords.set(this.audit, open);
    return record;
  }

  private refuse(res: ClientResponse, record: RequestRecord, err: unknown): void {
    if (res.writableEnded) return;
    writeStatus(res, this.statusFor(err, record), record.auditID);
  }

  private statusFor(err: unknown, record: RequestRecord): StatusError {
    if (err instanceof UnauthorizedForward || err instanceof NotForwarded) record.forwarded = false;
    const planned = err instanceof StatusError;
    record.error = planned ? err.internal : (err as Error).message;
    // An error on the way to or from the API server is the connection's; any other is nothing planned for (the API server's Panic stage).
    const status = planned || !record.forwarded ? statusOf(err) : serviceUnavailable(`chaperone could not reach the API server: ${(err as Error).message}`);
    if (!planned && !record.forwarded) record.crashed = true;
    record.refusal = status;
    if (status.code >= 500) this.options.log.error({ auditID: record.auditID, err: record.error }, 'request failed');
    return status;
  }

  private finish(record: RequestRecord, responseCode: number): void {
    record.completedAt = new Date();
    record.responseCode = responseCode;
    this.options.metrics.requests.inc({ code: String(responseCode), verb: record.info.verb });
    const recorder = this.auditOf(record);
    recorder.record(record);
    const open = this.openRecords.get(recorder)!;
    if (--open.count > 0) return;
    this.openRecords.delete(recorder);
    open.drained?.();
  }

  /** Ends every watch and log stream as a clean end of stream, and closes upgraded connections. */
  endStreams(): void {
    for (const { res, upstream } of this.streaming) {
      upstream.unpipe(res);
      res.end();
      upstream.destroy();
    }
    this.options.upgrades.closeAll();
  }

}
