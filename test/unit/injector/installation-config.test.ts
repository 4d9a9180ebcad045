// The injector checks the installation configuration as the pod's sidecar would load it, before the
// pod gets it; what it refuses is a denial naming the field.
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { Denial } from '../../../injector/denial.js';
import { withInstallationConfig, type InstallationConfigs } from '../../../injector/installation-config.js';
import { injectPod } from '../../../injector/mutate.js';
import { resolveSettings } from '../../../injector/settings.js';
import type { InstallationSecret } from '../../../lib/sidecar-config/installation.js';
import { testConfig } from './helpers.js';

const INSTALLATION = 'chaperone-system';

function secret(files: Record<string, string>, resourceVersion = String(Math.random()).slice(2)): InstallationSecret {
  return { resourceVersion, files: new Map(Object.entries(files).map(([key, text]) => [key, Buffer.from(text)])) };
}

const JWT_CONFIG = YAML.stringify({
  apiVersion: 'apiserver.config.k8s.io/v1',
  kind: 'AuthenticationConfiguration',
  jwt: [{ issuer: { url: 'https://issuer.example.com', audiences: ['headlamp'] }, claimMappings: { username: { claim: 'email', prefix: '' }, groups: { claim: 'groups', prefix: 'oidc:' } } }],
});

const settings = () => resolveSettings(testConfig(['--tls-cert-file=/unused/tls.crt', '--tls-key-file=/unused/tls.key']));
const only = (found: InstallationSecret | undefined): InstallationConfigs => () => Promise.resolve(found);

async function denial(promise: Promise<unknown>): Promise<Denial> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Denial, `expected a Denial, got ${String(err)}`);
    return err;
  }
  assert.fail('the pod was allowed');
}

