// The signer chaperone.dev/identity, run by the leader: people's client certificates through the
// Kubernetes CSR API (certificates.k8s.io/v1), so that issuing a kubeconfig does not mean holding the
// identity CA's key. Someone with `create` on CertificateSigningRequests asks; someone with `approve`
// on signers/chaperone.dev/identity approves (kubectl certificate approve, or chaperone kubeconfig
// --approve); this signs what was approved with the identity CA that signs now, or marks it Failed
// with a reason. The subject is the request's, CN and O only (username and groups, as the sidecar
// and the API server read them); system: names are refused, as the sidecar's guard refuses them.
import { Buffer } from 'node:buffer';
import type { V1CertificateSigningRequest, V1CertificateSigningRequestCondition } from '@kubernetes/client-node';
import type { KubeApi } from '../../lib/kube-api/client.js';
import { certificatesV1, type CertificatesV1 } from '../../lib/kube-api/resources.js';
import type { Logger } from '../../lib/log.js';
import { certificateInfo, issueCertificateForKey, readCertificateRequest, type CertificateAndKey, type ReadCertificateRequest } from '../../lib/pki.js';
import { describeError, isConflict, listWatch, type Watching } from '../provision/kube.js';

export const IDENTITY_SIGNER = 'chaperone.dev/identity';
/** Without spec.expirationSeconds: the `chaperone kubeconfig` default. */
export const DEFAULT_CERTIFICATE_SECONDS = 8 * 3600;
/** The longest a person's certificate lives, however long it asks for: what a revocation by name must outlast. */
export const MAX_CERTIFICATE_SECONDS = 7 * 24 * 3600;
const ALLOWED_USAGES = new Set(['client auth', 'digital signature', 'key encipherment']);
const RETRY_MS = 5000;

/** Why these names cannot be a person's, or undefined when they can. */
export function clusterNameProblem(user: string, groups: readonly string[]): string | undefined {
  if (user.startsWith('system:') || groups.some((g) => g.startsWith('system:'))) {
    return 'system: names belong to the cluster; the sidecar refuses them from a certificate (see --guard-allow)';
  }
  return undefined;
}

export type SignOutcome = { certificatePem: string } | { reason: string; message: string };

function subjectOf(csr: ReadCertificateRequest): { user: string; groups: string[] } | string {
  const user: string[] = [];
  const groups: string[] = [];
  for (const { name, value } of csr.subject) {
    if (name === 'CN') user.push(value);
    else if (name === 'O') groups.push(value);
    else return `the subject has ${name}: only CN (the username) and O (the groups) are signed`;
  }
  if (user.length !== 1 || !user[0]!.trim()) return 'the subject must have exactly one CN, the username';
  return { user: user[0]!, groups };
}

/** The request's own signature checked, or why it is refused. */
function readRequest(request: V1CertificateSigningRequest): ReadCertificateRequest | { reason: string; message: string } {
  let csr: ReadCertificateRequest;
  try {
    csr = readCertificateRequest(Buffer.from(request.spec.request, 'base64').toString('utf8'));
  } catch (err) {
    return { reason: 'BadRequest', message: `spec.request is not a PEM certificate request with an RSA key (${(err as Error).message})` };
  }
  if (!csr.selfSigned) return { reason: 'BadRequest', message: 'the certificate request is not signed by its own key with RSA and SHA-256, -384 or -512' };
  return csr;
}

/** What the signer makes of an approved request: a certificate, or why not. The CA must be able to sign. */
export function signRequest(ca: CertificateAndKey, request: V1CertificateSigningRequest, now = new Date()): SignOutcome {
  const usages = request.spec.usages ?? [];
  if (!usages.includes('client auth') || usages.some((usage) => !ALLOWED_USAGES.has(usage))) {
    return { reason: 'UnsupportedUsages', message: `usages must include "client auth" and be among ${[...ALLOWED_USAGES].join(', ')}; asked for: ${usages.join(', ') || 'none'}` };
  }
  const csr = readRequest(request);
  if ('reason' in csr) return csr;
  const subject = subjectOf(csr);
  if (typeof subject === 'string') return { reason: 'BadSubject', message: subject };
  const refused = clusterNameProblem(subject.user, subject.groups);
  if (refused) return { reason: 'SystemName', message: refused };
  const seconds = Math.min(request.spec.expirationSeconds ?? DEFAULT_CERTIFICATE_SECONDS, MAX_CERTIFICATE_SECONDS);
  const notAfter = new Date(Math.min(now.getTime() + seconds * 1000, certificateInfo(ca.certPem).notAfter.getTime()));
  const certificatePem = issueCertificateForKey(ca, csr.publicKey, {
    commonName: subject.user,
    organizations: subject.groups,
    usage: 'client',
    notAfter,
  });
  return { certificatePem };
}

