// A CA with its rotation state, as a pure value: the CA that signs now (active), a successor that is
// already trusted but does not sign yet (pending), and predecessors that are still trusted
// (retired). Every verifier trusts the whole set, so that a rotation never leaves a window in which
// a certificate in use is not trusted:
//
//   rotate:   pending = new CA           trust = active + pending   (verifiers learn the new CA)
//   +delay:   active = new, old retired  trust = new + old          (leaves are re-issued by the new CA)
//   +overlap: old pruned                 trust = new
//
// The I/O (the Secret it lives in) is in ca-secret.ts; the clock is always a parameter.
import { certificateInfo, createCA, joinPemCertificates, type CertificateAndKey } from '../../lib/pki.js';

/** Certificates are backdated this much, for clocks that differ a little; renewal times allow for it. */
export const ISSUE_BACKDATE_MS = 5 * 60 * 1000;

export interface PendingCa {
  ca: CertificateAndKey;
  /** When it takes over signing. */
  activateAt: Date;
}

export interface RetiredCa {
  certPem: string;
  /** When it stops being trusted. */
  trustUntil: Date;
}

export interface CaSet {
  active: CertificateAndKey;
  pending?: PendingCa;
  retired: RetiredCa[];
}

export interface CaPolicy {
  /** The CN of its CAs, before `@<unix seconds>` (as Kubernetes names its self-signed CAs). */
  commonName: string;
  validityMs: number;
  /** How long a new CA is trusted before it signs: time for every verifier to learn it. */
  propagationMs: number;
  /** How long a CA stays trusted after its successor took over: time for every leaf to be re-issued. */
  overlapMs: number;
}

/** Every CA a verifier must trust now, active first; the same set always gives the same text. */
export function trustBundle(set: CaSet): string {
  return joinPemCertificates([set.active.certPem, ...(set.pending ? [set.pending.ca.certPem] : []), ...set.retired.map((r) => r.certPem)]);
}

/** When a certificate is due for renewal: once two thirds of its lifetime have passed. */
export function renewalTime(certPem: string): Date {
  const { notBefore, notAfter } = certificateInfo(certPem);
  const issued = Math.min(notBefore.getTime() + ISSUE_BACKDATE_MS, notAfter.getTime());
  return new Date(notAfter.getTime() - (notAfter.getTime() - issued) / 3);
}

export function newCa(now: Date, policy: CaPolicy): CertificateAndKey {
  return createCA({
    commonName: `${policy.commonName}@${Math.floor(now.getTime() / 1000)}`,
    notBefore: new Date(now.getTime() - ISSUE_BACKDATE_MS),
    validitySeconds: Math.round((now.getTime() - Date.now() + policy.validityMs) / 1000),
  });
}

export function newCaSet(now: Date, policy: CaPolicy): CaSet {
  return { active: newCa(now, policy), retired: [] };
}

export interface CaChange {
  set: CaSet;
  /** What happened, for the log; empty when nothing changed. */
  events: string[];
}

function promote(set: CaSet, now: Date, policy: CaPolicy): CaSet {
  const successor = set.pending!.ca;
  const trustUntil = new Date(now.getTime() + policy.overlapMs);
  return { active: successor, retired: [...set.retired, { certPem: set.active.certPem, trustUntil }] };
}

/** Explicit rotation: a new CA, trusted at once and signing after the propagation delay. */
export function beginRotation(set: CaSet, now: Date, policy: CaPolicy): CaChange {
  if (set.pending) return { set, events: [] };
  const pending = { ca: newCa(now, policy), activateAt: new Date(now.getTime() + policy.propagationMs) };
  return { set: { ...set, pending }, events: [`new CA trusted now, signing from ${pending.activateAt.toISOString()}`] };
}

/** What time alone does to a CA set: a due successor takes over, expired trust ends, an ageing CA gets a successor. */
export function advanceCaSet(set: CaSet, now: Date, policy: CaPolicy): CaChange {
  const events: string[] = [];
  let next = set;
  const activeExpired = certificateInfo(next.active.certPem).notAfter.getTime() <= now.getTime();
  if (next.pending && (next.pending.activateAt.getTime() <= now.getTime() || activeExpired)) {
    next = promote(next, now, policy);
    events.push(`the new CA signs from now on; the previous one stays trusted until ${next.retired.at(-1)!.trustUntil.toISOString()}`);
  } else if (activeExpired) {
    // Nothing can bridge an expired CA: every leaf it signed is expired too.
    next = { active: newCa(now, policy), retired: next.retired };
    events.push('the CA had expired: replaced at once, without an overlap');
  }
  const retired = next.retired.filter(
    (r) => r.trustUntil.getTime() > now.getTime() && certificateInfo(r.certPem).notAfter.getTime() > now.getTime(),
  );
  if (retired.length !== next.retired.length) {
    events.push(`${next.retired.length - retired.length} previous CA(s) no longer trusted`);
    next = { ...next, retired };
  }
  if (!next.pending && renewalTime(next.active.certPem).getTime() <= now.getTime()) {
    const rotation = beginRotation(next, now, policy);
    next = rotation.set;
    events.push(`the CA nears its end: ${rotation.events.join('')}`);
  }
  return { set: next, events };
}

/** The earliest time at which advanceCaSet would change something. */
export function nextCaDeadline(set: CaSet): Date {
  const times = [renewalTime(set.active.certPem).getTime(), certificateInfo(set.active.certPem).notAfter.getTime()];
  if (set.pending) times.push(set.pending.activateAt.getTime());
  for (const r of set.retired) times.push(Math.min(r.trustUntil.getTime(), certificateInfo(r.certPem).notAfter.getTime()));
  return new Date(Math.min(...times));
}
