// The identity CA bundle, and the one question asked of it: does this client certificate identify a
// person, now? Answered as the API server's x509 authenticator answers it (Go's
// x509.Certificate.Verify with ExtKeyUsageClientAuth, then the CN, O and uid of the subject), for a
// certificate issued directly by a CA of the bundle. The bundle changes under a running sidecar;
// each change gets a new generation, and a verdict holds only for the generation it was reached in.
//
// Where the sidecar is stricter than Go, it says so: the leaf must name clientAuth in its extended
// key usage (Go also takes none, or anyExtendedKeyUsage); intermediates the client sends are not
// used (put an intermediate CA in the bundle to trust what it issues); RSA-PSS, SHA-1 and MD5
// signatures, curves other than P-256, P-384 and P-521, and critical extensions beyond key usage,
// basic constraints, extended key usage and subject alternative names are refused; so are name
// constraints on a CA whose person's certificate has subject alternative names, and policy
// constraints or mappings anywhere, which Go would evaluate.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { splitPemCertificates } from '../../lib/pem.js';
import type { Identity } from '../identity.js';
import { MalformedCertificate } from './der.js';
import { certificateFields, hasExtension, KEY_USAGE_CERT_SIGN, OIDS, type CertificateFields } from './x509-certificate.js';
import { subjectOf, type X509Subject } from './x509-subject.js';

export type Verdict =
  | {
      trusted: true;
      identity: Identity;
      /** When the chain is valid, in ms since the epoch: both ends inclusive, as in Go. */
      notBefore: number;
      notAfter: number;
      /** The subject of the CA that vouches for it, for logs. */
      issuer: string;
    }
  | { trusted: false; reason: string };

/** The bundle could not be read; the previous one stays. */
export class UnusableBundle extends Error {}

interface Anchor {
  cert: X509Certificate;
  fields: CertificateFields;
  /** Why this certificate cannot vouch for anyone; undefined when it can. */
  cannotSign?: string;
}

// The signature algorithms Go's crypto/x509 accepts on a certificate, minus RSA-PSS (whose
// parameters Go checks more narrowly than OpenSSL would), with the key type each needs.
const SIGNATURE_ALGORITHMS: Record<string, 'rsa' | 'ec' | 'ed25519'> = {
  '1.2.840.113549.1.1.11': 'rsa', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'rsa', // sha384WithRSAEncryption
  '1.2.840.113549.1.1.13': 'rsa', // sha512WithRSAEncryption
  '1.2.840.10045.4.3.2': 'ec', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'ec', // ecdsa-with-SHA384
  '1.2.840.10045.4.3.4': 'ec', // ecdsa-with-SHA512
  '1.3.101.112': 'ed25519',
};
const CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);
/** Go (1.24 and later) refuses RSA keys shorter than this. */
const MIN_RSA_BITS = 1024;
const POLICY_EXTENSIONS = [OIDS.policyConstraints, OIDS.policyMappings, OIDS.inhibitAnyPolicy];

function oneLine(name: string): string {
  return name.replace(/\n/g, ', ');
}

/** Why this public key cannot be what Go verifies with; undefined when it can. */
function unsupportedKey(cert: X509Certificate): string | undefined {
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return (details.modulusLength ?? 0) < MIN_RSA_BITS ? `an RSA key of ${details.modulusLength} bits` : undefined;
    case 'ec':
      return CURVES.has(details.namedCurve ?? '') ? undefined : `an EC key on ${details.namedCurve}`;
    case 'ed25519':
      return undefined;
    default:
      return `a ${key.asymmetricKeyType} key`;
  }
}

/** What makes the certificate itself unacceptable in a chain, whatever its place (Go's parser and isValid). */
function unacceptable(fields: CertificateFields): string | undefined {
  if (fields.unhandledCritical.length > 0) return `a critical extension the API server does not handle (${fields.unhandledCritical.join(', ')})`;
  if (fields.negativeSerial) return 'a negative serial number';
  if (POLICY_EXTENSIONS.some((oid) => hasExtension(fields, oid))) return 'certificate policy constraints';
  return undefined;
}

