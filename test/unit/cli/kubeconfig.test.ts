import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { createCA, issueCertificate } from '../../../lib/pki.js';
import { kubeconfigYaml } from '../../../lib/kubeconfig.js';
import { checkIdentityCa, identityCaFiles, personKubeconfig } from '../../../cli/kubeconfig.js';
import { injectorConfigFrom, loadKubeconfig, namespaceOf } from '../../../cli/cluster.js';
import { runMain } from '../../support/run-main.js';

const chaperone = (args: string[], env: NodeJS.ProcessEnv = {}) => runMain('cli/main.ts', args, env);

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

  it('writes the kubeconfig from files, without a cluster, readable only by its owner', async function () {
    const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-cli-'));
    try {
      await writeFile(path.join(dir, 'ca.crt'), identityCa.certPem);
      await writeFile(path.join(dir, 'ca.key'), identityCa.keyPem);
      await writeFile(path.join(dir, 'serving-ca.crt'), servingCa.certPem);
      const out = path.join(dir, 'bob.kubeconfig');
      const args = ['kubeconfig', '--user', 'bob', '--group', 'sre', '--ttl', '30m', '--identity-ca-cert', path.join(dir, 'ca.crt'), '--identity-ca-key', path.join(dir, 'ca.key'), '--serving-ca', path.join(dir, 'serving-ca.crt'), '-o', out];
      // A kubeconfig that does not exist: the files are all it needs.
      const result = await chaperone(args, { KUBECONFIG: path.join(dir, 'no-such-kubeconfig') });
      assert.equal(result.code, 0, result.stderr);
      assert.equal((await stat(out)).mode & 0o777, 0o600);
      const cert = certificateOf(await readFile(out, 'utf8'));
      assert.equal(cert.subject, 'O=sre\nCN=bob');
      const lifetime = (Date.parse(cert.validTo) - Date.now()) / 1000;
      assert.ok(lifetime > 1700 && lifetime <= 1800, `lifetime ${lifetime}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses an identity CA that could not sign what the sidecar accepts', function () {
    const leaf = issueCertificate(identityCa, { commonName: 'not-a-ca', usage: 'client' });
    const expired = createCA({ commonName: 'old', notBefore: new Date(Date.now() - 48 * 3600_000), validitySeconds: -3600 });
    assert.throws(() => checkIdentityCa({ certPem: identityCa.certPem, keyPem: servingCa.keyPem }), /^Error: the identity CA key does not belong to the identity CA certificate$/);
    assert.throws(() => checkIdentityCa(leaf), /is not a CA certificate/);
    assert.throws(() => checkIdentityCa(expired), /the identity CA expired at /);
    assert.throws(() => checkIdentityCa({ certPem: 'garbage', keyPem: identityCa.keyPem }), /is not a PEM certificate/);
    const base = { user: 'alice', groups: [], ttlSeconds: 3600, server: 'https://127.0.0.1:6443', servingCaPem: servingCa.certPem };
    assert.throws(() => personKubeconfig({ ...base, identityCa: leaf }), /is not a CA certificate/);
  });

  it('takes the identity CA files in pairs: both, or neither to read it from the cluster', async function () {
    assert.deepEqual(identityCaFiles({ identityCaCert: 'a.crt', identityCaKey: 'a.key' }), { cert: 'a.crt', key: 'a.key' });
    assert.equal(identityCaFiles({}), undefined);
    assert.throws(() => identityCaFiles({ identityCaCert: 'a.crt' }), /--identity-ca-cert and --identity-ca-key go together/);
    const result = await chaperone(['kubeconfig', '--user', 'alice', '--identity-ca-key', 'a.key']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'chaperone kubeconfig: --identity-ca-cert and --identity-ca-key go together: give both, or neither to read the identity CA from the cluster\n');
  });

  it('says how to give it a cluster when there is none', async function () {
    const result = await chaperone(['kubeconfig', '--user', 'alice'], { HOME: '/nonexistent' });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'chaperone kubeconfig: no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config\n');
  });
});

describe('how the chaperone command reaches a cluster (as kubectl does)', function () {
  let dir: string;
  const ca = createCA({ commonName: 'cluster' });
  async function kubeconfigFile(name: string, server: string, context: string, namespace?: string): Promise<string> {
    const config = YAML.parse(kubeconfigYaml(server, ca.certPem, context, { token: 't' }, context)) as { contexts: { context: Record<string, string> }[] };
    if (namespace) config.contexts[0]!.context.namespace = namespace;
    const file = path.join(dir, name);
    await writeFile(file, YAML.stringify(config));
    return file;
  }

  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-kubeconfigs-'));
  });
  after(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads --kubeconfig over KUBECONFIG', async function () {
    const flag = await kubeconfigFile('flag', 'https://flag.example:6443', 'flag');
    const env = await kubeconfigFile('env', 'https://env.example:6443', 'env');
    assert.equal(loadKubeconfig({ kubeconfig: flag }, { KUBECONFIG: env }).getCurrentCluster()?.server, 'https://flag.example:6443');
  });

  it('merges every file in KUBECONFIG, skipping missing ones, the first current context winning', async function () {
    const first = await kubeconfigFile('first', 'https://first.example:6443', 'first', 'team-a');
    const second = await kubeconfigFile('second', 'https://second.example:6443', 'second');
    const kubeconfig = loadKubeconfig({}, { KUBECONFIG: [path.join(dir, 'missing'), first, second].join(path.delimiter) });
    assert.equal(kubeconfig.getCurrentCluster()?.server, 'https://first.example:6443');
    assert.equal(namespaceOf(undefined, kubeconfig), 'team-a', "the context's namespace");
    assert.equal(namespaceOf('team-b', kubeconfig), 'team-b', '--namespace wins');
    const other = loadKubeconfig({ context: 'second' }, { KUBECONFIG: [first, second].join(path.delimiter) });
    assert.equal(other.getCurrentCluster()?.server, 'https://second.example:6443');
    assert.equal(namespaceOf(undefined, other), 'default');
  });

  it('falls back to ~/.kube/config, and says what is wrong when nothing fits', async function () {
    const home = path.join(dir, 'home');
    await rm(home, { recursive: true, force: true });
    assert.throws(() => loadKubeconfig({}, {}, home), /^Error: no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~\/.kube\/config$/);
    const file = await kubeconfigFile('home-config', 'https://home.example:6443', 'home');
    await mkdir(path.join(home, '.kube'), { recursive: true });
    await copyFile(file, path.join(home, '.kube', 'config'));
    assert.equal(loadKubeconfig({}, {}, home).getCurrentCluster()?.server, 'https://home.example:6443');
    assert.throws(() => loadKubeconfig({ context: 'nope' }, {}, home), /the kubeconfig has no context "nope"/);
    assert.throws(() => loadKubeconfig({}, { KUBECONFIG: path.join(dir, 'missing') }), /none of the files in KUBECONFIG exists/);
  });

  it("reads the injector's names from its own config file, the namespace flag winning", async function () {
    const file = path.join(dir, 'injector.yaml');
    await writeFile(file, YAML.stringify({ namespace: 'platform', caConfigMap: 'our-ca', webhookConfiguration: 'our-injector' }));
    const config = injectorConfigFrom({ injectorConfig: file });
    assert.deepEqual([config.namespace, config.caConfigMap, config.webhookConfiguration, config.serviceAccount], ['platform', 'our-ca', 'our-injector', 'chaperone-impersonator']);
    assert.equal(injectorConfigFrom({ injectorConfig: file, injectorNamespace: 'other' }).namespace, 'other');
    assert.equal(injectorConfigFrom({}).namespace, 'chaperone-system');
    await writeFile(file, YAML.stringify({ caConfigMap: 7 }));
    assert.throws(() => injectorConfigFrom({ injectorConfig: file }), /^Error: the injector configuration is not valid:\n.*caConfigMap/);
  });
});

describe('chaperone --help', function () {
  this.timeout(30_000);
  for (const command of ['kubeconfig', 'doctor', 'demo', 'revoke']) {
    it(`chaperone ${command} --help shows its options and examples`, async function () {
      const result = await chaperone([command, '--help']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^Usage: chaperone ${command} `));
      assert.match(result.stdout, /\nExamples?:\n( {2}#.*\n)? {2}chaperone /);
    });
  }
});

