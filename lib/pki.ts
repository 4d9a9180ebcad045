// X.509 certificates and PKCS#10 requests, written with lib/der.ts and signed with Node's crypto
// (RSA 2048, SHA-256): Node makes the keys and the signatures natively. node-forge did this before,
// with its own RSA in JavaScript: 4 MiB of the idle injector (docs/benchmarks.md).
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import * as der from './der.js';

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

const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha384WithRsa: '1.2.840.113549.1.1.12',
  sha512WithRsa: '1.2.840.113549.1.1.13',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** What a subject attribute is called where chaperone names one, by its object identifier. */
const ATTRIBUTE_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '1.2.840.113549.1.9.1': 'emailAddress',
  '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC',
};

const SHA256_WITH_RSA = der.sequence(der.objectIdentifier(OID.sha256WithRsa), der.nullElement());

function generateRsaKey(): { privateKey: KeyObject; keyPem: string; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, keyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

/** 127 random bits: a positive INTEGER of at most 16 octets (RFC 5280 allows 20). */
function serialNumber(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return der.unsignedInteger(bytes);
}

function validity(notBefore: Date | undefined, notAfter: Date | undefined, seconds: number): Buffer {
  const start = notBefore ?? new Date(Date.now() - BACKDATE_MS);
  const end = notAfter ?? new Date(Date.now() + seconds * 1000);
  return der.sequence(der.time(start), der.time(end));
}

/** The characters an ASN.1 PrintableString may hold; anything else (`@`, `_`, non-ASCII) needs UTF8String. */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

// Go (the API server) rightly refuses a PrintableString holding, say, an `@`: such a value is a UTF8String.
function attribute(oid: string, value: string): Buffer {
  const tag = PRINTABLE.test(value) ? der.Tag.PRINTABLE_STRING : der.Tag.UTF8_STRING;
  return der.set(der.sequence(der.objectIdentifier(oid), der.element(tag, Buffer.from(value, 'utf8'))));
}

/** A distinguished name of one attribute per RDN: the organizations, then the common name. */
function subjectName(commonName: string, organizations: string[] = []): Buffer {
  return der.sequence(...organizations.map((value) => attribute(OID.organization, value)), attribute(OID.commonName, commonName));
}

/** RFC 5280 4.2.1.2 (1): the SHA-1 of the subjectPublicKey BIT STRING's value. */
function keyIdentifier(spki: Buffer): Buffer {
  const [, subjectPublicKey] = der.readChildren(der.readElement(spki, der.Tag.SEQUENCE));
  const bits = der.expectTag(subjectPublicKey, der.Tag.BIT_STRING, 'the subject public key').content;
  return createHash('sha1').update(bits.subarray(1)).digest();
}

function extension(oid: string, value: Buffer, critical = false): Buffer {
  return der.sequence(der.objectIdentifier(oid), ...(critical ? [der.booleanTrue()] : []), der.octetString(value));
}

function keyUsage(ca: boolean): Buffer {
  // digitalSignature (bit 0), keyEncipherment (2) for a leaf; digitalSignature, keyCertSign (5), cRLSign (6) for a CA.
  return extension(OID.keyUsage, ca ? der.bitString(Buffer.from([0x86]), 1) : der.bitString(Buffer.from([0xa0]), 5), true);
}

function extendedKeyUsage(usage: Usage): Buffer {
  const purposes = [...(usage === 'client' ? [] : [OID.serverAuth]), ...(usage === 'server' ? [] : [OID.clientAuth])];
  return extension(OID.extKeyUsage, der.sequence(...purposes.map(der.objectIdentifier)));
}

/** An IP address as a SAN holds it: 4 octets, or 16 (an IPv6 address may end in IPv4's dotted form). */
function ipAddressOctets(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new Error(`${ip} is not an IP address`);
  const dottedTail = /(?<=:)\d+\.\d+\.\d+\.\d+$/.exec(ip)?.[0];
  const hex = dottedTail ? `${ip.slice(0, -dottedTail.length)}${ipAddressOctets(dottedTail).toString('hex').replace(/^(.{4})/, '$1:')}` : ip;
  const [head, tail] = hex.split('::') as [string, string | undefined];
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const [left, right] = [groups(head), groups(tail)];
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const octets = Buffer.from(all.map((group) => group.padStart(4, '0')).join(''), 'hex');
  if (octets.length !== 16) throw new Error(`${ip} is not an IP address a certificate can hold (a zone?)`);
  return octets;
}

function subjectAltNames(request: CertificateRequest): Buffer[] {
  const names = [
    ...(request.dnsNames ?? []).map((name) => der.element(der.contextTag(2, false), Buffer.from(name, 'ascii'))),
    ...(request.ipAddresses ?? []).map((ip) => der.element(der.contextTag(7, false), ipAddressOctets(ip))),
  ];
  return names.length > 0 ? [extension(OID.subjectAltName, der.sequence(...names))] : [];
}

/** Signs a TBSCertificate (or a CertificationRequestInfo) with an RSA key: the signed structure, PEM. */
function signed(toBeSigned: Buffer, key: KeyObject | string, label: string): string {
  const privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
  if (privateKey.asymmetricKeyType !== 'rsa') throw new Error(`chaperone signs with RSA keys; this one is ${privateKey.asymmetricKeyType}`);
  const signature = sign('sha256', toBeSigned, privateKey);
  return toPem(der.sequence(toBeSigned, SHA256_WITH_RSA, der.bitString(signature)), label);
}

function toPem(encoded: Buffer, label: string): string {
  const lines = encoded.toString('base64').match(/.{1,64}/g)!;
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function fromPem(pem: string, label: string): Buffer {
  const match = new RegExp(`-----BEGIN ${label}-----\\r?\\n([A-Za-z0-9+/=\\r\\n]+)-----END ${label}-----`).exec(pem);
  if (!match) throw new der.DerError(`not a PEM ${label}`);
  return Buffer.from(match[1]!.replace(/\r?\n/g, ''), 'base64');
}

interface TbsCertificate {
  serial: Buffer;
  issuer: Buffer;
  validity: Buffer;
  subject: Buffer;
  spki: Buffer;
  extensions: Buffer[];
}

function tbsCertificate(fields: TbsCertificate): Buffer {
  return der.sequence(
    der.element(der.contextTag(0, true), der.element(der.Tag.INTEGER, Buffer.from([2]))), // v3
    fields.serial,
    SHA256_WITH_RSA,
    fields.issuer,
    fields.validity,
    fields.subject,
    fields.spki,
    der.element(der.contextTag(3, true), der.sequence(...fields.extensions)),
  );
}

export function createCA(request: CARequest): CertificateAndKey {
  const { privateKey, keyPem, spki } = generateRsaKey();
  const name = subjectName(request.commonName);
  const tbs = tbsCertificate({
    serial: serialNumber(),
    issuer: name,
    validity: validity(request.notBefore, undefined, request.validitySeconds ?? DEFAULT_CA_VALIDITY_SECONDS),
    subject: name,
    spki,
    extensions: [extension(OID.basicConstraints, der.sequence(der.booleanTrue()), true), keyUsage(true), extension(OID.subjectKeyIdentifier, der.octetString(keyIdentifier(spki)))],
  });
  return { certPem: signed(tbs, privateKey, 'CERTIFICATE'), keyPem };
}

/** The CA certificate's subject, as it is encoded there (a leaf's issuer must be the same name), and its public key. */
function issuerOf(caCertPem: string): { name: Buffer; spki: Buffer } {
  const [tbs] = der.readChildren(der.readElement(fromPem(caCertPem, 'CERTIFICATE'), der.Tag.SEQUENCE));
  const fields = der.readChildren(der.expectTag(tbs, der.Tag.SEQUENCE, 'the TBSCertificate'));
  const at = fields[0]?.tag === der.contextTag(0, true) ? 1 : 0; // [0] version, absent in v1
  return { name: der.expectTag(fields[at + 4], der.Tag.SEQUENCE, 'the subject').encoded, spki: der.expectTag(fields[at + 5], der.Tag.SEQUENCE, 'the public key').encoded };
}

function signLeaf(ca: CertificateAndKey, spki: Buffer, request: CertificateRequest): string {
  const issuer = issuerOf(ca.certPem);
  const tbs = tbsCertificate({
    serial: serialNumber(),
    issuer: issuer.name,
    validity: validity(request.notBefore, request.notAfter, request.validitySeconds ?? DEFAULT_LEAF_VALIDITY_SECONDS),
    subject: subjectName(request.commonName, request.organizations),
    spki,
    extensions: [
      extension(OID.basicConstraints, der.sequence(), true),
      keyUsage(false),
      extendedKeyUsage(request.usage),
      ...subjectAltNames(request),
      extension(OID.subjectKeyIdentifier, der.octetString(keyIdentifier(spki))),
      extension(OID.authorityKeyIdentifier, der.sequence(der.element(der.contextTag(0, false), keyIdentifier(issuer.spki)))),
    ],
  });
  return signed(tbs, ca.keyPem, 'CERTIFICATE');
}

export function issueCertificate(ca: CertificateAndKey, request: CertificateRequest): CertificateAndKey {
  const { keyPem, spki } = generateRsaKey();
  return { certPem: signLeaf(ca, spki, request), keyPem };
}

/** A certificate for a key its holder keeps (a certificate signing request's): the CA signs the public key alone. */
export function issueCertificateForKey(ca: CertificateAndKey, publicKey: KeyObject, request: CertificateRequest): string {
  return signLeaf(ca, publicKey.export({ type: 'spki', format: 'der' }), request);
}

/** A new RSA key and a PKCS#10 request for it (subject CN and O), both PEM: the key stays with whoever made it. */
export function createCertificateRequest(commonName: string, organizations: string[] = []): { requestPem: string; keyPem: string } {
  const { privateKey, keyPem, spki } = generateRsaKey();
  const info = der.sequence(der.element(der.Tag.INTEGER, Buffer.from([0])), subjectName(commonName, organizations), spki, der.element(der.contextTag(0, true), Buffer.alloc(0)));
  return { requestPem: signed(info, privateKey, 'CERTIFICATE REQUEST'), keyPem };
}

// ---------------------------------------------------------------------------------------------
// A certificate request someone else wrote (the identity signer's input).

export interface SubjectAttribute {
  /** Its usual short name (CN, O, OU...), or its object identifier. */
  name: string;
  value: string;
}

export interface ReadCertificateRequest {
  subject: SubjectAttribute[];
  publicKey: KeyObject;
  /** Whether its own key signed it (RSA with SHA-256, -384 or -512). */
  selfSigned: boolean;
}

const REQUEST_SIGNATURE_HASHES: Record<string, string> = { [OID.sha256WithRsa]: 'sha256', [OID.sha384WithRsa]: 'sha384', [OID.sha512WithRsa]: 'sha512' };

/** The string types a subject value is read in, and the characters each allows. */
const STRING_TYPES = new Map<number, (octets: Buffer) => string>([
  [der.Tag.UTF8_STRING, (octets) => new TextDecoder('utf-8', { fatal: true }).decode(octets)],
  [der.Tag.PRINTABLE_STRING, (octets) => checkedText(octets, PRINTABLE)],
  [der.Tag.IA5_STRING, (octets) => checkedText(octets, /^[\x00-\x7f]*$/)],
]);

function checkedText(octets: Buffer, allowed: RegExp): string {
  const text = octets.toString('latin1');
  if (!allowed.test(text)) throw new der.DerError('a string with characters its type does not allow');
  return text;
}

function attributeValue(read: der.DerElement | undefined): string {
  const decode = read && STRING_TYPES.get(read.tag);
  if (!read || !decode) throw new der.DerError(`a subject value of tag 0x${(read?.tag ?? 0).toString(16)} (UTF8String, PrintableString and IA5String are read)`);
  return decode(read.content);
}

function readName(name: der.DerElement | undefined): SubjectAttribute[] {
  return der.readChildren(der.expectTag(name, der.Tag.SEQUENCE, 'the subject')).flatMap((rdn) =>
    der.readChildren(der.expectTag(rdn, der.Tag.SET, 'a relative distinguished name')).map((pair) => {
      const [type, value, ...extra] = der.readChildren(der.expectTag(pair, der.Tag.SEQUENCE, 'an attribute'));
      if (extra.length > 0) throw new der.DerError('an attribute with more than a type and a value');
      const oid = der.readObjectIdentifier(der.expectTag(type, der.Tag.OBJECT_IDENTIFIER, 'an attribute type'));
      return { name: ATTRIBUTE_NAMES[oid] ?? oid, value: attributeValue(value) };
    }),
  );
}

/** A PEM PKCS#10 certificate request, read strictly; throws (der.DerError, or Node's for the key) when it is not one with an RSA key. */
export function readCertificateRequest(pem: string): ReadCertificateRequest {
  const [info, algorithm, signature, ...rest] = der.readChildren(der.readElement(fromPem(pem, 'CERTIFICATE REQUEST'), der.Tag.SEQUENCE));
  if (rest.length > 0) throw new der.DerError('more than a request, its algorithm and its signature');
  const [version, subject, spki, attributes, ...extra] = der.readChildren(der.expectTag(info, der.Tag.SEQUENCE, 'the request info'));
  // RFC 2986: after the key, only the request's attributes, [0] IMPLICIT SET (nothing of it is signed into the certificate).
  if ((attributes && attributes.tag !== der.contextTag(0, true)) || extra.length > 0) throw new der.DerError('more than a version, a subject, a key and attributes in the request info');
  if (!der.expectTag(version, der.Tag.INTEGER, 'the version').content.equals(Buffer.from([0]))) throw new der.DerError('a version other than 1');
  const publicKey = createPublicKey({ key: der.expectTag(spki, der.Tag.SEQUENCE, 'the public key').encoded, format: 'der', type: 'spki' });
  if (publicKey.asymmetricKeyType !== 'rsa') throw new der.DerError(`a ${publicKey.asymmetricKeyType} key`);
  const [algorithmId, parameters] = der.readChildren(der.expectTag(algorithm, der.Tag.SEQUENCE, 'the signature algorithm'));
  const hash = REQUEST_SIGNATURE_HASHES[der.readObjectIdentifier(der.expectTag(algorithmId, der.Tag.OBJECT_IDENTIFIER, 'the signature algorithm'))];
  const bits = der.expectTag(signature, der.Tag.BIT_STRING, 'the signature').content;
  const parametersNull = parameters === undefined || (parameters.tag === der.Tag.NULL && parameters.content.length === 0);
  const selfSigned = hash !== undefined && parametersNull && bits[0] === 0 && verify(hash, info!.encoded, publicKey, bits.subarray(1));
  return { subject: readName(subject), publicKey, selfSigned };
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
