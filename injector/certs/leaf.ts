// Serving certificates (the injector's own and the sidecars'): what to issue, and whether the one in
// place must be replaced. Pure, with the clock as a parameter.
import { X509Certificate } from 'node:crypto';
import { certificateInfo, isIssuedBy, issueCertificate, keyMatchesCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { ISSUE_BACKDATE_MS, renewalTime } from './ca-set.js';

export interface LeafSpec {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  validityMs: number;
}

/** A serving certificate (EKU serverAuth only), never outliving the CA that signs it. */
export function issueServingLeaf(ca: CertificateAndKey, spec: LeafSpec, now: Date): CertificateAndKey {
  const caEnd = certificateInfo(ca.certPem).notAfter.getTime();
  return issueCertificate(ca, {
    commonName: spec.commonName,
    usage: 'server',
    dnsNames: spec.dnsNames,
    ipAddresses: spec.ipAddresses,
    notBefore: new Date(now.getTime() - ISSUE_BACKDATE_MS),
    notAfter: new Date(Math.min(now.getTime() + spec.validityMs, caEnd)),
  });
}

function namesMatch(certPem: string, spec: LeafSpec): boolean {
  const cert = new X509Certificate(certPem);
  const { dnsNames, ipAddresses } = certificateInfo(certPem);
  if (dnsNames.length !== new Set(spec.dnsNames).size || ipAddresses.length !== new Set(spec.ipAddresses).size) return false;
  return spec.dnsNames.every((name) => cert.checkHost(name, { wildcards: false }) !== undefined) && spec.ipAddresses.every((ip) => cert.checkIP(ip) !== undefined);
}

/** Why the certificate in place must be replaced, or undefined when it may stay. */
export function leafRenewalReason(current: Partial<CertificateAndKey> | undefined, ca: CertificateAndKey, spec: LeafSpec, now: Date): string | undefined {
  if (!current?.certPem || !current.keyPem) return 'there is none';
  try {
    certificateInfo(current.certPem);
  } catch {
    return 'the certificate cannot be read';
  }
  if (!keyMatchesCertificate(current.certPem, current.keyPem)) return 'the key does not belong to the certificate';
  if (!isIssuedBy(current.certPem, ca.certPem)) return 'it was signed by another CA than the one that signs now';
  if (!namesMatch(current.certPem, spec)) return 'its names are not the ones wanted';
  if (renewalTime(current.certPem).getTime() <= now.getTime()) return `it is due for renewal (it expires ${certificateInfo(current.certPem).notAfter.toISOString()})`;
  return undefined;
}
