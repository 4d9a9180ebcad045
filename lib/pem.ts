// PEM certificate bundles as text: split and joined without parsing a certificate, so that a program
// that needs only this (the sidecar reading its identity CA bundle) does not load lib/pki.ts.

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificates in a bundle, in order, each ending in a newline. */
export function splitPemCertificates(bundle: string): string[] {
  return [...bundle.matchAll(PEM_CERTIFICATE)].map((match) => `${match[0]}\n`);
}

/** PEM certificates as one bundle, without duplicates, in the order given. */
export function joinPemCertificates(certificates: readonly string[]): string {
  const seen = new Set<string>();
  const unique: string[] = [];
  for (const pem of certificates.flatMap(splitPemCertificates)) {
    const key = pem.replace(/\s+/g, '');
    if (!seen.has(key)) unique.push(pem);
    seen.add(key);
  }
  return unique.join('');
}
