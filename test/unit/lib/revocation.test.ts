import assert from 'node:assert/strict';
import { revocationEntries, withRevocations } from '../../../cli/revoke.js';
import { loadSidecarConfig } from '../../../lib/sidecar-config/options.js';
import { entriesInForce, parseRevocations, revocationProblems, revokedBecause } from '../../../lib/sidecar-config/revocation.js';

describe('client certificate revocations', function () {
  const now = Date.parse('2026-12-07T09:00:00Z');

  it('refuses a serial (colons, case and leading zeros aside) and a username until its time', function () {
    const revocations = parseRevocations(['serial:0A:1B:2C', 'user:mallory@example.com until 2026-12-08T09:00:00Z', 'user:eve']);
    assert.equal(revokedBecause(revocations, '0A1B2C', 'alice', now), 'certificate revoked (serial a1b2c)');
    assert.equal(revokedBecause(revocations, 'A1B2C', 'alice', now), 'certificate revoked (serial a1b2c)');
    assert.equal(revokedBecause(revocations, 'A1B2D', 'alice', now), undefined);
    assert.equal(revokedBecause(revocations, 'FF', 'mallory@example.com', now), 'certificates of mallory@example.com revoked until 2026-12-08T09:00:00.000Z');
    assert.equal(revokedBecause(revocations, 'FF', 'mallory@example.com', Date.parse('2026-12-08T09:00:00Z')), undefined, 'over at its time');
    assert.equal(revokedBecause(revocations, 'FF', 'eve', now + 1e12), 'certificates of eve revoked');
  });

  it('names each bad entry, and the sidecar configuration refuses them', function () {
    assert.deepEqual(revocationProblems(['serial:xyz', 'user:bob until tomorrow', 'bob']), [
      'clientCertificateRevocations: "serial:xyz" is neither serial:<hex> nor user:<name> [until <RFC 3339 time>]',
      'clientCertificateRevocations: "user:bob until tomorrow": "tomorrow" is not an RFC 3339 time (example: 2026-12-14T09:00:00Z)',
      'clientCertificateRevocations: "bob" is neither serial:<hex> nor user:<name> [until <RFC 3339 time>]',
    ]);
    const argv = ['--tls-cert-file=/c', '--tls-key-file=/k', '--upstream=https://127.0.0.1:6443'];
    assert.throws(() => loadSidecarConfig([...argv, '--client-certificate-revocations=serial:zz'], {}), /clientCertificateRevocations: "serial:zz"/);
    assert.deepEqual(loadSidecarConfig([...argv, '--client-certificate-revocations=serial:ab,user:eve'], {}).clientCertificateRevocations, ['serial:ab', 'user:eve']);
  });

  it('chaperone revoke adds entries to sidecar.yaml, keeping the rest, dropping lapsed ones, not repeating any', function () {
    const entries = revocationEntries({ serial: ['0A:FF'], user: ['mallory'], forSeconds: 3600 }, new Date(now));
    assert.deepEqual(entries, ['serial:aff', 'user:mallory until 2026-12-07T10:00:00Z']);
    const yaml = '# who signs in\noidcIssuerUrl: https://id.example.com\nclientCertificateRevocations:\n  - serial:aff\n  - user:old until 2026-12-01T00:00:00Z\n';
    assert.equal(
      withRevocations(yaml, entries, now),
      '# who signs in\noidcIssuerUrl: https://id.example.com\nclientCertificateRevocations:\n  - serial:aff\n  - user:mallory until 2026-12-07T10:00:00Z\n',
    );
    assert.equal(withRevocations('', ['serial:1'], now), 'clientCertificateRevocations:\n  - serial:1\n');
    assert.deepEqual(entriesInForce(['user:a until 2026-12-07T08:59:59Z', 'user:b', 'serial:1'], now), ['user:b', 'serial:1']);
    assert.deepEqual(revocationEntries({ serial: [], user: ['eve'], forever: true }), ['user:eve']);
    assert.throws(() => revocationEntries({ serial: [], user: [] }), /name what to revoke/);
    assert.throws(() => revocationEntries({ serial: ['0x12'], user: [] }), /--serial 0x12 is not a hexadecimal serial number/);
    assert.throws(() => withRevocations('clientCertificateRevocations: 3\n', ['serial:1']), /is not a list of strings/);
  });
});
