// The same webhook kubeconfig files given to kube-apiserver (--audit-webhook-config-file,
// --authentication-token-webhook-config-file) and to chaperone's audit sink and token webhook: a
// recording HTTPS receiver compares the credentials each presents (Authorization header, client
// certificate). One form per file, two files per API server: every credential form client-go
// delivers with, relative paths, and an exec plugin client-go ignores beside another credential.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { loadWebhookKubeconfig } from '../../lib/webhook-kubeconfig.js';
import { webhookDelivery } from '../../sidecar/audit/sinks/webhook.js';
import { WebhookTokenAuthenticator } from '../../sidecar/authn/webhook.js';
import { loadWebhookKubeconfig as loadTokenWebhookKubeconfig } from '../../lib/sidecar-config/tokens.js';
import { startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { startRecordingWebhook, type RecordedCall, type RecordingWebhook } from '../fixtures/recording-webhook.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const SIDECAR_MARK = 'chaperone-differential';

interface Form {
  what: string;
  /** The user entry; files it names are written beside the kubeconfig first. */
  user: (hook: RecordingWebhook) => Record<string, unknown>;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** An exec plugin (a shell script beside the kubeconfig) printing this ExecCredential status. */
function execPlugin(hook: RecordingWebhook, name: string, apiVersion: string, status: object): string {
  const script = path.join(hook.dir, name);
  writeFileSync(script, `#!/bin/sh\ncat <<'EOF'\n${JSON.stringify({ kind: 'ExecCredential', apiVersion, status })}\nEOF\n`, { mode: 0o700 });
  return `./${name}`;
}

const FORMS: Form[] = [
  {
    what: 'tokenFile and a client certificate from files, all relative to the kubeconfig',
    user: (hook) => {
      const client = hook.client('files-client');
      writeFileSync(path.join(hook.dir, 'client.crt'), client.certPem);
      writeFileSync(path.join(hook.dir, 'client.key'), client.keyPem);
      writeFileSync(path.join(hook.dir, 'token.txt'), 'file-token\n');
      return { tokenFile: 'token.txt', 'client-certificate': 'client.crt', 'client-key': 'client.key' };
    },
  },
  {
    what: 'an exec plugin (v1, Never) that returns a token',
    user: (hook) => ({
      exec: { apiVersion: 'client.authentication.k8s.io/v1', command: execPlugin(hook, 'token-plugin.sh', 'client.authentication.k8s.io/v1', { token: 'exec-token' }), interactiveMode: 'Never', env: [{ name: 'PLUGIN_MODE', value: 'plain' }] },
    }),
  },
  {
    what: 'basic auth, with an exec plugin beside it that client-go ignores',
    user: (hook) => ({
      username: 'audit-writer',
      password: 's3cret:pw',
      exec: { apiVersion: 'client.authentication.k8s.io/v1', command: execPlugin(hook, 'ignored.sh', 'client.authentication.k8s.io/v1', { token: 'never-sent' }), interactiveMode: 'Never' },
    }),
  },
  {
    what: 'an exec plugin (v1beta1, interactiveMode left to its default) that returns a client certificate',
    user: (hook) => {
      const client = hook.client('exec-client');
      return { exec: { apiVersion: 'client.authentication.k8s.io/v1beta1', command: execPlugin(hook, 'cert-plugin.sh', 'client.authentication.k8s.io/v1beta1', { clientCertificateData: client.certPem, clientKeyData: client.keyPem }) } };
    },
  },
  {
    what: 'a token and a client certificate from data',
    user: (hook) => {
      const client = hook.client('data-client');
      return { token: 'static-token', 'client-certificate-data': b64(client.certPem), 'client-key-data': b64(client.keyPem) };
    },
  },
];

/** A kubeconfig in the receiver's directory; the CA by a relative path. */
function writeKubeconfig(hook: RecordingWebhook, name: string, server: string, user: Record<string, unknown>): string {
  writeFileSync(path.join(hook.dir, 'ca.crt'), hook.ca.certPem);
  const file = path.join(hook.dir, name);
  writeFileSync(
    file,
    YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'receiver', cluster: { server, 'certificate-authority': 'ca.crt' } }],
      users: [{ name: 'writer', user }],
      contexts: [{ name: 'default', context: { cluster: 'receiver', user: 'writer' } }],
      'current-context': 'default',
    }),
  );
  return file;
}

const pathOf = (call: RecordedCall) => new URL(call.path, 'https://receiver').pathname;
/** What each client presents, and the query client-go adds (a timeout, its value each client's own). */
const credentialsOf = (call: RecordedCall) => ({
  authorization: call.authorization,
  clientCertificate: call.clientCommonName,
  query: [...new URL(call.path, 'https://receiver').searchParams.keys()],
});

