import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { bitString, element, objectIdentifier, readChildren, readElement, sequence, set, Tag } from '../../../lib/der.js';
import { createCA, createCertificateRequest, issueCertificate, issueCertificateForKey, readCertificateRequest } from '../../../lib/pki.js';

// Node prints EKUs by OID: clientAuth and serverAuth.
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

describe('lib/pki', function () {
  const ca = createCA({ commonName: 'unit-test-ca' });

  it('creates a self-signed CA that may sign certificates', function () {
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, 'CN=unit-test-ca');
    assert.ok(cert.verify(cert.publicKey));
    assert.ok(cert.checkPrivateKey(createPrivateKey(ca.keyPem)));
  });

  it('issues a client certificate: CN is the user, each O a group, EKU clientAuth only', function () {
    const leaf = issueCertificate(ca, { commonName: 'alice', organizations: ['dev', 'ops'], usage: 'client', validitySeconds: 3600 });
    const cert = new X509Certificate(leaf.certPem);
    assert.equal(cert.subject, 'O=dev\nO=ops\nCN=alice');
    assert.deepEqual(cert.keyUsage, [CLIENT_AUTH]);
    assert.equal(cert.ca, false);
    assert.ok(cert.checkIssued(new X509Certificate(ca.certPem)));
    assert.ok(cert.verify(new X509Certificate(ca.certPem).publicKey));
    const lifetimeSeconds = (Date.parse(cert.validTo) - Date.now()) / 1000;
    assert.ok(lifetimeSeconds > 3500 && lifetimeSeconds <= 3600, `lifetime ${lifetimeSeconds}`);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  });

  it('issues a serving certificate with IP and DNS SANs and EKU serverAuth only', function () {
    const leaf = issueCertificate(ca, { commonName: 'chaperone', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const cert = new X509Certificate(leaf.certPem);
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH]);
    assert.equal(cert.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1');
    assert.equal(cert.checkHost('localhost'), 'localhost');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
  });

  it('honours explicit validity windows, for expired and not-yet-valid test certificates', function () {
    const notBefore = new Date(Date.now() - 2 * 3600_000);
    const notAfter = new Date(Date.now() - 3600_000);
    const cert = new X509Certificate(issueCertificate(ca, { commonName: 'old', usage: 'client', notBefore, notAfter }).certPem);
    assert.equal(Date.parse(cert.validTo), Math.floor(notAfter.getTime() / 1000) * 1000);
  });

  it('gives every certificate a distinct positive serial number', function () {
    const serials = new Set(
      Array.from({ length: 5 }, () => new X509Certificate(issueCertificate(ca, { commonName: 'x', usage: 'client' }).certPem).serialNumber),
    );
    assert.equal(serials.size, 5);
  });

  it('writes serial numbers as positive INTEGERs in their shortest form, as Go reads them', function () {
    // One key, many certificates: signing is cheap, key generation is not.
    const key = createPublicKey(createPrivateKey(issueCertificate(ca, { commonName: 'k', usage: 'client' }).keyPem));
    for (let i = 0; i < 300; i++) {
      const der = Buffer.from(issueCertificateForKey(ca, key, { commonName: 'x', usage: 'client' }).replace(/-----[^-]+-----|\s/g, ''), 'base64');
      const [tbs] = readChildren(readElement(der));
      const serial = readChildren(tbs!)[1]!;
      assert.equal(serial.tag, Tag.INTEGER);
      assert.ok(serial.content[0]! < 0x80, 'positive');
      assert.ok(serial.content.length <= 16 && (serial.content[0] !== 0 || serial.content[1]! >= 0x80), `shortest form: ${serial.content.toString('hex')}`);
    }
  });

  it('writes IPv6 SANs, one ending in IPv4 dotted form included, and GeneralizedTime from 2050', function () {
    const leaf = issueCertificate(ca, { commonName: 'v6', usage: 'server', ipAddresses: ['::1', 'fd00:1::2', '::ffff:10.0.0.1'], notAfter: new Date('2060-06-01T00:00:00Z') });
    const cert = new X509Certificate(leaf.certPem);
    assert.equal(cert.subjectAltName, 'IP Address:0:0:0:0:0:0:0:1, IP Address:FD00:1:0:0:0:0:0:2, IP Address:0:0:0:0:0:FFFF:A00:1');
    assert.equal(cert.validToDate.toISOString(), '2060-06-01T00:00:00.000Z');
    assert.throws(() => issueCertificate(ca, { commonName: 'zone', usage: 'server', ipAddresses: ['fe80::1%eth0'] }), /not an IP address a certificate can hold/);
  });

  it('writes what node-forge reads as it wrote it: the subject, the extensions and the signature', function () {
    const leaf = issueCertificate(ca, { commonName: 'zoë@example.com', organizations: ['dev'], usage: 'client-and-server', dnsNames: ['a.example'], ipAddresses: ['10.1.2.3'] });
    const cert = forge.pki.certificateFromPem(leaf.certPem);
    assert.ok(forge.pki.certificateFromPem(ca.certPem).verify(cert));
    assert.deepEqual(cert.subject.attributes.map((a) => [a.shortName, a.value]), [['O', 'dev'], ['CN', 'zo\xc3\xab@example.com']]);
    assert.deepEqual(cert.extensions.map((e: { name: string }) => e.name), ['basicConstraints', 'keyUsage', 'extKeyUsage', 'subjectAltName', 'subjectKeyIdentifier', 'authorityKeyIdentifier']);
    const aki = cert.getExtension('authorityKeyIdentifier') as { value: string };
    assert.ok(aki.value.endsWith(forge.pki.certificateFromPem(ca.certPem).generateSubjectKeyIdentifier().getBytes()), "the issuer's key identifier");
  });

  it('refuses to sign with a CA key that is not RSA', function () {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(() => issueCertificate({ certPem: ca.certPem, keyPem: ec }, { commonName: 'x', usage: 'client' }), /signs with RSA keys; this one is ec/);
  });

  describe('certificate requests', function () {
    const alice = createCertificateRequest('alice', ['dev', 'zoë']);

    it('reads back the subject and the key of a request it wrote, signed by that key', function () {
      const read = readCertificateRequest(alice.requestPem);
      assert.deepEqual(read.subject, [{ name: 'O', value: 'dev' }, { name: 'O', value: 'zoë' }, { name: 'CN', value: 'alice' }]);
      assert.ok(read.publicKey.equals(createPublicKey(alice.keyPem)));
      assert.equal(read.selfSigned, true);
    });

    it('says a request whose subject was changed after signing is not signed by its key', function () {
      const der = Buffer.from(alice.requestPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      const at = der.indexOf('alice');
      der[at] = 'm'.charCodeAt(0);
      const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      const read = readCertificateRequest(pem);
      assert.equal(read.subject.at(-1)?.value, 'mlice');
      assert.equal(read.selfSigned, false);
    });

    it('says a request signed with SHA-1 is not signed as chaperone accepts', function () {
      const keys = forge.pki.rsa.generateKeyPair({ bits: 1024, e: 0x10001 });
      const csr = forge.pki.createCertificationRequest();
      csr.publicKey = keys.publicKey;
      csr.setSubject([{ shortName: 'CN', value: 'alice' }]);
      csr.sign(keys.privateKey, forge.md.sha1.create());
      assert.equal(readCertificateRequest(forge.pki.certificationRequestToPem(csr)).selfSigned, false);
    });

    it('refuses what is not one PEM request with an RSA key, or holds more', function () {
      const der = Buffer.from(alice.requestPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      const pem = (bytes: Buffer) => `-----BEGIN CERTIFICATE REQUEST-----\n${bytes.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      assert.throws(() => readCertificateRequest(ca.certPem), /not a PEM CERTIFICATE REQUEST/);
      assert.throws(() => readCertificateRequest(pem(Buffer.concat([der, Buffer.from([0])]))), /after the end/);
      assert.throws(() => readCertificateRequest(pem(der.subarray(0, der.length - 1))), /truncated/);
      // A well-formed request with an ECDSA key, signed by it.
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const info = sequence(element(Tag.INTEGER, Buffer.from([0])), sequence(set(sequence(objectIdentifier('2.5.4.3'), element(Tag.UTF8_STRING, Buffer.from('alice'))))), ec.publicKey.export({ type: 'spki', format: 'der' }), element(0xa0, Buffer.alloc(0)));
      const ecRequest = sequence(info, sequence(objectIdentifier('1.2.840.10045.4.3.2')), bitString(sign('sha256', info, ec.privateKey)));
      assert.throws(() => readCertificateRequest(pem(ecRequest)), /a ec key/);
    });

    it('refuses a request whose structure holds more than RFC 2986 allows, where another parser could read it otherwise', function () {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const spki = publicKey.export({ type: 'spki', format: 'der' });
      const pem = (info: Buffer) => {
        const request = sequence(info, sequence(objectIdentifier('1.2.840.113549.1.1.11'), element(Tag.NULL, Buffer.alloc(0))), bitString(sign('sha256', info, privateKey)));
        return `-----BEGIN CERTIFICATE REQUEST-----\n${request.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      };
      const version = element(Tag.INTEGER, Buffer.from([0]));
      const cn = (...parts: Buffer[]) => sequence(set(sequence(objectIdentifier('2.5.4.3'), ...parts)));
      const attributes = element(0xa0, Buffer.alloc(0));
      assert.equal(readCertificateRequest(pem(sequence(version, cn(element(Tag.UTF8_STRING, Buffer.from('alice'))), spki, attributes))).selfSigned, true);
      assert.throws(() => readCertificateRequest(pem(sequence(version, cn(element(Tag.UTF8_STRING, Buffer.from('alice')), element(Tag.UTF8_STRING, Buffer.from('admin'))), spki, attributes))), /more than a type and a value/);
      assert.throws(() => readCertificateRequest(pem(sequence(version, cn(element(Tag.UTF8_STRING, Buffer.from('alice'))), spki, attributes, attributes))), /more than a version, a subject, a key and attributes/);
      assert.throws(() => readCertificateRequest(pem(sequence(version, cn(element(Tag.UTF8_STRING, Buffer.from('alice'))), spki, element(Tag.UTF8_STRING, Buffer.from('x'))))), /more than a version, a subject, a key and attributes/);
    });
  });
});
