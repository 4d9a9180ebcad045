// The injector's certificates, read back with Node's own X509Certificate: what is in them (names,
// usages, validity, key sizes), when they are renewed, and how a CA rotation moves through its phases.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import { certificateInfo, createCA, isIssuedBy, issueCertificate, joinPemCertificates, keyMatchesCertificate, splitPemCertificates } from '../../../lib/pki.js';
import {
  advanceCaSet,
  beginRotation,
  ISSUE_BACKDATE_MS,
  newCaSet,
  nextCaDeadline,
  renewalTime,
  trustBundle,
  type CaPolicy,
  type CaSet,
} from '../../../injector/certs/ca-set.js';
import { caSetFromSecret, caSetToData } from '../../../injector/certs/ca-secret.js';
import { servingCertificateFrom } from '../../../injector/certs/feed.js';
import { issueServingLeaf, leafRenewalReason } from '../../../injector/certs/leaf.js';
import { caBundlePatch, tlsSecretData, webhookLeafSpec } from '../../../injector/certs/webhook.js';
import { sidecarLeafSpec } from '../../../injector/provision/objects.js';
import { listenerServicesOf } from '../../../lib/sidecar-config/installation.js';
import { encodeData } from '../../../injector/provision/kube.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const HOUR = 3600_000;
const DAY = 24 * HOUR;

const policy: CaPolicy = { commonName: 'test-ca', validityMs: 365 * DAY, propagationMs: 2 * 60_000, overlapMs: DAY };
const at = (base: Date, ms: number) => new Date(base.getTime() + ms);
const bundleCount = (set: CaSet) => splitPemCertificates(trustBundle(set)).length;

function lifetimeMs(certPem: string): number {
  const cert = new X509Certificate(certPem);
  return cert.validToDate.getTime() - cert.validFromDate.getTime() - ISSUE_BACKDATE_MS;
}