async function firstCall(hook: RecordingWebhook, what: string, match: (call: RecordedCall) => boolean): Promise<RecordedCall> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const call = hook.calls.find(match);
    if (call) return call;
    if (Date.now() > deadline) throw new Error(`no call from ${what} reached the receiver: ${hook.calls.length} others did (${[...new Set(hook.calls.map((c) => `${c.path} ${c.authorization ?? ''} ${c.clientCommonName ?? ''}`))].join('; ')})`);
    await sleep(100);
  }
}

describe('webhook kubeconfigs: chaperone delivers what kube-apiserver delivers (real API server)', function () {
  this.timeout(240_000);
  const hooks: RecordingWebhook[] = [];
  const planes: ControlPlane[] = [];

  after(async function () {
    for (const cp of planes) await cp.stop();
    for (const hook of hooks) await hook.stop();
  });

  // Three API servers, each with one form as its audit webhook and another as its token webhook.
  for (const [audit, token] of [
    [FORMS[0]!, FORMS[1]!],
    [FORMS[2]!, FORMS[3]!],
    [FORMS[4]!, FORMS[0]!],
  ] as const) {
    describe(`audit webhook: ${audit.what}; token webhook: ${token.what}`, function () {
      let hook: RecordingWebhook;
      let cp: ControlPlane;
      let auditFile: string;
      let tokenFile: string;

      before(async function () {
        this.timeout(5 * 60_000);
        hook = await startRecordingWebhook();
        hooks.push(hook);
        hook.answer = (call) => {
          const review = pathOf(call) === '/authenticate' ? (JSON.parse(call.body) as { apiVersion: string }) : undefined;
          return { status: 200, body: review ? JSON.stringify({ apiVersion: review.apiVersion, kind: 'TokenReview', status: { authenticated: false } }) : '{}' };
        };
        auditFile = writeKubeconfig(hook, 'audit.kubeconfig', `${hook.url}/audit`, audit.user(hook));
        tokenFile = writeKubeconfig(hook, 'token.kubeconfig', `${hook.url}/authenticate`, token.user(hook));
        cp = await startControlPlane({
          extraApiserverFlags: [
            `--audit-webhook-config-file=${auditFile}`,
            '--audit-webhook-mode=blocking',
            `--authentication-token-webhook-config-file=${tokenFile}`,
            '--authentication-token-webhook-cache-ttl=0s',
          ],
        });
        planes.push(cp);
      });

      it('the audit sink presents the same credentials as kube-apiserver', async function () {
        const apiServer = await firstCall(hook, 'kube-apiserver', (c) => pathOf(c) === '/audit' && !c.body.includes(SIDECAR_MARK));
        const delivery = webhookDelivery(loadWebhookKubeconfig(auditFile));
        try {
          await delivery.deliver(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"${SIDECAR_MARK}"}]}`);
        } finally {
          delivery.close();
        }
        const sidecar = await firstCall(hook, 'chaperone', (c) => pathOf(c) === '/audit' && c.body.includes(SIDECAR_MARK));
        assert.deepEqual(credentialsOf(sidecar), credentialsOf(apiServer));
        assert.ok(apiServer.authorization !== undefined || apiServer.clientCommonName !== undefined, 'the form delivered a credential at all');
        assert.equal(sidecar.contentType, 'application/json');
      });

      it('the token webhook presents the same credentials as kube-apiserver', async function () {
        const asked = await rawRequest(`${cp.url}/api`, { ca: cp.ca.certPem, headers: { authorization: 'Bearer from-apiserver' } });
        assert.equal(asked.status, 401, 'the receiver authenticates nobody');
        const apiServer = await firstCall(hook, 'kube-apiserver', (c) => pathOf(c) === '/authenticate' && c.body.includes('from-apiserver'));
        const webhook = new WebhookTokenAuthenticator({
          target: loadTokenWebhookKubeconfig(tokenFile),
          version: 'v1beta1',
          timeoutMs: 5000,
          audiences: [],
          cache: { authorizedTtlMs: 0, unauthorizedTtlMs: 0 },
        });
        try {
          assert.equal((await webhook.authenticateToken('from-sidecar')).outcome, 'failure');
        } finally {
          webhook.close();
        }
        const sidecar = await firstCall(hook, 'chaperone', (c) => pathOf(c) === '/authenticate' && c.body.includes('from-sidecar'));
        assert.deepEqual(credentialsOf(sidecar), credentialsOf(apiServer));
        assert.ok(apiServer.authorization !== undefined || apiServer.clientCommonName !== undefined, 'the form delivered a credential at all');
      });
    });
  }
});