/** Go's CheckSignatureFrom, on the parent's side: may this certificate sign others? */
function cannotSign(cert: X509Certificate, fields: CertificateFields): string | undefined {
  const refused = unacceptable(fields);
  if (refused) return refused;
  if (fields.basicConstraints ? !fields.basicConstraints.ca : fields.version === 3) return 'not a CA (basic constraints)';
  if (fields.keyUsage !== 0 && (fields.keyUsage & KEY_USAGE_CERT_SIGN) === 0) return 'a key usage without keyCertSign';
  return unsupportedKey(cert);
}

/** Go's checkChainForKeyUsage for ExtKeyUsageClientAuth, on one certificate. */
function allowsClientAuth(fields: CertificateFields): boolean {
  return fields.extKeyUsage === undefined || fields.extKeyUsage.includes(OIDS.clientAuth) || fields.extKeyUsage.includes(OIDS.anyExtendedKeyUsage);
}

/** The person the certificate names, or why the API server would not read its subject. */
type TrustedVerdict = Extract<Verdict, { trusted: true }>;

function trustedVerdict(leaf: X509Certificate, issuer: Anchor, subject: X509Subject): TrustedVerdict {
  return {
    trusted: true,
    identity: { username: subject.commonName, groups: subject.organizations, ...(subject.uid !== undefined ? { uid: subject.uid } : {}), extra: {} },
    notBefore: Math.max(leaf.validFromDate.getTime(), issuer.cert.validFromDate.getTime()),
    notAfter: Math.min(leaf.validToDate.getTime(), issuer.cert.validToDate.getTime()),
    issuer: oneLine(issuer.cert.subject),
  };
}

/** Of two chains, one valid now over one that is not, then the one valid longer; the first on a tie. */
function preferred(best: TrustedVerdict | undefined, verdict: TrustedVerdict, now: number): TrustedVerdict {
  const current = (v: TrustedVerdict) => now >= v.notBefore && now <= v.notAfter;
  if (!best || (current(verdict) && (!current(best) || verdict.notAfter > best.notAfter))) return verdict;
  return best;
}

function readSubject(leaf: X509Certificate): X509Subject | string {
  try {
    return subjectOf(leaf.raw);
  } catch (err) {
    if (!(err instanceof MalformedCertificate)) throw err;
    return `certificate subject the API server would not read: ${err.message}`;
  }
}

function readAnchors(content: Buffer): Anchor[] {
  const text = content.toString('utf8');
  const pems = splitPemCertificates(text);
  if (pems.length === 0) throw new UnusableBundle('it holds no PEM certificate');
  // A certificate begun and not ended: a file caught half-written.
  if (text.split('-----BEGIN CERTIFICATE-----').length - 1 !== pems.length) throw new UnusableBundle('it holds a certificate that does not end');
  return pems.map((pem, i) => {
    let cert: X509Certificate;
    let fields: CertificateFields;
    try {
      cert = new X509Certificate(pem);
      fields = certificateFields(cert.raw);
    } catch (err) {
      throw new UnusableBundle(`certificate ${i + 1} does not parse: ${(err as Error).message}`);
    }
    const why = cannotSign(cert, fields);
    return { cert, fields, ...(why ? { cannotSign: why } : {}) };
  });
}

export class IdentityBundle {
  private anchors: Anchor[];
  private content: Buffer;
  private gen = 1;

