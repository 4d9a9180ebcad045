// Impersonation both ways: a client's own Impersonate-* headers in (kubectl --as), judged by the API
// server's rules; the sidecar's Impersonate-* headers out.
import type { OutgoingHttpHeaders } from 'node:http';
import type { ImpersonationMode } from '../lib/access-policy.js';
import { ORIGINAL_USER_INFO_EXTRA, type Identity } from './identity.js';
import type { AccessReviewer, ResourceAttributes } from './authz/review.js';
import { badRequest, forbiddenBecause } from '../lib/status.js';
import { forbidden } from './authz/forbidden.js';

/** What a client asked to become. */
export interface ImpersonationRequest {
  username: string;
  uid?: string;
  groups: string[];
  extra: Record<string, string[]>;
}

const EXTRA_PREFIX = 'impersonate-extra-';
const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';

/** Node reads header bytes as latin1; identities are UTF-8. */
function fromWire(value: string): string {
  return Buffer.from(value, 'latin1').toString('utf8');
}

function toWire(value: string): string {
  return Buffer.from(value, 'utf8').toString('latin1');
}

/** Reads the client's Impersonate-* headers in any letter case; undefined when there are none. */
export function readImpersonationRequest(rawHeaders: readonly string[]): ImpersonationRequest | undefined {
  let username: string | undefined;
  let uid: string | undefined;
  const groups: string[] = [];
  // A Map: keys are the client's, and "constructor" or "__proto__" must be keys like any other.
  const extra = new Map<string, string[]>();
  let any = false;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const value = fromWire(rawHeaders[i + 1]!);
    // The API server takes the first of two, a reader of the last would take the other: neither is said.
    if (name === 'impersonate-user') {
      if (username !== undefined) throw badRequest('two Impersonate-User headers: say whom to impersonate once');
      any = true;
      username = value;
    } else if (name === 'impersonate-uid') {
      if (uid !== undefined) throw badRequest('two Impersonate-Uid headers: say which uid to impersonate once');
      any = true;
      uid = value;
    } else if (name === 'impersonate-group') {
      any = true;
      groups.push(value);
    } else if (name.startsWith(EXTRA_PREFIX)) {
      any = true;
      const key = unescapeExtraKey(name.slice(EXTRA_PREFIX.length));
      const values = extra.get(key);
      if (values) values.push(value);
      else extra.set(key, [value]);
    }
  }
  if (!any) return undefined;
  if (username === undefined || username === '') {
    const asked = [groups.length > 0 && 'groups', uid !== undefined && 'uid', extra.size > 0 && 'extra'].filter(Boolean);
    throw badRequest(`requested ${asked.join(', ') || 'impersonation'} without impersonating a user`);
  }
  if (extra.has(ORIGINAL_USER_INFO_EXTRA)) {
    throw forbiddenBecause(`the extra ${ORIGINAL_USER_INFO_EXTRA} is set by chaperone and cannot be impersonated`);
  }
  return { username, ...(uid !== undefined ? { uid } : {}), groups, extra: Object.fromEntries(extra) };
}

function unescapeExtraKey(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return encoded;
  }
}

