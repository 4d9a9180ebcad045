import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createCA, issueCertificate } from '../../../lib/pki.js';

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
});
