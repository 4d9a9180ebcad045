// Records as the pipeline leaves them, and a logger to read, for the audit unit tests.
import { pino, type Logger } from 'pino';
import { requestInfo } from '../../../../sidecar/authz/request-info.js';
import { attributesOf } from '../../../../sidecar/authz/review.js';
import type { RequestRecord } from '../../../../sidecar/audit/record.js';
import type { Identity } from '../../../../sidecar/identity.js';

const ALLOWED = { allowed: true, reason: 'RBAC: allowed by RoleBinding "view/team-a" of ClusterRole "view" to User "alice"' };

export const alice: Identity = { username: 'alice', groups: ['dev', 'system:authenticated'], extra: {} };

export function recordFor(method: string, url: string, overrides: Partial<RequestRecord> = {}): RequestRecord {
  return {
    auditID: '6f0a3c2e-0000-4000-8000-000000000001',
    receivedAt: new Date('2026-01-02T15:04:05.123Z'),
    completedAt: new Date('2026-01-02T15:04:05.456Z'),
    method,
    requestURI: url,
    sourceIP: '127.0.0.1',
    userAgent: 'kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef',
    info: requestInfo(method, url),
    authenticationFailures: [],
    nestedImpersonation: false,
    reviews: [],
    forwarded: false,
    responseCode: 0,
    ...overrides,
  };
}

/** A request alice made that the sidecar allowed and forwarded. */
export function forwardedFor(method: string, url: string, overrides: Partial<RequestRecord> = {}): RequestRecord {
  return recordFor(method, url, {
    authenticated: { identity: alice, method: 'x509' },
    decision: ALLOWED,
    reviews: [{ user: 'alice', attributes: attributesOf(requestInfo(method, url)), decision: ALLOWED }],
    impersonated: alice,
    forwarded: true,
    bodySent: true, // the forwarder says so once the whole body (or none) is on the stream
    responseCode: 200,
    ...overrides,
  });
}

/** A logger whose lines the test can read (and that prints nothing). */
export function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}
