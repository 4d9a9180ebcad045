import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { createCA } from '../../../lib/pki.js';
import { personKubeconfig } from '../../../cli/kubeconfig.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../cli/main.ts');

interface Kubeconfig {
  clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
  users: { name: string; user: { 'client-certificate-data': string } }[];
}

function certificateOf(yaml: string): X509Certificate {
  const config = YAML.parse(yaml) as Kubeconfig;
  return new X509Certificate(Buffer.from(config.users[0]!.user['client-certificate-data'], 'base64'));
}

describe('chaperone kubeconfig', function () {
  this.timeout(30_000);
  const identityCa = createCA({ commonName: 'identity' });
  const servingCa = createCA({ commonName: 'serving' });

  it('issues a client certificate for the person, signed by the identity CA, for the TTL', function () {
    const yaml = personKubeconfig({ user: 'alice', groups: ['dev', 'ops'], ttlSeconds: 3600, identityCa, server: 'https://127.0.0.1:6443', servingCaPem: servingCa.certPem });
    const cert = certificateOf(yaml);
    assert.equal(cert.subject, 'O=dev\nO=ops\nCN=alice');
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
    assert.ok(cert.checkIssued(new X509Certificate(identityCa.certPem)));
    const lifetime = (Date.parse(cert.validTo) - Date.now()) / 1000;
    assert.ok(lifetime > 3500 && lifetime <= 3600);
    const config = YAML.parse(yaml) as Kubeconfig;
    assert.equal(config.clusters[0]!.cluster.server, 'https://127.0.0.1:6443');
    assert.equal(Buffer.from(config.clusters[0]!.cluster['certificate-authority-data'], 'base64').toString(), servingCa.certPem);
  });

  it('refuses system: names and long lifetimes', function () {
    const base = { groups: [], ttlSeconds: 3600, identityCa, server: 'https://127.0.0.1:6443', servingCaPem: servingCa.certPem };
    assert.throws(() => personKubeconfig({ ...base, user: 'system:admin' }), /system: names belong to the cluster/);
    assert.throws(() => personKubeconfig({ ...base, user: 'alice', groups: ['system:masters'] }), /system: names/);
    assert.throws(() => personKubeconfig({ ...base, user: 'alice', ttlSeconds: 30 * 24 * 3600 }), /--ttl/);
  });

  it('writes the kubeconfig from the command line, readable only by its owner', async function () {
    const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-cli-'));
    await writeFile(path.join(dir, 'ca.crt'), identityCa.certPem);
    await writeFile(path.join(dir, 'ca.key'), identityCa.keyPem);
    await writeFile(path.join(dir, 'serving-ca.crt'), servingCa.certPem);
    const out = path.join(dir, 'bob.kubeconfig');
    const args = ['--import', 'tsx', CLI, 'kubeconfig', '--user', 'bob', '--group', 'sre', '--ttl', '30m', '--identity-ca-cert', path.join(dir, 'ca.crt'), '--identity-ca-key', path.join(dir, 'ca.key'), '--serving-ca', path.join(dir, 'serving-ca.crt'), '-o', out];
    await new Promise<void>((resolve, reject) => execFile(process.execPath, args, (err, _stdout, stderr) => (err ? reject(new Error(stderr)) : resolve())));
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    const cert = certificateOf(await readFile(out, 'utf8'));
    assert.equal(cert.subject, 'O=sre\nCN=bob');
    const lifetime = (Date.parse(cert.validTo) - Date.now()) / 1000;
    assert.ok(lifetime > 1700 && lifetime <= 1800, `lifetime ${lifetime}`);
  });
});
