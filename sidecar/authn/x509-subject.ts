// The subject of a client certificate read as the API server reads it (Go's crypto/x509 parseName
// and pkix.Name): every attribute value must be one of the string types Go knows, holding what that
// type allows, or Go refuses the whole certificate; the last CN is the common name, and every O is
// an organization, in order. The uid is the API server's parseUIDFromCert
// (k8s.io/apiserver/pkg/authentication/request/x509): at most one uid attribute in the whole
// subject, in any RDN, never empty; two of them, or an empty one, and the API server refuses the
// certificate as a credential. OpenSSL, which verified the certificate, is more lenient (a
// PrintableString with an @, a UniversalString), so the sidecar reads the DER itself rather than
// taking OpenSSL's reading of a certificate the API server would refuse.
import { elements, first, MalformedCertificate, OID, SEQUENCE, SET } from './der.js';

export interface X509Subject {
  commonName: string;
  organizations: string[];
  /** The uid attribute (1.3.6.1.4.1.57683.2), which kube-apiserver 1.33 and later read as the user's UID. */
  uid?: string;
}

/** A certificate whose subject the API server could not read, or would not take as a person. */
export class UnreadableSubject extends MalformedCertificate {}

const unreadable = (why: string) => new UnreadableSubject(why);

const VERSION = 0xa0; // [0] EXPLICIT
const COMMON_NAME = '550403'; // 2.5.4.3
const ORGANIZATION = '55040a'; // 2.5.4.10
// 1.3.6.1.4.1.57683.2, the CNCF's arc for Kubernetes: k8s.io/apimachinery/pkg/apis/asn1.X509UID.
const UID = '2b0601040183c25302';

// Go's isPrintable: PrintableString's set, and '*' and '&', which Go lets through for compatibility.
function isPrintable(byte: number): boolean {
  const c = String.fromCharCode(byte);
  return /[A-Za-z0-9 '()+,\-./:=?*&]/.test(c);
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeUtf8(bytes: Buffer): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new UnreadableSubject('a UTF8String that is not UTF-8');
  }
}

/** Latin-1 text, once every byte passes the string type's check. */
function checkedLatin1(allowed: (byte: number) => boolean, refusal: string): (bytes: Buffer) => string {
  return (bytes) => {
    if (!bytes.every(allowed)) throw new UnreadableSubject(refusal);
    return bytes.toString('latin1');
  };
}

/** Go's parseASN1String, by the value's tag. */
const STRING_DECODERS: Readonly<Record<number, (bytes: Buffer) => string>> = {
  0x0c: decodeUtf8, // UTF8String
  0x13: checkedLatin1(isPrintable, 'a PrintableString with characters it may not hold'), // PrintableString
  0x14: (bytes) => bytes.toString('latin1'), // T61String, read as Latin-1
  0x16: checkedLatin1((b) => b < 0x80, 'an IA5String that is not ASCII'), // IA5String
  0x12: checkedLatin1((b) => (b >= 0x30 && b <= 0x39) || b === 0x20, 'a NumericString with more than digits and spaces'), // NumericString
  0x1e: decodeBmp, // BMPString: UCS-2, an optional terminating NUL, no surrogates or noncharacters
};

function decodeString(tag: number, bytes: Buffer): string {
  if (!Object.hasOwn(STRING_DECODERS, tag)) throw new UnreadableSubject(`an attribute value of a type the API server does not read (tag ${tag})`);
  return STRING_DECODERS[tag]!(bytes);
}

function decodeBmp(bytes: Buffer): string {
  if (bytes.length % 2 !== 0) throw new UnreadableSubject('a BMPString of an odd length');
  let units = bytes;
  if (units.length >= 2 && units[units.length - 1] === 0 && units[units.length - 2] === 0) units = units.subarray(0, -2);
  let out = '';
  for (let i = 0; i < units.length; i += 2) {
    const unit = units.readUInt16BE(i);
    if (isSurrogateOrNoncharacter(unit)) throw new UnreadableSubject('a BMPString holding a surrogate or a noncharacter');
    out += String.fromCharCode(unit);
  }
  return out;
}

function isSurrogateOrNoncharacter(unit: number): boolean {
  return unit === 0xfffe || unit === 0xffff || (unit >= 0xfdd0 && unit <= 0xfdef) || (unit >= 0xd800 && unit <= 0xdfff);
}

/** The subject of a DER certificate, or UnreadableSubject where the API server would refuse it. */
export function subjectOf(certificateDer: Buffer): X509Subject {
  let commonName = '';
  const organizations: string[] = [];
  const uids: string[] = [];
  for (const { oid, text } of subjectAttributes(certificateDer)) {
    if (oid === COMMON_NAME) commonName = text;
    if (oid === ORGANIZATION) organizations.push(text);
    if (oid === UID) uids.push(text);
  }
  if (uids.length > 1) throw new UnreadableSubject(`${uids.length} uid attributes (1.3.6.1.4.1.57683.2), where the API server takes exactly one`);
  if (uids[0] === '') throw new UnreadableSubject('an empty uid attribute (1.3.6.1.4.1.57683.2), which the API server refuses');
  return { commonName, organizations, ...(uids[0] !== undefined ? { uid: uids[0] } : {}) };
}

/** Every attribute of the subject, in order: its type (hex OID) and its value, decoded as Go does. */
function subjectAttributes(certificateDer: Buffer): { oid: string; text: string }[] {
  const certificate = first(certificateDer, SEQUENCE, 'certificate', unreadable);
  const tbs = first(certificate.content, SEQUENCE, 'tbsCertificate', unreadable);
  const fields = elements(tbs.content, unreadable);
  // version, serialNumber, signature, issuer, validity, subject; the version may be absent (v1).
  const subject = fields[fields[0]?.tag === VERSION ? 5 : 4];
  if (subject?.tag !== SEQUENCE) throw new UnreadableSubject('no subject');
  return elements(subject.content, unreadable).flatMap((rdn) => {
    if (rdn.tag !== SET) throw new UnreadableSubject('a relative distinguished name that is not a SET');
    return elements(rdn.content, unreadable).map(readAttribute);
  });
}

function readAttribute(attribute: { tag: number; content: Buffer }): { oid: string; text: string } {
  if (attribute.tag !== SEQUENCE) throw new UnreadableSubject('an attribute that is not a SEQUENCE');
  const [type, value] = elements(attribute.content, unreadable);
  if (type?.tag !== OID || value === undefined) throw new UnreadableSubject('an attribute without a type and a value');
  const text = decodeString(value.tag, value.content);
  return { oid: type.content.toString('hex'), text };
}
