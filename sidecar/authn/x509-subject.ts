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

/** Go's parseASN1String. */
function decodeString(tag: number, bytes: Buffer): string {
  switch (tag) {
    case 0x0c: // UTF8String
      try {
        return strictUtf8.decode(bytes);
      } catch {
        throw new UnreadableSubject('a UTF8String that is not UTF-8');
      }
    case 0x13: // PrintableString
      if (!bytes.every(isPrintable)) throw new UnreadableSubject('a PrintableString with characters it may not hold');
      return bytes.toString('latin1');
    case 0x14: // T61String, read as Latin-1
      return bytes.toString('latin1');
    case 0x16: // IA5String
      if (!bytes.every((b) => b < 0x80)) throw new UnreadableSubject('an IA5String that is not ASCII');
      return bytes.toString('latin1');
    case 0x12: // NumericString
      if (!bytes.every((b) => (b >= 0x30 && b <= 0x39) || b === 0x20)) throw new UnreadableSubject('a NumericString with more than digits and spaces');
      return bytes.toString('latin1');
    case 0x1e: // BMPString: UCS-2, an optional terminating NUL, no surrogates or noncharacters
      return decodeBmp(bytes);
    default:
      throw new UnreadableSubject(`an attribute value of a type the API server does not read (tag ${tag})`);
  }
}

function decodeBmp(bytes: Buffer): string {
  if (bytes.length % 2 !== 0) throw new UnreadableSubject('a BMPString of an odd length');
  let units = bytes;
  if (units.length >= 2 && units[units.length - 1] === 0 && units[units.length - 2] === 0) units = units.subarray(0, -2);
  let out = '';
  for (let i = 0; i < units.length; i += 2) {
    const unit = units.readUInt16BE(i);
    if (unit === 0xfffe || unit === 0xffff || (unit >= 0xfdd0 && unit <= 0xfdef) || (unit >= 0xd800 && unit <= 0xdfff)) {
      throw new UnreadableSubject('a BMPString holding a surrogate or a noncharacter');
    }
    out += String.fromCharCode(unit);
  }
  return out;
}

/** The subject of a DER certificate, or UnreadableSubject where the API server would refuse it. */
export function subjectOf(certificateDer: Buffer): X509Subject {
  const certificate = first(certificateDer, SEQUENCE, 'certificate', unreadable);
  const tbs = first(certificate.content, SEQUENCE, 'tbsCertificate', unreadable);
  const fields = elements(tbs.content, unreadable);
  // version, serialNumber, signature, issuer, validity, subject; the version may be absent (v1).
  const subject = fields[fields[0]?.tag === VERSION ? 5 : 4];
  if (subject?.tag !== SEQUENCE) throw new UnreadableSubject('no subject');
  let commonName = '';
  const organizations: string[] = [];
  const uids: string[] = [];
  for (const rdn of elements(subject.content, unreadable)) {
    if (rdn.tag !== SET) throw new UnreadableSubject('a relative distinguished name that is not a SET');
    for (const attribute of elements(rdn.content, unreadable)) {
      if (attribute.tag !== SEQUENCE) throw new UnreadableSubject('an attribute that is not a SEQUENCE');
      const [type, value] = elements(attribute.content, unreadable);
      if (type?.tag !== OID || value === undefined) throw new UnreadableSubject('an attribute without a type and a value');
      const text = decodeString(value.tag, value.content);
      const oid = type.content.toString('hex');
      if (oid === COMMON_NAME) commonName = text;
      if (oid === ORGANIZATION) organizations.push(text);
      if (oid === UID) uids.push(text);
    }
  }
  if (uids.length > 1) throw new UnreadableSubject(`${uids.length} uid attributes (1.3.6.1.4.1.57683.2), where the API server takes exactly one`);
  if (uids[0] === '') throw new UnreadableSubject('an empty uid attribute (1.3.6.1.4.1.57683.2), which the API server refuses');
  return { commonName, organizations, ...(uids[0] !== undefined ? { uid: uids[0] } : {}) };
}
