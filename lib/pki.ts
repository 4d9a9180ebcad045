import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import forge from 'node-forge';

/** A certificate and its private key, both PEM. */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

export type Usage = 'client' | 'server' | 'client-and-server';

export interface CertificateRequest {
  commonName: string;
  /** Subject O= values; for a client certificate the API server reads them as groups. */
  organizations?: string[];
  usage: Usage;
  dnsNames?: string[];
  ipAddresses?: string[];
  notBefore?: Date;
  notAfter?: Date;
  /** Validity from now when notAfter is not given. */
  validitySeconds?: number;
}

export interface CARequest {
  commonName: string;
  notBefore?: Date;
  validitySeconds?: number;
}

const DEFAULT_CA_VALIDITY_SECONDS = 10 * 365 * 24 * 3600;
const DEFAULT_LEAF_VALIDITY_SECONDS = 365 * 24 * 3600;
/** Backdating tolerates clocks that differ a little between the issuer and the verifier. */
const BACKDATE_MS = 5 * 60 * 1000;

// Key generation uses Node's native RSA: node-forge's pure-JS generator takes seconds per key.
function generateRsaKey(): { forgeKey: forge.pki.rsa.PrivateKey; keyPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  return { forgeKey: forge.pki.privateKeyFromPem(keyPem), keyPem };
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive as a DER INTEGER
  return bytes.toString('hex');
}

function validity(notBefore: Date | undefined, notAfter: Date | undefined, seconds: number): [Date, Date] {
  const start = notBefore ?? new Date(Date.now() - BACKDATE_MS);
  const end = notAfter ?? new Date(Date.now() + seconds * 1000);
  return [start, end];
}

/** The characters an ASN.1 PrintableString may hold; anything else (`@`, `_`, non-ASCII) needs UTF8String. */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

// forge writes PrintableString unless told otherwise; Go (the API server) rightly refuses a
// PrintableString holding, say, an `@`.
function field(shortName: string, value: string): forge.pki.CertificateField {
  return PRINTABLE.test(value) ? { shortName, value } : { shortName, value, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class };
}

function subject(commonName: string, organizations: string[] = []): forge.pki.CertificateField[] {
  return [...organizations.map((value) => field('O', value)), field('CN', commonName)];
}

function toPem(cert: forge.pki.Certificate): string {
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}

/** A certificate with a fresh key, a random serial and its validity; subject and extensions are the caller's. */
function newCertificate(notBefore: Date | undefined, notAfter: Date | undefined, seconds: number) {
  const { forgeKey, keyPem } = generateRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  cert.serialNumber = serialNumber();
  [cert.validity.notBefore, cert.validity.notAfter] = validity(notBefore, notAfter, seconds);
  return { cert, forgeKey, keyPem };
}

export function createCA(request: CARequest): CertificateAndKey {
  const { cert, forgeKey, keyPem } = newCertificate(request.notBefore, undefined, request.validitySeconds ?? DEFAULT_CA_VALIDITY_SECONDS);
  const name = subject(request.commonName);
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return { certPem: toPem(cert), keyPem };
}

function extendedKeyUsage(usage: Usage): Record<string, unknown> {
  return {
    name: 'extKeyUsage',
    serverAuth: usage === 'server' || usage === 'client-and-server',
    clientAuth: usage === 'client' || usage === 'client-and-server',
  };
}

function subjectAltNames(request: CertificateRequest): Record<string, unknown>[] {
  const names = [
    ...(request.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(request.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  return names.length > 0 ? [{ name: 'subjectAltName', altNames: names }] : [];
}

export function issueCertificate(ca: CertificateAndKey, request: CertificateRequest): CertificateAndKey {
  const { cert, keyPem } = newCertificate(request.notBefore, request.notAfter, request.validitySeconds ?? DEFAULT_LEAF_VALIDITY_SECONDS);
  return { certPem: signLeaf(ca, cert, request), keyPem };
}

/** A certificate for a key its holder keeps (a certificate signing request's): the CA signs the public key alone. */
export function issueCertificateForKey(ca: CertificateAndKey, publicKey: forge.pki.rsa.PublicKey, request: CertificateRequest): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serialNumber();
  [cert.validity.notBefore, cert.validity.notAfter] = validity(request.notBefore, request.notAfter, request.validitySeconds ?? DEFAULT_LEAF_VALIDITY_SECONDS);
  return signLeaf(ca, cert, request);
}

/** A new RSA key and a PKCS#10 request for it (subject CN and O), both PEM: the key stays with whoever made it. */
export function createCertificateRequest(commonName: string, organizations: string[] = []): { requestPem: string; keyPem: string } {
  const { forgeKey, keyPem } = generateRsaKey();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  csr.setSubject(subject(commonName, organizations));
  csr.sign(forgeKey, forge.md.sha256.create());
  return { requestPem: forge.pki.certificationRequestToPem(csr).replace(/\r\n/g, '\n'), keyPem };
}

function signLeaf(ca: CertificateAndKey, cert: forge.pki.Certificate, request: CertificateRequest): string {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  cert.setSubject(subject(request.commonName, request.organizations));
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    extendedKeyUsage(request.usage),
    ...subjectAltNames(request),
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return toPem(cert);
}

// ---------------------------------------------------------------------------------------------
// Reading certificates back: what a renewal or a rotation needs to decide.

export { joinPemCertificates, splitPemCertificates } from './pem.js';

export interface CertificateInfo {
  notBefore: Date;
  notAfter: Date;
  /** Lower-case hex SHA-256 of the DER, without separators. */
  sha256: string;
  isCA: boolean;
  dnsNames: string[];
  ipAddresses: string[];
}

/** Node prints SANs as `DNS:a, IP Address:127.0.0.1`; names with commas are quoted, which ours never are. */
function parseSubjectAltName(text: string | undefined): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const part of (text ?? '').split(', ')) {
    if (part.startsWith('DNS:')) dnsNames.push(part.slice(4));
    else if (part.startsWith('IP Address:')) ipAddresses.push(part.slice(11));
  }
  return { dnsNames, ipAddresses };
}

/** Reads one PEM certificate; throws on text that is not one. */
export function certificateInfo(certPem: string): CertificateInfo {
  const cert = new X509Certificate(certPem);
  return {
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    sha256: cert.fingerprint256.replace(/:/g, '').toLowerCase(),
    isCA: cert.ca,
    ...parseSubjectAltName(cert.subjectAltName),
  };
}

/** Whether the CA certificate issued and signed this certificate. */
export function isIssuedBy(certPem: string, caCertPem: string): boolean {
  try {
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caCertPem);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** Whether the private key belongs to the certificate. */
export function keyMatchesCertificate(certPem: string, keyPem: string): boolean {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}
