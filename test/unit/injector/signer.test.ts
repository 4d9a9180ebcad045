import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { V1CertificateSigningRequest } from '@kubernetes/client-node';
import forge from 'node-forge';
import { awaitsSigning, DEFAULT_CERTIFICATE_SECONDS, IDENTITY_SIGNER, MAX_CERTIFICATE_SECONDS, signRequest } from '../../../injector/certs/signer.js';
import { createCA, createCertificateRequest, isIssuedBy } from '../../../lib/pki.js';

function request(requestPem: string, spec: Partial<V1CertificateSigningRequest['spec']> = {}): V1CertificateSigningRequest {
  return { spec: { request: Buffer.from(requestPem).toString('base64'), signerName: IDENTITY_SIGNER, usages: ['client auth'], ...spec } };
}

describe('the signer chaperone.dev/identity', function () {
  this.timeout(30_000);
  const ca = createCA({ commonName: 'identity' });
  const alice = createCertificateRequest('alice@example.com', ['dev', 'ops']);

  it("signs the request's key for client auth, with its CN and O, for the lifetime asked for", function () {
    const outcome = signRequest(ca, request(alice.requestPem, { expirationSeconds: 3600, usages: ['client auth', 'digital signature', 'key encipherment'] }));
    assert.ok('certificatePem' in outcome, JSON.stringify(outcome));
    const cert = new X509Certificate(outcome.certificatePem);
    assert.equal(cert.subject, 'O=dev\nO=ops\nCN=alice@example.com');
    assert.ok(isIssuedBy(outcome.certificatePem, ca.certPem));
    assert.equal(cert.keyUsage?.join(','), '1.3.6.1.5.5.7.3.2', 'client auth only');
    assert.ok(cert.checkPrivateKey(createPrivateKey(alice.keyPem)), 'for the key the request was made with');
    const left = cert.validToDate.getTime() - Date.now();
    assert.ok(left > 3590_000 && left <= 3600_000, `${left} ms`);
  });

  it('signs for 8 hours without expirationSeconds, and for 7 days at most', function () {
    const lifetime = (spec: Partial<V1CertificateSigningRequest['spec']>) => {
      const outcome = signRequest(ca, request(alice.requestPem, spec));
      assert.ok('certificatePem' in outcome);
      return Math.round((new X509Certificate(outcome.certificatePem).validToDate.getTime() - Date.now()) / 1000);
    };
    assert.ok(Math.abs(lifetime({}) - DEFAULT_CERTIFICATE_SECONDS) < 10);
    assert.ok(Math.abs(lifetime({ expirationSeconds: 365 * 24 * 3600 }) - MAX_CERTIFICATE_SECONDS) < 10);
  });

  it('refuses system: names, other usages, other subject fields and what is not a request, with a reason', function () {
    const reason = (spec: V1CertificateSigningRequest) => {
      const outcome = signRequest(ca, spec);
      assert.ok('reason' in outcome, 'not signed');
      return outcome.reason;
    };
    assert.equal(reason(request(createCertificateRequest('system:admin').requestPem)), 'SystemName');
    assert.equal(reason(request(createCertificateRequest('mallory', ['system:masters']).requestPem)), 'SystemName');
    assert.equal(reason(request(alice.requestPem, { usages: ['client auth', 'server auth'] })), 'UnsupportedUsages');
    assert.equal(reason(request(alice.requestPem, { usages: ['digital signature'] })), 'UnsupportedUsages');
    assert.equal(reason(request('not a request')), 'BadRequest');

    const withOu = forge.pki.createCertificationRequest();
    const keys = forge.pki.rsa.generateKeyPair({ bits: 1024, e: 0x10001 });
    withOu.publicKey = keys.publicKey;
    withOu.setSubject([{ shortName: 'OU', value: 'admins' }, { shortName: 'CN', value: 'alice' }]);
    withOu.sign(keys.privateKey, forge.md.sha256.create());
    assert.equal(reason(request(forge.pki.certificationRequestToPem(withOu))), 'BadSubject');
  });

  it('signs only what is approved, not denied, failed or signed already', function () {
    const withConditions = (types: string[], certificate?: string): V1CertificateSigningRequest => ({
      ...request(alice.requestPem),
      status: { conditions: types.map((type) => ({ type, status: 'True' })), ...(certificate ? { certificate } : {}) },
    });
    assert.equal(awaitsSigning(withConditions([])), false);
    assert.equal(awaitsSigning(withConditions(['Approved'])), true);
    assert.equal(awaitsSigning(withConditions(['Approved', 'Failed'])), false);
    assert.equal(awaitsSigning(withConditions(['Denied'])), false);
    assert.equal(awaitsSigning(withConditions(['Approved'], 'Y2VydA==')), false);
  });
});
