// The parts of a certificate that decide whether it may identify a person, read from the DER as
// Go's crypto/x509 reads them (the API server's parser): version, serial number, the signature
// algorithm (inner and outer must be the same bytes), issuer and subject as raw bytes (Go matches a
// certificate to its issuer byte for byte), and the extensions: basic constraints, key usage,
// extended key usage, subject alternative names, and which critical ones go unhandled.
import { BIT_STRING, BOOLEAN, elements, first, INTEGER, MalformedCertificate, OCTET_STRING, OID, oidText, SEQUENCE, type Element } from './der.js';

export const OIDS = {
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  policyMappings: '2.5.29.33',
  policyConstraints: '2.5.29.36',
  extKeyUsage: '2.5.29.37',
  inhibitAnyPolicy: '2.5.29.54',
  anyExtendedKeyUsage: '2.5.29.37.0',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** Go's KeyUsageCertSign: bit 5 of the KeyUsage BIT STRING. */
export const KEY_USAGE_CERT_SIGN = 1 << 5;

export interface Extension {
  oid: string;
  critical: boolean;
  value: Buffer;
}

export interface CertificateFields {
  /** 1, 2 or 3. */
  version: number;
  negativeSerial: boolean;
  /** The signature AlgorithmIdentifier inside the signed part, as DER; equal to the outer one. */
  signatureAlgorithm: Buffer;
  signatureAlgorithmOid: string;
  rawIssuer: Buffer;
  rawSubject: Buffer;
  extensions: Extension[];
  /** Present when the certificate has a basicConstraints extension. */
  basicConstraints?: { ca: boolean };
  /** Go's KeyUsage bits; 0 when there is no keyUsage extension. */
  keyUsage: number;
  /** The extended key usages, dotted; undefined when there is no extKeyUsage extension. */
  extKeyUsage?: string[];
  /** Critical extensions Go would not handle (which make it refuse the certificate), dotted. */
  unhandledCritical: string[];
}

const VERSION = 0xa0; // [0] EXPLICIT
const EXTENSIONS = 0xa3; // [3] EXPLICIT
/** GeneralName tags Go reads from a subjectAltName: rfc822Name, dNSName, uniformResourceIdentifier, iPAddress. */
const SAN_NAMES_GO_READS = new Set([0x81, 0x82, 0x86, 0x87]);

function fail(why: string): MalformedCertificate {
  return new MalformedCertificate(why);
}

function boolean(element: Element): boolean {
  if (element.tag !== BOOLEAN || element.content.length !== 1 || (element.content[0] !== 0 && element.content[0] !== 0xff)) throw fail('a BOOLEAN that is not DER');
  return element.content[0] === 0xff;
}

function smallInteger(element: Element): number {
  if (element.tag !== INTEGER || element.content.length === 0 || element.content.length > 4) throw fail('an INTEGER out of range');
  return element.content.readIntBE(0, element.content.length);
}

function parseExtensions(wrapper: Element): Extension[] {
  const sequence = first(wrapper.content, SEQUENCE, 'extensions', fail);
  const out: Extension[] = [];
  const seen = new Set<string>();
  for (const item of elements(sequence.content)) {
    const extension = readExtension(item);
    if (seen.has(extension.oid)) throw fail(`the extension ${extension.oid} twice`);
    seen.add(extension.oid);
    out.push(extension);
  }
  return out;
}

/** extnID, critical DEFAULT FALSE, extnValue. */
function readExtension(item: Element): Extension {
  if (item.tag !== SEQUENCE) throw fail('an extension that is not a SEQUENCE');
  const parts = elements(item.content);
  const [id, second, third] = parts;
  if (id?.tag !== OID) throw fail('an extension without an identifier');
  const { critical, value, fields } = second?.tag === BOOLEAN ? { critical: boolean(second), value: third, fields: 3 } : { critical: false, value: second, fields: 2 };
  if (value?.tag !== OCTET_STRING || parts.length > fields) throw fail('an extension without a value');
  return { oid: oidText(id.content), critical, value: value.content };
}

function parseKeyUsage(value: Buffer): number {
  const bits = first(value, BIT_STRING, 'key usage', fail).content;
  if (bits.length === 0 || bits[0]! > 7) throw fail('a malformed key usage');
  let usage = 0;
  for (let i = 0; i < 9; i++) {
    const byte = bits[1 + (i >> 3)];
    if (byte !== undefined && (byte >> (7 - (i & 7))) & 1) usage |= 1 << i;
  }
  return usage;
}

function parseBasicConstraints(value: Buffer): { ca: boolean } {
  const [cA] = elements(first(value, SEQUENCE, 'basic constraints', fail).content);
  return { ca: cA?.tag === BOOLEAN ? boolean(cA) : false };
}

function parseExtKeyUsage(value: Buffer): string[] {
  return elements(first(value, SEQUENCE, 'extended key usage', fail).content).map((element) => {
    if (element.tag !== OID) throw fail('an extended key usage that is not an OID');
    return oidText(element.content);
  });
}

/** Whether a subjectAltName holds a name Go reads; a critical one without any is unhandled. */
function sanHasNamesGoReads(value: Buffer): boolean {
  return elements(first(value, SEQUENCE, 'subject alternative names', fail).content).some((name) => SAN_NAMES_GO_READS.has(name.tag));
}

/**
 * What reading each extension the sidecar knows puts into the fields; whether the sidecar handles it
 * as Go does. Go handles a few more (name constraints, policies) that the sidecar does not: a
 * certificate that makes one of those critical is refused, the safe side of Go.
 */
const EXTENSION_READERS: Readonly<Record<string, (out: CertificateFields, value: Buffer) => boolean>> = {
  [OIDS.keyUsage]: (out, value) => {
    out.keyUsage = parseKeyUsage(value);
    return true;
  },
  [OIDS.basicConstraints]: (out, value) => {
    out.basicConstraints = parseBasicConstraints(value);
    return true;
  },
  [OIDS.extKeyUsage]: (out, value) => {
    out.extKeyUsage = parseExtKeyUsage(value);
    return true;
  },
  [OIDS.subjectAltName]: (_, value) => sanHasNamesGoReads(value),
};

/** The fields of a DER certificate, or MalformedCertificate for one the API server would not parse. */
export function certificateFields(der: Buffer): CertificateFields {
  const { tbs, outerAlgorithm } = certificateParts(der);
  const fields = elements(tbs.content);
  const version = readVersion(fields);
  const at = fields[0]?.tag === VERSION ? 1 : 0;
  const { serial, algorithm, issuer, subject } = signedFields(fields.slice(at, at + 6));
  if (!algorithm.der.equals(outerAlgorithm.der)) throw fail('inner and outer signature algorithm identifiers differ');
  const algorithmOid = first(algorithm.content, OID, 'signature algorithm', fail);
  const extensions = readExtensions(fields.slice(at + 6), version);
  const out: CertificateFields = {
    version,
    negativeSerial: (serial.content[0]! & 0x80) !== 0,
    signatureAlgorithm: algorithm.der,
    signatureAlgorithmOid: oidText(algorithmOid.content),
    rawIssuer: issuer.der,
    rawSubject: subject.der,
    extensions,
    keyUsage: 0,
    unhandledCritical: [],
  };
  for (const extension of extensions) {
    const handled = Object.hasOwn(EXTENSION_READERS, extension.oid) && EXTENSION_READERS[extension.oid]!(out, extension.value);
    if (extension.critical && !handled) out.unhandledCritical.push(extension.oid);
  }
  return out;
}

/** tbsCertificate, signatureAlgorithm, signatureValue, and nothing more. */
function certificateParts(der: Buffer): { tbs: Element; outerAlgorithm: Element } {
  const [tbs, outerAlgorithm, signature, ...extra] = elements(first(der, SEQUENCE, 'certificate', fail).content);
  if (tbs?.tag !== SEQUENCE || outerAlgorithm?.tag !== SEQUENCE || signature?.tag !== BIT_STRING || extra.length > 0) throw fail('not a certificate');
  return { tbs, outerAlgorithm };
}

/** The [3] extensions among the fields after the subject's public key (issuer and subject unique IDs may come first). */
function readExtensions(trailing: Element[], version: number): Extension[] {
  const wrapper = trailing.find((f) => f.tag === EXTENSIONS);
  if (wrapper && version !== 3) throw fail('extensions in a certificate before version 3');
  return wrapper ? parseExtensions(wrapper) : [];
}

/** The [0] version, 1 when absent. */
function readVersion(fields: Element[]): number {
  if (fields[0]?.tag !== VERSION) return 1;
  const version = smallInteger(first(fields[0].content, INTEGER, 'version', fail)) + 1;
  if (version < 1 || version > 3) throw fail(`version ${version}`);
  return version;
}

/** serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo: each present, of its type. */
function signedFields([serial, algorithm, issuer, validity, subject, publicKey]: Element[]): { serial: Element; algorithm: Element; issuer: Element; subject: Element } {
  if (serial?.tag !== INTEGER || serial.content.length === 0) throw fail('no serial number');
  const sequences = [algorithm, issuer, validity, subject, publicKey];
  if (!sequences.every((field) => field?.tag === SEQUENCE)) throw fail('a signed part without its fields');
  return { serial, algorithm: algorithm!, issuer: issuer!, subject: subject! };
}

/** Whether the certificate carries this extension at all, critical or not. */
export function hasExtension(fields: CertificateFields, oid: string): boolean {
  return fields.extensions.some((e) => e.oid === oid);
}
