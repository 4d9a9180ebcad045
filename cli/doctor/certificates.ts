// Judging a CA bundle as a verifier would use it: it must hold certificates, all readable, and at
// least one valid now.
import { certificateInfo, splitPemCertificates, type CertificateInfo } from '../../lib/pki.js';

export type BundleVerdict = { usable: true; summary: string; certificates: CertificateInfo[] } | { usable: false; problem: string };

const day = (date: Date) => date.toISOString().slice(0, 10);

export function judgeBundle(pem: string | undefined, now: Date): BundleVerdict {
  const pems = splitPemCertificates(pem ?? '');
  if (pems.length === 0) return { usable: false, problem: 'holds no PEM certificate' };
  let certificates: CertificateInfo[];
  try {
    certificates = pems.map(certificateInfo);
  } catch {
    return { usable: false, problem: 'holds a certificate that cannot be read' };
  }
  const valid = certificates.filter((c) => c.notBefore <= now && now < c.notAfter);
  if (valid.length === 0) {
    const last = new Date(Math.max(...certificates.map((c) => c.notAfter.getTime())));
    return { usable: false, problem: last <= now ? `holds only expired certificates (the last expired ${last.toISOString()})` : 'holds no certificate valid yet' };
  }
  const until = day(new Date(Math.max(...valid.map((c) => c.notAfter.getTime()))));
  const count = certificates.length === 1 ? '1 CA' : `${certificates.length} CAs (a rotation is under way or ending)`;
  return { usable: true, summary: `${count}, valid until ${until}`, certificates };
}