describe('injector/installation-config', function () {
  it('passes a valid configuration to the sidecar, which alone mounts the in-memory volume it is written to', async function () {
    const resolved = await withInstallationConfig(settings(), INSTALLATION, false, only(secret({ 'sidecar.yaml': 'authenticationConfig: authentication-config.yaml\n', 'authentication-config.yaml': JWT_CONFIG })));
    assert.equal(resolved.installationConfig, `${INSTALLATION}/chaperone-sidecar-config`);
    const pod = injectPod({ metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'app:1' }] } }, resolved);
    const sidecar = pod.spec!.initContainers!.find((c) => c.name === 'chaperone')!;
    assert.ok(sidecar.args!.includes(`--installation-config=${INSTALLATION}/chaperone-sidecar-config`));
    assert.ok(sidecar.args!.includes('--installation-config-dir=/var/run/chaperone/installation'));
    assert.deepEqual(pod.spec!.volumes!.find((v) => v.name === 'chaperone-installation')?.emptyDir, { medium: 'Memory', sizeLimit: '4Mi' });
    assert.deepEqual(pod.spec!.containers[0]!.volumeMounts!.map((m) => m.name), ['chaperone-api-access']);
  });

  it("gives the sidecar the installation's extra listener as a flag of the pod's own, and declares its port", async function () {
    const resolved = await withInstallationConfig(settings(), INSTALLATION, false, only(secret({ 'sidecar.yaml': 'extraListen: ":7443"\nextraListenServices: [dashboard-api]\n' })));
    const pod = injectPod({ metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 4466 }] }] } }, resolved);
    const sidecar = pod.spec!.initContainers!.find((c) => c.name === 'chaperone')!;
    assert.deepEqual(sidecar.args!.filter((arg) => arg.startsWith('--extra-listen') || arg.startsWith('--listen')), ['--listen=127.0.0.1:6443', '--extra-listen=:7443']);
    assert.deepEqual(sidecar.ports, [
      { name: 'chaperone-ops', containerPort: 9901, protocol: 'TCP' },
      { name: 'chaperone-https', containerPort: 7443, protocol: 'TCP' },
    ]);
    const app = pod.spec!.containers[0]!;
    assert.deepEqual(app.env!.filter((e) => e.name.startsWith('KUBERNETES_SERVICE')).map((e) => e.value), ['127.0.0.1', '6443', '6443'], 'the dashboard still reaches the loopback listener alone');
  });

  it("refuses a pod whose own container declares the extra listener's port, naming both", async function () {
    const resolved = await withInstallationConfig(settings(), INSTALLATION, false, only(secret({ 'sidecar.yaml': 'extraListen: ":8443"\nextraListenServices: [dashboard-api]\n' })));
    const pod = { metadata: { name: 'dash' }, spec: { containers: [{ name: 'kubernetes-dashboard', image: 'dashboard:1', ports: [{ containerPort: 8443 }] }] } };
    assert.throws(() => injectPod(pod, resolved), (err: Error) => err instanceof Denial && /container kubernetes-dashboard declares port 8443, .*extraListen/.test(err.message));
  });

  it('gives the same settings object again while the Secret keeps its version, and checks a new version', async function () {
    const base = settings();
    const listening = (port: number, version: string) => only(secret({ 'sidecar.yaml': `extraListen: ":${port}"\nextraListenServices: [dashboard-api]\n` }, version));
    const first = await withInstallationConfig(base, INSTALLATION, false, listening(7443, '1'));
    assert.ok(Object.isFrozen(first));
    assert.equal(await withInstallationConfig(base, INSTALLATION, false, listening(7443, '1')), first);
    const changed = await withInstallationConfig(base, INSTALLATION, false, listening(7444, '2'));
    assert.equal(changed.extraListen, ':7444');
    assert.notEqual(await withInstallationConfig(settings(), INSTALLATION, false, listening(7443, '1')), first, 'other settings, another object');
    const refused = await denial(withInstallationConfig(base, INSTALLATION, false, only(secret({ 'sidecar.yaml': 'noSuchField: 1\n' }, '3'))));
    assert.match(refused.message, /its sidecar would refuse the installation configuration/);
  });

  it("without the injector's default Secret, the sidecars use the injector's flags alone", async function () {
    const resolved = await withInstallationConfig(settings(), INSTALLATION, false, only(undefined));
    assert.equal(resolved.installationConfig, undefined);
    const pod = injectPod({ metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'app:1' }] } }, resolved);
    assert.equal(pod.spec!.volumes!.find((v) => v.name === 'chaperone-installation'), undefined);
  });

  it('refuses a pod whose namespace names a configuration that does not exist, naming the annotation', async function () {
    const refused = await denial(withInstallationConfig({ ...settings(), sidecarConfig: 'team-sso' }, INSTALLATION, true, only(undefined)));
    assert.equal(refused.reason, 'BadRequest');
    assert.match(refused.message, /the namespace's chaperone\.dev\/sidecar-config names the installation configuration chaperone-system\/team-sso, which does not exist/);
  });

  it('refuses, as InternalError, when the configuration cannot be read', async function () {
    const refused = await denial(withInstallationConfig(settings(), INSTALLATION, false, () => Promise.reject(new Error('no answer from the API server within 3000ms'))));
    assert.equal(refused.reason, 'InternalError');
    assert.match(refused.message, /cannot read the installation configuration chaperone-system\/chaperone-sidecar-config .*: no answer/);
  });

  const invalid: [string, Record<string, string>, RegExp][] = [
    ['a key the injector sets for each pod', { 'sidecar.yaml': 'upstream: https://attacker.example\n' }, /sidecar\.yaml: upstream is not an installation setting/],
    ['a value of the wrong type', { 'sidecar.yaml': 'clusterTokenReview: sometimes\n' }, /sidecar\.yaml: clusterTokenReview: "sometimes" is not a boolean/],
    ['a file it names that is not in the Secret', { 'sidecar.yaml': 'authenticationConfig: missing.yaml\n' }, /authenticationConfig: cannot read "missing\.yaml"|missing\.yaml/],
    [
      'an AuthenticationConfiguration the API server would refuse',
      { 'sidecar.yaml': 'authenticationConfig: a.yaml\n', 'a.yaml': JWT_CONFIG.replace('https://issuer.example.com', 'http://issuer.example.com') },
      /jwt\[0\]\.issuer\.url/,
    ],
    ['a Secret that is no installation configuration (the injector\'s CA keys, say)', { 'ca.crt': 'x', 'ca.key': 'y' }, /not an installation configuration: it has no sidecar\.yaml/],
    ['a file of the sidecar\'s own (the scoped token), before it is ever read', { 'sidecar.yaml': 'oidcCaFile: /var/run/secrets/chaperone/upstream/token\n' }, /sidecar\.yaml: oidcCaFile: "\/var\/run\/secrets\/chaperone\/upstream\/token" is not a key of the installation configuration/],
    ['a path that climbs out of it', { 'sidecar.yaml': 'authenticationConfig: ../../etc/passwd\n' }, /authenticationConfig: "\.\.\/\.\.\/etc\/passwd" is not a key of the installation configuration/],
    [
      'a webhook kubeconfig whose tokenFile is the scoped token',
      { 'sidecar.yaml': 'authenticationTokenWebhookConfigFile: k\n', k: YAML.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://w.example' } }], users: [{ name: 'u', user: { token: 'x', tokenFile: '/var/run/secrets/chaperone/upstream/token' } }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }) },
      /k: user\.tokenFile: "\/var\/run\/secrets\/chaperone\/upstream\/token" is not a key of the installation configuration/,
    ],
    [
      'a webhook kubeconfig with an exec plugin',
      { 'sidecar.yaml': 'authenticationTokenWebhookConfigFile: k\n', k: YAML.stringify({ apiVersion: 'v1', kind: 'Config', clusters: [{ name: 'c', cluster: { server: 'https://w.example' } }], users: [{ name: 'u', user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'sh' } } }], contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }], 'current-context': 'c' }) },
      /k: user\.exec: an installation configuration runs no credential plugin/,
    ],
    ['a YAML alias bomb, naming the file', { 'sidecar.yaml': ['a0: &a0 [x,x,x,x,x,x,x,x,x]', ...Array.from({ length: 8 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(',')}]`), 'anonymous: *a8'].join('\n') }, /sidecar\.yaml: .*alias/i],
    ['both the file and the --oidc-* flags', { 'sidecar.yaml': 'authenticationConfig: a.yaml\noidcIssuerUrl: https://other.example.com\noidcClientId: x\n', 'a.yaml': JWT_CONFIG }, /mutually exclusive/],
    ['an extra listener on an address (every pod would get it)', { 'sidecar.yaml': 'extraListen: "10.0.0.7:7443"\nextraListenServices: [dashboard-api]\n' }, /sidecar\.yaml: extraListen: "10\.0\.0\.7:7443" names an address/],
    ["an extra listener on the sidecar's own port", { 'sidecar.yaml': 'extraListen: ":9901"\nextraListenServices: [dashboard-api]\n' }, /sidecar\.yaml: extraListen: port 9901 is the sidecar's own/],
    ['an extra listener no Service reaches', { 'sidecar.yaml': 'extraListen: ":7443"\n' }, /sidecar\.yaml: extraListen: set extraListenServices too/],
    ['Services without a listener', { 'sidecar.yaml': 'extraListenServices: [dashboard-api]\n' }, /sidecar\.yaml: extraListenServices: set extraListen too/],
    [
      'a name that is not a Service of the namespace (a name of its own choosing, in every certificate)',
      { 'sidecar.yaml': 'extraListen: ":7443"\nextraListenServices: [dashboards.example.com]\n' },
      /sidecar\.yaml: extraListenServices: "dashboards\.example\.com" is not a Service name/,
    ],
    ['a listener that is not host:port', { 'sidecar.yaml': 'extraListen: "7443"\nextraListenServices: [dashboard-api]\n' }, /sidecar\.yaml: extraListen: "7443" is not a host:port address/],
  ];
  for (const [what, files, expected] of invalid) {
    it(`refuses ${what}, naming it`, async function () {
      const refused = await denial(withInstallationConfig(settings(), INSTALLATION, false, only(secret(files))));
      assert.equal(refused.reason, 'BadRequest');
      assert.match(refused.message, /its sidecar would refuse the installation configuration \(the injector's --sidecar-config\): chaperone-system\/chaperone-sidecar-config: /);
      assert.match(refused.message, expected);
      assert.doesNotMatch(refused.message, /\/tmp\//, 'names the Secret\'s keys, not where the injector wrote them');
    });
  }
});