  /** Reads the bundle; a missing, empty or unreadable file throws, naming it. */
  constructor(readonly file: string) {
    try {
      this.content = readFileSync(file);
      this.anchors = readAnchors(this.content);
    } catch (err) {
      throw new Error(`the identity CA bundle ${file} cannot be used: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Goes up by one each time the bundle changes. */
  get generation(): number {
    return this.gen;
  }

  /** The certificates, for OpenSSL: whose names a client is shown, and what it checks at the handshake. */
  get pems(): string[] {
    return this.anchors.map((a) => a.cert.toString());
  }

  /** Certificates of the bundle that cannot vouch for anyone, and why (for a warning). */
  unusable(): string[] {
    return this.anchors.filter((a) => a.cannotSign).map((a) => `${oneLine(a.cert.subject)}: ${a.cannotSign}`);
  }

  /**
   * Takes the bundle's new content, and returns whether it changed. Content that is missing, empty
   * or does not parse throws UnusableBundle and changes nothing: it is what a file looks like while
   * a careless tool writes it, and the previous bundle is still the operator's intent.
   */
  replace(content: Buffer | undefined): boolean {
    if (content === undefined) throw new UnusableBundle('the file is missing or empty');
    if (content.equals(this.content)) return false;
    this.anchors = readAnchors(content);
    this.content = content;
    this.gen++;
    return true;
  }

  /** Whether this certificate identifies a person now, and who; as of this generation. */
  verify(leaf: X509Certificate, now = Date.now()): Verdict {
    const read = this.readLeaf(leaf);
    if ('reason' in read) return { trusted: false, reason: read.reason };
    const issuers = this.anchors.filter((a) => a.fields.rawSubject.equals(read.fields.rawIssuer));
    let reason = issuers.length === 0 ? 'certificate not issued by a CA of the identity bundle' : '';
    let best: TrustedVerdict | undefined;
    for (const issuer of issuers) {
      const why = this.refusedBy(issuer, leaf, read.fields, read.algorithm);
      if (why) reason ||= `certificate not vouched for by ${oneLine(issuer.cert.subject)}: ${why}`;
      else best = preferred(best, trustedVerdict(leaf, issuer, read.subject), now);
    }
    return best ?? { trusted: false, reason };
  }

  /** The leaf's fields, signature algorithm and subject; or why it can identify nobody, whoever issued it. */
  private readLeaf(leaf: X509Certificate): { fields: CertificateFields; algorithm: string; subject: X509Subject } | { reason: string } {
    let fields: CertificateFields;
    try {
      fields = certificateFields(leaf.raw);
    } catch (err) {
      if (!(err instanceof MalformedCertificate)) throw err;
      return { reason: `certificate the API server would not parse: ${err.message}` };
    }
    const refused = this.leafRefusal(leaf, fields);
    if (refused) return { reason: refused };
    const subject = readSubject(leaf);
    if (typeof subject === 'string') return { reason: subject };
    if (!subject.commonName) return { reason: 'certificate has no common name' };
    return { fields, algorithm: SIGNATURE_ALGORITHMS[fields.signatureAlgorithmOid]!, subject };
  }

  private leafRefusal(leaf: X509Certificate, fields: CertificateFields): string | undefined {
    const refused = unacceptable(fields) ?? (fields.version === 3 ? undefined : `a version ${fields.version} certificate`);
    if (refused) return `certificate with ${refused}`;
    if (!fields.extKeyUsage?.includes(OIDS.clientAuth)) return 'certificate is not for client authentication (no clientAuth extended key usage)';
    if (!SIGNATURE_ALGORITHMS[fields.signatureAlgorithmOid]) return `certificate signed with an algorithm the sidecar does not accept (${fields.signatureAlgorithmOid})`;
    const leafKey = unsupportedKey(leaf);
    if (leafKey) return `certificate with ${leafKey}`;
    if (this.anchors.some((a) => a.cert.raw.equals(leaf.raw))) return 'a certificate of the identity bundle itself, not one it issued';
    return undefined;
  }

  /** Why this CA does not vouch for the certificate; undefined when it does (Go's buildChains, one step). */
  private refusedBy(issuer: Anchor, leaf: X509Certificate, fields: CertificateFields, algorithm: string): string | undefined {
    if (issuer.cannotSign) return issuer.cannotSign;
    if (issuer.cert.publicKey.asymmetricKeyType !== algorithm) return `a ${issuer.cert.publicKey.asymmetricKeyType} key cannot have made a ${algorithm} signature`;
    if (!allowsClientAuth(issuer.fields)) return 'the CA is not for client authentication (its extended key usage)';
    if (hasExtension(issuer.fields, OIDS.nameConstraints) && hasExtension(fields, OIDS.subjectAltName)) return 'name constraints on the CA and subject alternative names on the certificate';
    if (!leaf.verify(issuer.cert.publicKey)) return 'the signature does not verify';
    return undefined;
  }
}
