// kubectl users signing in with OIDC (issue 18): real kubectl, a kubeconfig whose user runs
// `chaperone login` as its exec credential plugin, a real OpenID provider (authorization code with
// PKCE, a native client, the loopback redirect), a browser played by a script, and a sidecar that
// trusts that provider through its AuthenticationConfiguration. The API server's SelfSubjectReview
// (kubectl auth whoami, through the sidecar) says who kubectl was.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { createCA } from '../../lib/pki.js';
import { bindClusterRoleInNamespace, createNamespace, groupSubject, kubectl } from '../../local-cluster/kube.js';
import { authenticationConfigurationFor, LOGIN_CLIENT, startTestProvider, type TestProvider } from '../../local-cluster/identity/oidc-provider.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('kubectl signs in with OIDC through `chaperone login`, its exec credential plugin', function () {
  this.timeout(180_000);
  const ca = createCA({ commonName: 'login-test-provider-ca' });
  let dir: string;
  const { clients } = withSharedControlPlane();
  let provider: TestProvider;
  let authn: string;
  let kubeconfig: string;
  let browserLog: string;
  let cacheDir: string;
  let namespace: string;

  const signIns = async () => (await readFile(browserLog, 'utf8').catch(() => '')).split('\n').filter(Boolean).length;

  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-login-'));
    provider = await startTestProvider(ca, { carol: { claims: { email: 'carol@example.com', email_verified: true, groups: ['platform'] } } });
    authn = path.join(dir, 'authentication-config.yaml');
    const mappings = { username: { claim: 'email', prefix: '' }, groups: { claim: 'groups', prefix: 'oidc:' } };
    await writeFile(authn, authenticationConfigurationFor(provider, ca.certPem, mappings, [], [LOGIN_CLIENT]));
  });

  const sidecar = withSidecar(() => ({ flags: [`--authentication-config=${authn}`] }));

  before(async function () {
    namespace = await createNamespace(clients, 'login');
    await bindClusterRoleInNamespace(clients, namespace, 'view', [groupSubject('oidc:platform')]);

    const caFile = path.join(dir, 'provider-ca.crt');
    await writeFile(caFile, ca.certPem);
    browserLog = path.join(dir, 'browser.log');
    cacheDir = path.join(dir, 'token-cache');
    kubeconfig = path.join(dir, 'carol.kubeconfig');
    await writeFile(
      kubeconfig,
      YAML.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'sidecar', cluster: { server: sidecar.url, 'certificate-authority-data': Buffer.from(sidecar.servingCa.certPem).toString('base64') } }],
        users: [
          {
            name: 'carol',
            user: {
              exec: {
                apiVersion: 'client.authentication.k8s.io/v1',
                command: process.execPath,
                args: [
                  path.join(REPO, 'bin/chaperone.mjs'),
                  'login',
                  `--issuer-url=${provider.issuer}`,
                  `--client-id=${LOGIN_CLIENT}`,
                  `--certificate-authority=${caFile}`,
                  '--redirect-port=0',
                  `--browser-command=${process.execPath} --import tsx ${path.join(REPO, 'test/fixtures/authn/browser.ts')}`,
                  `--token-cache-dir=${cacheDir}`,
                ],
                env: [
                  { name: 'CHAPERONE_TEST_BROWSER_CA', value: caFile },
                  { name: 'CHAPERONE_TEST_BROWSER_ACCOUNT', value: 'carol' },
                  { name: 'CHAPERONE_TEST_BROWSER_LOG', value: browserLog },
                ],
                interactiveMode: 'Never',
              },
            },
          },
        ],
        contexts: [{ name: 'carol', context: { cluster: 'sidecar', user: 'carol', namespace } }],
        'current-context': 'carol',
      }),
      { mode: 0o600 },
    );
  });

  after(async function () {
    await provider?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('signs carol in once in the browser, and the API server takes her as her token says', async function () {
    const whoami = await kubectl(kubeconfig, ['auth', 'whoami', '-o', 'json'], { timeoutMs: 60_000 });
    assert.equal(whoami.code, 0, whoami.stderr);
    const user = (JSON.parse(whoami.stdout) as { status: { userInfo: { username: string; groups: string[] } } }).status.userInfo;
    assert.equal(user.username, 'carol@example.com');
    assert.deepEqual(user.groups, ['oidc:platform', 'system:authenticated']);
    assert.equal(await signIns(), 1);
    const [url] = (await readFile(browserLog, 'utf8')).split('\n');
    const query = new URL(url!).searchParams;
    assert.equal(query.get('code_challenge_method'), 'S256', 'PKCE');
    assert.match(query.get('redirect_uri') ?? '', /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
  });

  it('keeps the token where only she can read it, and uses it until shortly before it expires: no second sign-in', async function () {
    const pods = await kubectl(kubeconfig, ['get', 'pods'], { timeoutMs: 60_000 });
    assert.equal(pods.code, 0, pods.stderr);
    assert.equal(await signIns(), 1);
    const [file] = await readdir(cacheDir);
    assert.equal((await stat(path.join(cacheDir, file!))).mode & 0o777, 0o600);
    assert.equal((await stat(cacheDir)).mode & 0o777, 0o700);
  });

  it('signs in again in the browser when the kept token has expired', async function () {
    const [file] = await readdir(cacheDir);
    const kept = JSON.parse(await readFile(path.join(cacheDir, file!), 'utf8')) as { idToken: string };
    const [header, , signature] = kept.idToken.split('.');
    const expired = Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) - 10 })).toString('base64url');
    await writeFile(path.join(cacheDir, file!), JSON.stringify({ idToken: `${header}.${expired}.${signature}` }), { mode: 0o600 });
    const whoami = await kubectl(kubeconfig, ['auth', 'whoami', '-o', 'json'], { timeoutMs: 60_000 });
    assert.equal(whoami.code, 0, whoami.stderr);
    assert.equal(await signIns(), 2);
  });
});