function hasCondition(request: V1CertificateSigningRequest, type: string): boolean {
  return (request.status?.conditions ?? []).some((c) => c.type === type && c.status === 'True');
}

/** Approved, neither denied nor failed, and not signed yet. */
export function awaitsSigning(request: V1CertificateSigningRequest): boolean {
  return hasCondition(request, 'Approved') && !hasCondition(request, 'Denied') && !hasCondition(request, 'Failed') && !request.status?.certificate;
}

export interface IdentitySignerOptions {
  api: KubeApi;
  log: Logger;
}

export class IdentitySigner {
  private readonly certificates: CertificatesV1;
  private watching: Watching | undefined;
  private ca: CertificateAndKey | undefined;
  private stopped = false;
  /** The requests of this signer as last seen, by name. */
  private readonly requests = new Map<string, V1CertificateSigningRequest>();
  /** uid of each request being signed now. */
  private readonly inFlight = new Set<string>();
  private readonly retries = new Set<NodeJS.Timeout>();

  constructor(private readonly options: IdentitySignerOptions) {
    this.certificates = certificatesV1(options.api);
  }

  start(): void {
    const fieldSelector = `spec.signerName=${IDENTITY_SIGNER}`;
    this.watching = listWatch<V1CertificateSigningRequest>({
      api: this.options.api,
      path: '/apis/certificates.k8s.io/v1/certificatesigningrequests',
      fieldSelector,
      list: () => this.certificates.listCertificateSigningRequest({ fieldSelector }),
      onList: (items) => {
        this.requests.clear();
        for (const item of items) this.seen(item);
      },
      onEvent: (type, item) => {
        if (type === 'DELETED') this.requests.delete(item.metadata!.name!);
        else this.seen(item);
      },
      log: this.options.log,
      what: `CertificateSigningRequests for ${IDENTITY_SIGNER}`,
    });
  }

  /** The identity CA that signs now; requests that waited for one are signed. */
  useCa(ca: CertificateAndKey): void {
    this.ca = ca;
    for (const request of this.requests.values()) this.signIfDue(request);
  }

  async stop(): Promise<void> {
    for (const timer of this.retries) clearTimeout(timer);
    this.stopped = true;
    await this.watching?.stop();
  }

  private seen(request: V1CertificateSigningRequest): void {
    this.requests.set(request.metadata!.name!, request);
    this.signIfDue(request);
  }

  private signIfDue(request: V1CertificateSigningRequest): void {
    const uid = request.metadata?.uid ?? '';
    if (this.stopped || !this.ca || !awaitsSigning(request) || this.inFlight.has(uid)) return;
    this.inFlight.add(uid);
    void this.sign(this.ca, request).finally(() => this.inFlight.delete(uid));
  }

  private async sign(ca: CertificateAndKey, request: V1CertificateSigningRequest): Promise<void> {
    const name = request.metadata!.name!;
    const outcome = signRequest(ca, request);
    const status = { ...request.status };
    if ('certificatePem' in outcome) {
      status.certificate = Buffer.from(outcome.certificatePem).toString('base64');
    } else {
      const failed: V1CertificateSigningRequestCondition = { type: 'Failed', status: 'True', reason: outcome.reason, message: outcome.message, lastUpdateTime: new Date() };
      status.conditions = [...(status.conditions ?? []), failed];
    }
    try {
      await this.certificates.replaceCertificateSigningRequestStatus({ name, body: { ...request, status } });
      if ('certificatePem' in outcome) this.options.log.info({ csr: name, requestedBy: request.spec.username }, 'identity certificate signed');
      else this.options.log.warn({ csr: name, requestedBy: request.spec.username, reason: outcome.reason, message: outcome.message }, 'identity certificate request failed');
    } catch (err) {
      // A conflict: the request changed meanwhile, and its new version comes by the watch. Anything else is tried again.
      if (isConflict(err)) return;
      this.options.log.warn({ csr: name, err: describeError(err), retryMs: RETRY_MS }, 'could not write the identity certificate into the request; trying again');
      const timer = setTimeout(() => {
        this.retries.delete(timer);
        const latest = this.requests.get(name);
        if (latest) this.signIfDue(latest);
      }, RETRY_MS);
      this.retries.add(timer);
    }
  }
}