describe('injector certificates', function () {
  this.timeout(30_000);
  const now = new Date();
  const base = newCaSet(now, policy);

  describe('a CA the injector creates', function () {
    it('is a CA, 2048-bit RSA, named <name>@<unix seconds>, valid for the configured time', function () {
      const cert = new X509Certificate(base.active.certPem);
      assert.equal(cert.ca, true);
      assert.equal(cert.subject, `CN=test-ca@${Math.floor(now.getTime() / 1000)}`);
      assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
      assert.ok(cert.verify(cert.publicKey), 'self-signed');
      assert.ok(Math.abs(lifetimeMs(base.active.certPem) - policy.validityMs) < 2000, 'lifetime as configured');
      assert.ok(cert.validFromDate.getTime() <= now.getTime() - ISSUE_BACKDATE_MS + 1000, 'backdated for clock skew');
    });

    it('is due for renewal when a third of its life is left', function () {
      const due = renewalTime(base.active.certPem).getTime();
      const expected = new X509Certificate(base.active.certPem).validToDate.getTime() - policy.validityMs / 3;
      assert.ok(Math.abs(due - expected) < 2000);
    });
  });

  describe('a CA rotation', function () {
    it('trusts the successor at once and lets it sign only after the propagation delay', function () {
      const { set, events } = beginRotation(base, now, policy);
      assert.equal(events.length, 1);
      assert.equal(set.active, base.active, 'the old CA still signs');
      assert.equal(set.pending?.activateAt.getTime(), now.getTime() + policy.propagationMs);
      assert.equal(bundleCount(set), 2, 'both are trusted');
      assert.deepEqual(beginRotation(set, now, policy).events, [], 'a second request while one is under way changes nothing');
      assert.deepEqual(advanceCaSet(set, at(now, policy.propagationMs - 1000), policy).events, [], 'nothing happens before the delay');
    });

    it('hands signing to the successor, keeps the old CA trusted for the overlap, then drops it', function () {
      const rotating = beginRotation(base, now, policy).set;
      const switchTime = at(now, policy.propagationMs);
      const promoted = advanceCaSet(rotating, switchTime, policy).set;
      assert.equal(promoted.active.certPem, rotating.pending!.ca.certPem);
      assert.equal(promoted.pending, undefined);
      assert.deepEqual(promoted.retired, [{ certPem: base.active.certPem, trustUntil: at(switchTime, policy.overlapMs) }]);
      assert.equal(bundleCount(promoted), 2, 'both still trusted');
      assert.equal(splitPemCertificates(trustBundle(promoted))[0], promoted.active.certPem, 'the active CA comes first');
      assert.deepEqual(nextCaDeadline(promoted), at(switchTime, policy.overlapMs), 'the next thing to happen is the end of the overlap');

      const pruned = advanceCaSet(promoted, at(switchTime, policy.overlapMs), policy);
      assert.deepEqual(pruned.set.retired, []);
      assert.equal(bundleCount(pruned.set), 1);
      assert.match(pruned.events.join(), /no longer trusted/);
    });

    it('starts by itself when the CA nears its end', function () {
      const late = at(renewalTime(base.active.certPem), 1000);
      const { set, events } = advanceCaSet(base, late, policy);
      assert.ok(set.pending, 'a successor is pending');
      assert.match(events.join(), /nears its end/);
    });

    it('replaces an expired CA at once (nothing can bridge it)', function () {
      const expired: CaSet = { active: createCA({ commonName: 'old', notBefore: new Date(Date.now() - 2 * HOUR), validitySeconds: -HOUR / 1000 }), retired: [] };
      const { set, events } = advanceCaSet(expired, now, policy);
      assert.notEqual(set.active.certPem, expired.active.certPem);
      assert.equal(bundleCount(set), 1, 'the expired CA is not trusted');
      assert.match(events.join(), /expired/);
    });

    it('is kept in a Secret and read back unchanged', function () {
      const rotating = advanceCaSet(beginRotation(base, now, policy).set, at(now, policy.propagationMs), policy).set;
      const withPending = beginRotation(rotating, at(now, policy.propagationMs + 1000), policy).set;
      const data = caSetToData(withPending);
      assert.equal(data['ca.crt'], withPending.active.certPem);
      assert.equal(data['bundle.crt'], trustBundle(withPending));
      const secret: V1Secret = { metadata: { name: 'chaperone-identity-ca', namespace: 'chaperone-system' }, data: encodeData(data) };
      assert.deepEqual(caSetFromSecret(secret), withPending);
    });

    it('refuses a Secret that is not a CA set, naming the Secret', function () {
      const secret: V1Secret = { metadata: { name: 'chaperone-identity-ca', namespace: 'ns' }, data: encodeData({ 'ca.crt': base.active.certPem }) };
      assert.throws(() => caSetFromSecret(secret), /Secret ns\/chaperone-identity-ca lacks ca\.crt or ca\.key/);
      const broken: V1Secret = { ...secret, data: encodeData({ ...caSetToData(base), 'rotation.json': '{' }) };
      assert.throws(() => caSetFromSecret(broken), /rotation\.json is not JSON/);
    });
  });

  describe("the injector's serving certificate", function () {
    const spec = webhookLeafSpec({ namespace: 'chaperone-system', service: 'chaperone-injector', hosts: ['127.0.0.1', 'injector.example.com'], validityMs: 30 * DAY });
    const leaf = issueServingLeaf(base.active, spec, now);
    const cert = new X509Certificate(leaf.certPem);

    it('names the Service as the API server calls it, and the extra hosts', function () {
      assert.equal(
        cert.subjectAltName,
        'DNS:chaperone-injector.chaperone-system.svc, DNS:chaperone-injector.chaperone-system.svc.cluster.local, DNS:chaperone-injector.chaperone-system, ' +
          'DNS:chaperone-injector, DNS:injector.example.com, IP Address:127.0.0.1',
      );
      assert.equal(cert.subject, 'CN=chaperone-injector.chaperone-system.svc');
    });

    it('is for serving only, not a CA, 2048-bit, signed by the active CA, valid for the configured time', function () {
      assert.deepEqual(cert.keyUsage, [SERVER_AUTH]);
      assert.equal(cert.ca, false);
      assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
      assert.ok(isIssuedBy(leaf.certPem, base.active.certPem));
      assert.ok(Math.abs(lifetimeMs(leaf.certPem) - 30 * DAY) < 2000);
    });

    it('never outlives its CA', function () {
      const shortCa = createCA({ commonName: 'short', validitySeconds: 3600 });
      const capped = new X509Certificate(issueServingLeaf(shortCa, spec, now).certPem);
      assert.equal(capped.validToDate.getTime(), new X509Certificate(shortCa.certPem).validToDate.getTime());
    });

    it('is renewed when due, when the CA changed, when the names changed, and when the key does not match', function () {
      assert.equal(leafRenewalReason(leaf, base.active, spec, now), undefined);
      assert.equal(leafRenewalReason(undefined, base.active, spec, now), 'there is none');
      assert.match(leafRenewalReason(leaf, base.active, spec, at(renewalTime(leaf.certPem), 1000))!, /due for renewal/);
      const next = beginRotation(base, now, policy).set.pending!.ca;
      assert.match(leafRenewalReason(leaf, next, spec, now)!, /another CA/);
      assert.match(leafRenewalReason(leaf, base.active, { ...spec, ipAddresses: ['10.0.0.1'] }, now)!, /names/);
      const other = issueServingLeaf(base.active, spec, now);
      assert.match(leafRenewalReason({ certPem: leaf.certPem, keyPem: other.keyPem }, base.active, spec, now)!, /key does not belong/);
    });

    it('is served only with its own key', function () {
      const secret: V1Secret = { data: encodeData(tlsSecretData(leaf, trustBundle(base))) };
      const served = servingCertificateFrom(secret);
      assert.ok(typeof served !== 'string');
      assert.equal(served.caPem, trustBundle(base));
      const other = issueServingLeaf(base.active, spec, now);
      assert.match(servingCertificateFrom({ data: encodeData({ 'tls.crt': leaf.certPem, 'tls.key': other.keyPem }) }) as string, /does not belong/);
    });
  });

  describe("the sidecars' serving certificate", function () {
    const leaf = issueServingLeaf(base.active, sidecarLeafSpec('team-a', 30 * DAY), now);
    const cert = new X509Certificate(leaf.certPem);

    it('is for 127.0.0.1, ::1 and localhost, serving only: it can never pass as a person', function () {
      assert.equal(cert.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
      assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
      assert.equal(cert.checkHost('localhost'), 'localhost');
      assert.deepEqual(cert.keyUsage, [SERVER_AUTH], 'no clientAuth');
      assert.equal(cert.subject, 'CN=chaperone-sidecar.team-a');
      assert.equal(cert.ca, false);
      assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
      assert.equal(leafRenewalReason(leaf, base.active, sidecarLeafSpec('team-a', 30 * DAY), now), undefined, 'and it is not re-issued on every pass');
    });

    it("names the installation's listener Services in its own namespace only, and is re-issued when they change", function () {
      const config = (yaml: string) => ({ resourceVersion: '1', files: new Map([['sidecar.yaml', Buffer.from(yaml)]]) });
      const services = listenerServicesOf(config('extraListen: ":7443"\nextraListenServices: [dashboard-api]\n'));
      const withServices = issueServingLeaf(base.active, sidecarLeafSpec('team-a', 30 * DAY, services), now);
      const named = new X509Certificate(withServices.certPem);
      assert.equal(named.subjectAltName, 'DNS:localhost, DNS:dashboard-api.team-a.svc, DNS:dashboard-api.team-a.svc.cluster.local, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
      assert.equal(named.checkHost('dashboard-api.team-b.svc'), undefined);
      assert.equal(leafRenewalReason(leaf, base.active, sidecarLeafSpec('team-a', 30 * DAY, services), now), 'its names are not the ones wanted');
      assert.equal(leafRenewalReason(withServices, base.active, sidecarLeafSpec('team-a', 30 * DAY), now), 'its names are not the ones wanted');
      const twice = sidecarLeafSpec('team-a', 30 * DAY, ['dashboard-api', 'dashboard-api']);
      assert.equal(leafRenewalReason(issueServingLeaf(base.active, twice, now), base.active, twice, now), undefined, 'a Service named twice is one name: not re-issued at every pass');
      // A configuration the injector refuses names nothing: no pod gets it, and no certificate its names.
      for (const refused of ['extraListenServices: [dashboard-api]\n', 'extraListen: ":7443"\nextraListenServices: [evil.example.com]\n', 'extraListen: "10.0.0.1:7443"\nextraListenServices: [a]\n', ': not yaml: [']) {
        assert.deepEqual(listenerServicesOf(config(refused)), [], refused);
      }
    });
  });

  describe("the webhook configuration's caBundle", function () {
    const bundle = trustBundle(base);
    const encoded = Buffer.from(bundle).toString('base64');
    const configuration = (bundles: (string | undefined)[]): V1MutatingWebhookConfiguration => ({
      metadata: { name: 'chaperone-injector', resourceVersion: '42' },
      webhooks: bundles.map((caBundle, i) => ({
        name: `w${i}.chaperone.dev`,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        clientConfig: { url: `https://127.0.0.1:${8443 + i}/mutate`, ...(caBundle ? { caBundle } : {}) },
      })),
    });

    it('is set on every webhook that lacks it, under a resourceVersion precondition', function () {
      assert.deepEqual(caBundlePatch(configuration([encoded, undefined, 'c3RhbGU=']), bundle), [
        { op: 'test', path: '/metadata/resourceVersion', value: '42' },
        { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: encoded },
        { op: 'add', path: '/webhooks/2/clientConfig/caBundle', value: encoded },
      ]);
    });

    it('is left alone when every webhook has it: nothing is written', function () {
      assert.deepEqual(caBundlePatch(configuration([encoded, encoded]), bundle), []);
    });
  });

  describe('lib/pki helpers', function () {
    const ca = createCA({ commonName: 'helper-ca' });
    const leaf = issueCertificate(ca, { commonName: 'x', usage: 'server', dnsNames: ['a.example'], ipAddresses: ['10.1.2.3'] });

    it('splits and joins PEM bundles, dropping duplicates', function () {
      const joined = joinPemCertificates([ca.certPem, `${leaf.certPem}\n${ca.certPem}`]);
      assert.deepEqual(splitPemCertificates(joined), [ca.certPem, leaf.certPem]);
    });

    it('reads names, validity, fingerprint and CA-ness', function () {
      const info = certificateInfo(leaf.certPem);
      assert.deepEqual(info.dnsNames, ['a.example']);
      assert.deepEqual(info.ipAddresses, ['10.1.2.3']);
      assert.equal(info.isCA, false);
      assert.match(info.sha256, /^[0-9a-f]{64}$/);
      assert.ok(info.notBefore < info.notAfter);
    });

    it('writes names a PrintableString cannot hold (the CAs are named name@time) as UTF8String, which Go accepts', function () {
      const tagOf = (pem: string) => forge.pki.certificateFromPem(pem).subject.getField('CN') as { valueTagClass: number };
      assert.equal(tagOf(base.active.certPem).valueTagClass, forge.asn1.Type.UTF8);
      assert.equal(tagOf(leaf.certPem).valueTagClass, forge.asn1.Type.PRINTABLESTRING, 'plain names as before');
      const person = issueCertificate(ca, { commonName: 'zoë@example.com', usage: 'client' });
      assert.equal(new X509Certificate(person.certPem).subject, 'CN=zoë@example.com');
      assert.ok(isIssuedBy(issueCertificate(base.active, { commonName: 'x', usage: 'server' }).certPem, base.active.certPem), 'the issuer name still matches');
    });

    it('tells who issued a certificate and whether a key belongs to it', function () {
      assert.ok(isIssuedBy(leaf.certPem, ca.certPem));
      assert.ok(!isIssuedBy(leaf.certPem, createCA({ commonName: 'helper-ca' }).certPem), 'same name, other key');
      assert.ok(keyMatchesCertificate(leaf.certPem, leaf.keyPem));
      assert.ok(!keyMatchesCertificate(leaf.certPem, ca.keyPem));
      assert.ok(!keyMatchesCertificate('not a certificate', leaf.keyPem));
    });
  });
});
