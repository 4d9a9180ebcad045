// Client certificates with subjects that pki.ts would never write: any RDN structure (several values
// in one RDN, several CNs, none), any ASN.1 string type, bytes that are not what the type promises.
// node-forge builds the rest of the certificate; the subject is put into the signed part by hand.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import forge from 'node-forge';
import type { CertificateAndKey } from '../../../lib/pki.js';

const { asn1 } = forge;

/** The ASN.1 string types a DirectoryString (and friends) may come in, with their universal tags. */
export const STRING_TAGS = {
  utf8: 12,
  numeric: 18,
  printable: 19,
  t61: 20,
  ia5: 22,
  universal: 28,
  bmp: 30,
} as const;
export type StringType = keyof typeof STRING_TAGS;

// UID: the uid attribute kube-apiserver reads as the user's UID (k8s.io/apimachinery/pkg/apis/asn1.X509UID).
export const ATTRIBUTE_OIDS = { CN: '2.5.4.3', O: '2.5.4.10', OU: '2.5.4.11', C: '2.5.4.6', UID: '1.3.6.1.4.1.57683.2' } as const;
export type AttributeType = keyof typeof ATTRIBUTE_OIDS;

export interface SubjectAttribute {
  type: AttributeType;
  stringType: StringType;
  /** The text, encoded as its string type says (UTF-8, UCS-2, UCS-4, or one byte per character). */
  value: string;
  /** Raw content bytes instead of the encoded value: for contents the type does not allow. */
  bytes?: Buffer;
}

/** Relative distinguished names in order; an RDN with several attributes is multi-valued. */
export type Subject = SubjectAttribute[][];

export type ExtendedKeyUsage = 'clientAuth' | 'serverAuth' | 'anyExtendedKeyUsage' | 'none';

export function encodeValue(attribute: SubjectAttribute): Buffer {
  if (attribute.bytes) return attribute.bytes;
  switch (attribute.stringType) {
    case 'utf8':
      return Buffer.from(attribute.value, 'utf8');
    case 'bmp':
      return Buffer.from(attribute.value, 'utf16le').swap16();
    case 'universal': {
      const points = Array.from(attribute.value, (c) => c.codePointAt(0)!);
      const out = Buffer.alloc(points.length * 4);
      points.forEach((p, i) => out.writeUInt32BE(p, i * 4));
      return out;
    }
    default:
      return Buffer.from(attribute.value, 'latin1');
  }
}

/** forge writes a BMPString's value as 16-bit code units, everything else as bytes. */
function forgeContent(attribute: SubjectAttribute): string {
  const bytes = encodeValue(attribute);
  if (attribute.stringType !== 'bmp') return bytes.toString('latin1');
  if (bytes.length % 2 !== 0) throw new Error('forge cannot write a BMPString of an odd number of bytes');
  return String.fromCharCode(...Array.from({ length: bytes.length / 2 }, (_, i) => bytes.readUInt16BE(i * 2)));
}

function nameAsn1(subject: Subject): forge.asn1.Asn1 {
  const rdns = subject.map((rdn) =>
    asn1.create(
      asn1.Class.UNIVERSAL,
      asn1.Type.SET,
      true,
      rdn.map((attribute) =>
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
          asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(ATTRIBUTE_OIDS[attribute.type]).getBytes()),
          asn1.create(asn1.Class.UNIVERSAL, STRING_TAGS[attribute.stringType] as unknown as forge.asn1.Type, false, forgeContent(attribute)),
        ]),
      ),
    ),
  );
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, rdns);
}

/** One key for every leaf: key generation is what costs, and the subject is what is under test. */
export interface LeafKey {
  keyPem: string;
  publicKey: forge.pki.PublicKey;
}

export function leafKey(): LeafKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    keyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicKey: forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString()),
  };
}

const SUBJECT_INDEX_IN_TBS = 5; // version, serialNumber, signature, issuer, validity, subject
// In node-forge, but missing from its type definitions.
const getTBSCertificate = (cert: forge.pki.Certificate): forge.asn1.Asn1 =>
  (forge.pki as unknown as { getTBSCertificate: (c: forge.pki.Certificate) => forge.asn1.Asn1 }).getTBSCertificate(cert);

export function issueOddCertificate(ca: CertificateAndKey, key: LeafKey, subject: Subject, eku: ExtendedKeyUsage = 'clientAuth'): CertificateAndKey {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.publicKey;
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  cert.serialNumber = serial.toString('hex');
  cert.validity.notBefore = new Date(Date.now() - 5 * 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3600_000);
  cert.setIssuer(caCert.subject.attributes);
  const ekuExtension =
    eku === 'none' ? [] : [{ name: 'extKeyUsage', ...(eku === 'anyExtendedKeyUsage' ? { '2.5.29.37.0': true } : { [eku]: true }) }];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    ...ekuExtension,
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!;
  const tbs = getTBSCertificate(cert);
  (tbs.value as forge.asn1.Asn1[])[SUBJECT_INDEX_IN_TBS] = nameAsn1(subject);
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'latin1');
  const signature = sign('sha256', tbsDer, createPrivateKey(ca.keyPem));
  const algorithm = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(forge.pki.oids.sha256WithRSAEncryption!).getBytes()),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
  ]);
  const certificate = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    algorithm,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\u0000${signature.toString('latin1')}`),
  ]);
  const der = Buffer.from(asn1.toDer(certificate).getBytes(), 'latin1');
  const certPem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  return { certPem, keyPem: key.keyPem };
}
