// Shared by the red-team suites (test/hardening/red-team*.test.ts): requests through a sidecar with
// full control over headers, the two audit logs that judge them, joined by auditID, and the person
// who may impersonate anyone.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { ControlPlane } from '../../../local-cluster/control-plane.js';
import { grantClusterWide, readAuditEvents, userSubject, waitForAuditEvents, waitForCanI, type AdminClients, type AuditEvent } from '../../../local-cluster/kube.js';
import { rawRequest, type LocalSidecar, type RawResponse } from '../../../local-cluster/sidecar.js';
import type { CertificateAndKey } from '../../../lib/pki.js';

/** The sidecar's audit event, as far as these suites read it. */
export interface SidecarEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user: { username?: string; groups?: string[] };
  impersonatedUser?: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string; apiVersion?: string };
  responseStatus?: { code?: number };
  annotations?: Record<string, string>;
}

export interface Via {
  method?: string;
  headers?: Record<string, string | string[]>;
  cert?: CertificateAndKey;
  body?: string | Buffer;
}

/** One request through the sidecar, as the person the certificate names. */
export function via(sidecar: LocalSidecar, path: string, init: Via = {}): Promise<RawResponse> {
  return rawRequest(`${sidecar.url}${path}`, {
    ca: sidecar.servingCa.certPem,
    method: init.method ?? 'GET',
    headers: init.headers ?? {},
    ...(init.cert ? { cert: init.cert } : {}),
    ...(init.body !== undefined ? { body: init.body as string } : {}),
  });
}

export function auditIDOf(response: RawResponse): string {
  const id = response.headers['audit-id'];
  assert.ok(typeof id === 'string' && id.length > 0, `the response (${response.status}) carries an Audit-ID: ${response.body.slice(0, 300)}`);
  return id;
}

async function sidecarEvents(sidecar: LocalSidecar): Promise<SidecarEvent[]> {
  const text = await readFile(sidecar.auditLog, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as SidecarEvent);
}

/** The sidecar's ResponseComplete event for the auditID, waiting a moment for the file sink. */
export async function sidecarEventFor(sidecar: LocalSidecar, auditID: string, timeoutMs = 5000): Promise<SidecarEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await sidecarEvents(sidecar)).find((e) => e.auditID === auditID && e.stage === 'ResponseComplete');
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no sidecar ResponseComplete event for ${auditID}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The API server's ResponseComplete event for the auditID; undefined when it never ran the request. */
export async function apiServerEventFor(cp: ControlPlane, auditID: string, timeoutMs = 5000): Promise<AuditEvent | undefined> {
  const events = await waitForAuditEvents(cp, (e) => e.auditID === auditID && e.stage === 'ResponseComplete', timeoutMs);
  return events[0];
}

/** Every API server event whose request URI contains the marker (for requests that carry no auditID of ours). */
export async function apiServerEventsMentioning(cp: ControlPlane, marker: string): Promise<AuditEvent[]> {
  return (await readAuditEvents(cp)).filter((e) => e.requestURI.includes(marker));
}

export const sortedGroups = (groups: readonly string[] | undefined): string[] => [...(groups ?? [])].sort();

/** Lets `user` impersonate any of these core kinds (users, groups…), with any extra and any uid, as a support desk might; resolves once the API server says so. */
export async function grantImpersonation(cp: ControlPlane, clients: AdminClients, user: string, kinds: string[]): Promise<void> {
  await grantClusterWide(
    clients,
    user,
    [
      { apiGroups: [''], resources: kinds, verbs: ['impersonate'] },
      { apiGroups: ['authentication.k8s.io'], resources: ['userextras/*', 'uids'], verbs: ['impersonate'] },
    ],
    [userSubject(user)],
  );
  await waitForCanI(cp, user, ['impersonate', 'users/anyone']);
}