describe('chaperone kubeconfig --request', function () {
  this.timeout(30_000);
  const chaperoneNowhere = (args: string[]) => chaperone(['kubeconfig', ...args], { KUBECONFIG: '/nonexistent/kubeconfig' });

  it('refuses what cannot make a request before reaching the cluster: a short lifetime, files, --approve alone, a system: name', async function () {
    const cases: [string[], string][] = [
      [['--request', '--user', 'alice', '--ttl', '5m'], 'chaperone kubeconfig: --ttl must be between 600s and 168h\n'],
      [['--request', '--user', 'alice', '--identity-ca-cert', 'a', '--identity-ca-key', 'b'], 'chaperone kubeconfig: --request asks the signer: not together with --identity-ca-cert and --identity-ca-key\n'],
      [['--approve', '--user', 'alice', '--identity-ca-cert', 'a', '--identity-ca-key', 'b'], 'chaperone kubeconfig: --approve goes with --request\n'],
      [['--request', '--user', 'system:admin'], 'chaperone kubeconfig: system: names belong to the cluster; the sidecar refuses them from a certificate (see --guard-allow)\n'],
    ];
    for (const [args, stderr] of cases) {
      const result = await chaperoneNowhere(args);
      assert.equal(result.code, 1, args.join(' '));
      assert.equal(result.stderr, stderr, args.join(' '));
      assert.equal(result.stdout, '');
    }
  });
});
