// The webhook kubeconfig read by kube-apiserver's rules: every credential form delivered to a real
// HTTPS receiver, and what the API server refuses refused, naming the field.
// test/e2e/webhook-kubeconfig.test.ts gives the same files to kube-apiserver and compares.
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { goDuration, loadWebhookKubeconfig, readExecCredential, WebhookClient } from '../../../lib/webhook-kubeconfig.js';
import { startRecordingWebhook, type RecordingWebhook } from '../../fixtures/recording-webhook.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('lib/webhook-kubeconfig', function () {
  this.timeout(20_000);
  let hook: RecordingWebhook;
  let n = 0;

  before(async function () {
    hook = await startRecordingWebhook();
    writeFileSync(path.join(hook.dir, 'ca.crt'), hook.ca.certPem);
  });
  after(async function () {
    await hook?.stop();
  });
  beforeEach(function () {
    hook.calls.length = 0;
    hook.answer = () => ({ status: 200, body: '{}' });
  });

  /** A kubeconfig in the receiver's directory: its CA by relative path, this user, current-context set unless overridden. */
  function kubeconfig(user: Record<string, unknown>, overrides: Record<string, unknown> = {}, cluster: Record<string, unknown> = {}): string {
    const file = path.join(hook.dir, `k${n++}.kubeconfig`);
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'receiver', cluster: { server: `${hook.url}/hook`, 'certificate-authority': 'ca.crt', ...cluster } }],
      users: [{ name: 'me', user }],
      contexts: [{ name: 'ctx', context: { cluster: 'receiver', user: 'me' } }],
      'current-context': 'ctx',
      ...overrides,
    };
    writeFileSync(file, YAML.stringify(config));
    return file;
  }

  async function send(file: string, times = 1) {
    const client = new WebhookClient(loadWebhookKubeconfig(file));
    try {
      for (let i = 0; i < times; i++) await client.post({ body: '{}', timeoutMs: 5000 });
    } finally {
      client.close();
    }
    return hook.calls;
  }

  function file(name: string, content: string, mode = 0o600): string {
    const at = path.join(hook.dir, name);
    writeFileSync(at, content, { mode });
    chmodSync(at, mode);
    return at;
  }

  describe('credentials, as the API server sends them', function () {
    it('token: a bearer token, with the CA read relative to the kubeconfig', async function () {
      const [call] = await send(kubeconfig({ token: 'tok-1' }));
      assert.deepEqual([call!.path, call!.authorization, call!.clientCommonName], ['/hook?timeout=5s', 'Bearer tok-1', undefined]);
    });

    it('tokenFile: relative to the kubeconfig, trimmed, re-read when it changes, the last good one kept while it is empty', async function () {
      file('token.txt', 'file-token-1\n');
      const config = loadWebhookKubeconfig(kubeconfig({ tokenFile: 'token.txt' }));
      const client = new WebhookClient(config);
      try {
        await client.post({ body: '{}', timeoutMs: 5000 });
        file('token.txt', 'file-token-2');
        await sleep(1500);
        await client.post({ body: '{}', timeoutMs: 5000 });
        file('token.txt', '');
        await sleep(1500);
        await client.post({ body: '{}', timeoutMs: 5000 });
      } finally {
        client.close();
      }
      assert.deepEqual(hook.calls.map((c) => c.authorization), ['Bearer file-token-1', 'Bearer file-token-2', 'Bearer file-token-2']);
    });

    it('tokenFile beside token: the file wins while it can be read (client-go)', async function () {
      file('token-both.txt', 'from-file');
      const [call] = await send(kubeconfig({ token: 'from-field', tokenFile: 'token-both.txt' }));
      assert.equal(call!.authorization, 'Bearer from-file');
    });

    it('basic auth: username and password', async function () {
      const [call] = await send(kubeconfig({ username: 'alice', password: 'pa:ss' }));
      assert.equal(call!.authorization, `Basic ${Buffer.from('alice:pa:ss').toString('base64')}`);
    });

    it('a client certificate from files (relative) or from data, beside a token', async function () {
      const fromFiles = hook.client('from-files');
      file('client.crt', fromFiles.certPem);
      file('client.key', fromFiles.keyPem);
      const fromData = hook.client('from-data');
      await send(kubeconfig({ 'client-certificate': 'client.crt', 'client-key': 'client.key' }));
      const b64 = (s: string) => Buffer.from(s).toString('base64');
      await send(kubeconfig({ 'client-certificate-data': b64(fromData.certPem), 'client-key-data': b64(fromData.keyPem), token: 't' }));
      assert.deepEqual(
        hook.calls.map((c) => [c.clientCommonName, c.authorization]),
        [
          ['from-files', undefined],
          ['from-data', 'Bearer t'],
        ],
      );
    });

    it('no user, or a user the file lacks: nothing is sent (client-go takes it as no credentials)', async function () {
      await send(kubeconfig({}, { contexts: [{ name: 'ctx', context: { cluster: 'receiver', user: 'nobody' } }] }));
      assert.deepEqual(hook.calls.map((c) => [c.authorization, c.clientCommonName]), [[undefined, undefined]]);
    });
  });

  describe('exec credential plugins (client.authentication.k8s.io)', function () {
    /** A plugin that counts its runs, records KUBERNETES_EXEC_INFO and its environment, and prints `status`. */
    function plugin(name: string, status: string): { command: string; runs: () => number; info: () => string } {
      const runs = path.join(hook.dir, `${name}.runs`);
      const info = path.join(hook.dir, `${name}.info`);
      writeFileSync(runs, '');
      const command = file(
        `${name}.sh`,
        `#!/bin/sh\necho x >> '${runs}'\nprintf '%s %s' "$KUBERNETES_EXEC_INFO" "$PLUGIN_ENV" > '${info}'\ncat <<'EOF'\n{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":${status}}\nEOF\n`,
        0o700,
      );
      return { command, runs: () => readFileSync(runs, 'utf8').split('\n').filter(Boolean).length, info: () => readFileSync(info, 'utf8') };
    }
    const exec = (command: string, more: Record<string, unknown> = {}) => ({
      exec: { apiVersion: 'client.authentication.k8s.io/v1', command, interactiveMode: 'Never', env: [{ name: 'PLUGIN_ENV', value: 'set' }], ...more },
    });

    it("runs the plugin (relative command) with KUBERNETES_EXEC_INFO and its env, and keeps a token without expiry", async function () {
      const p = plugin('forever', '{"token":"exec-token"}');
      const calls = await send(kubeconfig(exec(`./${path.basename(p.command)}`)), 3);
      assert.deepEqual(calls.map((c) => c.authorization), ['Bearer exec-token', 'Bearer exec-token', 'Bearer exec-token']);
      assert.equal(p.runs(), 1, 'one run for three requests');
      assert.equal(p.info(), '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}} set');
    });

    it('runs it again once its credential expired, and when the server answers 401', async function () {
      const expired = plugin('expired', `{"token":"old","expirationTimestamp":"2020-01-01T00:00:00Z"}`);
      await send(kubeconfig(exec(expired.command)), 2);
      assert.equal(expired.runs(), 2, 'an expired credential is not reused');
      const fresh = plugin('fresh', `{"token":"t","expirationTimestamp":"2999-01-01T00:00:00Z"}`);
      hook.answer = () => ({ status: 401, body: '{}' });
      await send(kubeconfig(exec(fresh.command)), 2);
      assert.equal(fresh.runs(), 2, 'a 401 makes the next request run the plugin again');
    });

    it('presents a client certificate the plugin returns, and passes the cluster when provideClusterInfo', async function () {
      const cert = hook.client('from-exec');
      const p = plugin('cert', JSON.stringify({ clientCertificateData: cert.certPem, clientKeyData: cert.keyPem }));
      const [call] = await send(kubeconfig(exec(p.command, { provideClusterInfo: true }), {}, { 'tls-server-name': 'localhost' }));
      assert.deepEqual([call!.clientCommonName, call!.authorization], ['from-exec', undefined]);
      const info = JSON.parse(p.info().replace(/ set$/, '')) as { spec: { cluster: Record<string, unknown> } };
      assert.deepEqual(info.spec.cluster, { server: `${hook.url}/hook`, 'tls-server-name': 'localhost', 'certificate-authority-data': Buffer.from(hook.ca.certPem).toString('base64') });
    });

    it('is not run when the user has a token, basic auth or a client certificate (client-go ignores it then)', async function () {
      const p = plugin('ignored', '{"token":"exec"}');
      const [call] = await send(kubeconfig({ token: 'static', ...exec(p.command) }));
      assert.equal(call!.authorization, 'Bearer static');
      assert.equal(p.runs(), 0);
    });

    it('fails the request, saying why, when the plugin fails or answers what client-go refuses', async function () {
      const failing = file('failing.sh', '#!/bin/sh\nexit 3\n', 0o700);
      await assert.rejects(send(kubeconfig(exec(failing))), /exited with status 3/);
      await assert.rejects(send(kubeconfig(exec('no-such-plugin-anywhere', { installHint: 'install it' }))), /executable no-such-plugin-anywhere not found\n\ninstall it/);
      assert.throws(() => readExecCredential('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"t"}}', 'client.authentication.k8s.io/v1'), /configured to use API version/);
      assert.throws(() => readExecCredential('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1"}', 'client.authentication.k8s.io/v1'), /didn't return a status/);
      assert.throws(() => readExecCredential('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{}}', 'client.authentication.k8s.io/v1'), /didn't return a token or cert\/key pair/);
      assert.throws(() => readExecCredential('{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"clientKeyData":"k"}}', 'client.authentication.k8s.io/v1'), /only a certificate or a key/);
      assert.equal(hook.calls.length, 0, 'nothing was sent without its credential');
    });
  });

  describe('refusals, each naming the field', function () {
    const refusals: [string, () => string, RegExp][] = [
      ['no current-context', () => kubeconfig({ token: 't' }, { 'current-context': '' }), /current-context is not set/],
      ['a current-context naming no context', () => kubeconfig({ token: 't' }, { 'current-context': 'other' }), /current-context: no context named "other"/],
      ['a context naming no cluster', () => kubeconfig({}, { contexts: [{ name: 'ctx', context: { cluster: 'none' } }] }), /no cluster named "none"/],
      ['a name twice', () => kubeconfig({}, { users: [{ name: 'me', user: {} }, { name: 'me', user: {} }] }), /users: duplicate name "me"/],
      ['auth-provider', () => kubeconfig({ 'auth-provider': { name: 'oidc' } }), /user\.auth-provider: not supported by chaperone \(use a token, a tokenFile, a client certificate or an exec plugin instead\)/],
      ['impersonation', () => kubeconfig({ as: 'someone' }), /user\.as: not supported/],
      ['proxy-url', () => kubeconfig({}, {}, { 'proxy-url': 'http://proxy:3128' }), /cluster\.proxy-url: not supported/],
      ['token and basic auth', () => kubeconfig({ token: 't', username: 'u' }), /more than one authentication method/],
      ['tokenFile and basic auth', () => kubeconfig({ tokenFile: 'token.txt', username: 'u' }), /username\/password or a bearer token \(tokenFile\)/],
      ['an unreadable tokenFile', () => kubeconfig({ tokenFile: 'absent.txt' }), /user\.tokenFile: cannot read .*absent\.txt: ENOENT/],
      ['a certificate without its key', () => kubeconfig({ 'client-certificate': 'client.crt' }), /client-key-data or client-key must be specified/],
      ['certificate file and data', () => kubeconfig({ 'client-certificate': 'client.crt', 'client-certificate-data': 'eA==', 'client-key': 'client.key' }), /client-certificate-data and client-certificate are both specified/],
      ['CA file and data', () => kubeconfig({}, {}, { 'certificate-authority-data': 'eA==' }), /certificate-authority-data and certificate-authority are both specified/],
      ['a CA with insecure-skip-tls-verify', () => kubeconfig({}, {}, { 'insecure-skip-tls-verify': true }), /insecure-skip-tls-verify with a certificate authority/],
      ['exec without interactiveMode (v1)', () => kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'x' } }), /user\.exec\.interactiveMode must be specified/],
      ['exec interactiveMode Always', () => kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'x', interactiveMode: 'Always' } }), /user\.exec\.interactiveMode Always/],
      ['exec without apiVersion', () => kubeconfig({ exec: { command: 'x', interactiveMode: 'Never' } }), /user\.exec\.apiVersion must be specified/],
      ['exec of an unknown apiVersion', () => kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x', interactiveMode: 'Never' } }), /user\.exec\.apiVersion/],
      ['exec env without a name', () => kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'x', interactiveMode: 'Never', env: [{ value: 'v' }] } }), /user\.exec\.env\[0\]\.name must be specified/],
      ['a field of the wrong type', () => kubeconfig({ token: 123 }), /user\.token is not a string/],
    ];
    for (const [what, make, message] of refusals) {
      it(what, function () {
        const at = make();
        assert.throws(() => loadWebhookKubeconfig(at), (err: Error) => err.message.startsWith(`${at}: `) && message.test(err.message));
      });
    }

    it('an exec plugin of v1beta1 defaults to IfAvailable, which runs without a terminal', function () {
      assert.deepEqual(loadWebhookKubeconfig(kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1beta1', command: 'x' } })).credentialKinds, ['exec']);
    });

    it("the server's query is dropped and ?timeout= added as client-go's REST client does", async function () {
      await send(kubeconfig({}, {}, { server: `${hook.url}/hook?drop=me#too` }));
      assert.equal(hook.calls[0]!.path, '/hook?timeout=5s');
      assert.deepEqual([500, 1000, 2500, 30_000, 90_000, 3_600_000].map(goDuration), ['500ms', '1s', '2.5s', '30s', '1m30s', '1h0m0s']);
    });

    it('over http, no credentials are sent at all (client-go reads none unless the transport is TLS)', async function () {
      const config = loadWebhookKubeconfig(kubeconfig({ token: 't' }, {}, { server: 'http://127.0.0.1:1/hook', 'certificate-authority': '' }));
      assert.deepEqual(await config.credentials(), { headers: {} });
    });
  });
});