// RFC 9110 tchar, less '%', which is the escape; upper-case letters are escaped too because the API
// server lower-cases header names before it unescapes them.
const PLAIN_KEY_BYTE = /^[a-z0-9!#$&'*+\-.^_`|~]$/;

/** Percent-encodes an extra key so it survives as a header name and comes out whole at the API server. */
export function escapeExtraKey(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += PLAIN_KEY_BYTE.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function isServiceAccount(username: string): boolean {
  return serviceAccountOf(username) !== undefined;
}

// apimachinery's validation: a namespace is a DNS-1123 label, a service account's name a DNS-1123 subdomain.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const isDnsLabel = (text: string) => text.length <= 63 && DNS_LABEL.test(text);
const isDnsSubdomain = (text: string) => text.length <= 253 && text.split('.').every((label) => DNS_LABEL.test(label));

/**
 * The API server's serviceaccount.SplitUsername: a name that is not a valid namespace and service
 * account name is a user's, whose impersonation needs `impersonate users`, and gets no service
 * account groups.
 */
function serviceAccountOf(username: string): { namespace: string; name: string } | undefined {
  if (!username.startsWith(SERVICE_ACCOUNT_PREFIX)) return undefined;
  const [namespace, name, ...rest] = username.slice(SERVICE_ACCOUNT_PREFIX.length).split(':');
  if (namespace === undefined || name === undefined || rest.length > 0) return undefined;
  return isDnsLabel(namespace) && isDnsSubdomain(name) ? { namespace, name } : undefined;
}

/** The checks the API server makes before it lets someone impersonate (filters/impersonation.go). */
export function impersonationChecks(request: ImpersonationRequest): ResourceAttributes[] {
  const checks: ResourceAttributes[] = [];
  const serviceAccount = serviceAccountOf(request.username);
  checks.push(
    serviceAccount
      ? { verb: 'impersonate', group: '', resource: 'serviceaccounts', namespace: serviceAccount.namespace, name: serviceAccount.name }
      : { verb: 'impersonate', group: '', resource: 'users', name: request.username },
  );
  for (const group of request.groups) checks.push({ verb: 'impersonate', group: '', resource: 'groups', name: group });
  for (const [key, values] of Object.entries(request.extra)) {
    for (const value of values) {
      checks.push({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: key, name: value });
    }
  }
  if (request.uid !== undefined) checks.push({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'uids', name: request.uid });
  return checks;
}

/** The identity the API server would make of an impersonation request it allowed. */
export function impersonatedIdentity(request: ImpersonationRequest, original: Identity): Identity {
  const serviceAccount = serviceAccountOf(request.username);
  let groups = [...request.groups];
  if (serviceAccount && groups.length === 0) groups = ['system:serviceaccounts', `system:serviceaccounts:${serviceAccount.namespace}`];
  // As the API server: anonymous is always unauthenticated; anyone else is authenticated, unless
  // impersonated into system:unauthenticated.
  if (request.username === 'system:anonymous') {
    if (!groups.includes('system:unauthenticated')) groups.push('system:unauthenticated');
  } else if (!groups.includes('system:authenticated') && !groups.includes('system:unauthenticated')) {
    groups.push('system:authenticated');
  }
  return {
    username: request.username,
    ...(request.uid !== undefined ? { uid: request.uid } : {}),
    groups,
    extra: { ...request.extra, [ORIGINAL_USER_INFO_EXTRA]: [JSON.stringify(original)] },
  };
}

/**
 * Every check must be allowed for the authenticated person; the first refusal is a 403 worded as
 * the API server's.
 */
export async function authorizeImpersonation(reviewer: AccessReviewer, original: Identity, request: ImpersonationRequest): Promise<Identity> {
  for (const check of impersonationChecks(request)) {
    const decision = await reviewer.review(original, { resource: check });
    if (!decision.allowed) {
      throw forbidden(
        original.username,
        {
          isResourceRequest: true,
          path: '',
          verb: check.verb,
          apiPrefix: 'api',
          apiGroup: check.group,
          apiVersion: '',
          namespace: check.namespace ?? '',
          resource: check.resource,
          subresource: check.subresource ?? '',
          name: check.name ?? '',
          parts: [],
        },
        decision.reason,
      );
    }
  }
  return impersonatedIdentity(request, original);
}

/**
 * Names and values must survive as header lines: no control characters, nothing empty, and no
 * spaces at either end (the API server trims those, and would see another name).
 */
function assertSendable(what: string, value: string): void {
   
  if (value === '' || /[\u0000-\u001f\u007f]|^ | $/.test(value)) throw badRequest(`the ${what} ${JSON.stringify(value)} cannot be sent as an impersonation header`);
}

/**
 * Whom the API server will see the request as, for the audit event's impersonatedUser: the identity
 * sent, except that under constrained impersonation a service account is sent by name alone, and the
 * API server gives it the groups of every service account of its namespace, no uid and no extras.
 */
export function asForwarded(identity: Identity, mode: ImpersonationMode): Identity {
  const account = mode === 'constrained' ? serviceAccountOf(identity.username) : undefined;
  if (!account) return identity;
  return { username: identity.username, groups: ['system:serviceaccounts', `system:serviceaccounts:${account.namespace}`, 'system:authenticated'], extra: {} };
}

/**
 * The Impersonate-* headers that make the API server see this identity. Under constrained
 * impersonation a service account is impersonated by name alone (the API server refuses more): it
 * gets the groups the API server gives every service account, and no extras.
 */
export function impersonationHeaders(identity: Identity, mode: ImpersonationMode): OutgoingHttpHeaders {
  assertSendable('username', identity.username);
  const headers: OutgoingHttpHeaders = { 'impersonate-user': toWire(identity.username) };
  if (mode === 'constrained' && isServiceAccount(identity.username)) return headers;
  if (identity.groups.length > 0) {
    identity.groups.forEach((group) => assertSendable('group', group));
    headers['impersonate-group'] = identity.groups.map(toWire);
  }
  if (identity.uid) {
    assertSendable('uid', identity.uid);
    headers['impersonate-uid'] = toWire(identity.uid);
  }
  for (const [key, values] of Object.entries(identity.extra)) {
    if (values.length === 0) continue;
    values.forEach((value) => assertSendable(`value of extra ${key}`, value));
    headers[`${EXTRA_PREFIX}${escapeExtraKey(key)}`] = values.map(toWire);
  }
  return headers;
}
