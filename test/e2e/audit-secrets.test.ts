// Nothing secret in any output: the sidecar as its own process, with every sink, the recommended
// policy from docs/audit.md and the most verbose logging, given tokens, keys and a Secret to carry;
// then every byte it wrote is searched for them. Its standard output must hold audit events only,
// and SIGTERM must deliver what the webhook still held.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedControlPlane } from '../support/shared.js';
import {
  adminClients,
  createNamespace,
  createServiceAccount,
  grantInNamespace,
  mintServiceAccountToken,
} from '../../local-cluster/kube.js';
import { rawRequest, startTestSidecar, type RawResponse } from '../../local-cluster/sidecar.js';
import { AuditPolicy } from '../../lib/sidecar-config/audit-policy.js';
import { auditIdOf, parseEventLines, startReceiver, waitForEventLines } from '../unit/sidecar/audit/support.js';

const AUDIT_DOC = fileURLToPath(new URL('../../docs/audit.md', import.meta.url));

/** The policy docs/audit.md recommends: the YAML block after its marker. */
async function recommendedPolicy(): Promise<string> {
  const doc = await readFile(AUDIT_DOC, 'utf8');
  const match = /<!-- recommended-policy[^>]*-->\n```yaml\n([\s\S]*?)```/.exec(doc);
  assert.ok(match, 'docs/audit.md shows the recommended policy after its marker');
  return match[1]!;
}

/** What would give a secret away: the whole of it, and the parts a careless log line would print. */
function tellTales(name: string, secret: string): [string, string][] {
  const parts: [string, string][] = [[name, secret]];
  if (secret.includes('PRIVATE KEY')) {
    const body = secret.split('\n').filter((line) => line && !line.startsWith('-----'));
    parts.push([`${name} (first line of its body)`, body[0]!], [`${name} (last line of its body)`, body.at(-1)!]);
    parts.push([`${name} (base64, as in a kubeconfig)`, Buffer.from(secret).toString('base64').slice(0, 60)]);
  }
  if (/^[\w-]+\.[\w-]+\.[\w-]+$/.test(secret)) parts.push([`${name} (signature)`, secret.split('.')[2]!]);
  return parts;
}

describe('audit: nothing secret in any output (the sidecar as a process)', function () {
  this.timeout(180_000);
  // A failure before the end must not leave the receiver listening: mocha would never exit.
  let leftOpen: { dispose(): Promise<void> } | undefined;
  after(async function () {
    await leftOpen?.dispose();
  });

  it('writes no token, key or Secret value to standard output, standard error, the audit file or the webhook', async function () {
    this.timeout(15 * 60_000);
    const cp = await sharedControlPlane();
    const clients = adminClients(cp);
    const ns = await createNamespace(clients, 'audit-secrets');
    await grantInNamespace(cp, clients, ns, 'edit', 'alice');
    await createServiceAccount(clients, ns, 'powerful');
    const forgedToken = await mintServiceAccountToken(clients, ns, 'powerful');
    const strangerToken = await mintServiceAccountToken(clients, ns, 'powerful', { expirationSeconds: 600 });

    const out = mkdtempSync(path.join(tmpdir(), 'chaperone-audit-secrets-'));
    const file = (name: string) => path.join(out, name);
    const policy = await recommendedPolicy();
    AuditPolicy.parse(policy, 'docs/audit.md'); // the recommended policy is one the sidecar accepts
    await writeFile(file('policy.yaml'), policy);
    const receiver = await startReceiver();
    leftOpen = receiver;
    const sidecar = await startTestSidecar(cp, clients, {
      asProcess: true,
      output: { stdout: file('stdout'), stderr: file('stderr') },
      flags: [
        '--log-level=debug',
        '--audit-sinks=stdout,webhook',
        `--audit-file-path=${file('audit.jsonl')}`,
        `--audit-webhook-config-file=${receiver.kubeconfig}`,
        '--audit-webhook-batch-max-wait=10m', // only the shutdown flush delivers
        `--audit-policy-file=${file('policy.yaml')}`,
      ],
    });
    const scopedToken = (await readFile(sidecar.tokenFile, 'utf8')).trim();
    const alice = sidecar.clientCert('alice', ['dev']);
    const secretValue = `hunter2-${randomBytes(12).toString('hex')}`;

    const via = (p: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; anonymous?: boolean } = {}) =>
      rawRequest(`${sidecar.url}${p}`, {
        ca: sidecar.servingCa.certPem,
        ...(init.anonymous ? {} : { cert: alice }),
        ...(init.method ? { method: init.method } : {}),
        headers: { ...(init.body ? { 'content-type': 'application/json' } : {}), ...init.headers },
        ...(init.body ? { body: JSON.stringify(init.body) } : {}),
      });
    const responses: [string, RawResponse, number][] = [];
    const send = async (what: string, expected: number, response: Promise<RawResponse>) => {
      const r = await response;
      assert.equal(r.status, expected, `${what}: ${r.body}`);
      responses.push([what, r, expected]);
    };
    await send('a list with a forged bearer token beside the certificate', 200, via(`/api/v1/namespaces/${ns}/pods`, { headers: { Authorization: `Bearer ${forgedToken}` } }));
    await send('a bearer token alone', 401, via(`/api/v1/namespaces/${ns}/pods`, { anonymous: true, headers: { Authorization: `Bearer ${strangerToken}` } }));
    await send('a Secret created', 201, via(`/api/v1/namespaces/${ns}/secrets`, { method: 'POST', body: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: secretValue } } }));
    await send('the Secret read back', 200, via(`/api/v1/namespaces/${ns}/secrets/db`));
    await send('a ConfigMap with a password in it', 201, via(`/api/v1/namespaces/${ns}/configmaps`, { method: 'POST', body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { password: secretValue } } }));
    await send('a pod created (recorded at Request level)', 201, via(`/api/v1/namespaces/${ns}/pods`, { method: 'POST', body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } }));
    await send('a TokenReview of someone else\'s token', 403, via('/apis/authentication.k8s.io/v1/tokenreviews', { method: 'POST', body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: forgedToken } } }));
    const ids = responses.map(([, r]) => auditIdOf(r));
    await waitForEventLines(file('stdout'), ids);
    await sidecar.stop(); // SIGTERM

    const outputs: [string, string][] = [
      ['standard output', await readFile(file('stdout'), 'utf8')],
      ['standard error', await readFile(file('stderr'), 'utf8')],
      ['the audit file', await readFile(file('audit.jsonl'), 'utf8')],
      ['the webhook', JSON.stringify(receiver.events)],
    ];
    await receiver.dispose();
    leftOpen = undefined;
    await rm(out, { recursive: true, force: true });

    const events = parseEventLines(outputs[0]![1]);
    assert.ok(events.length >= responses.length);
    for (const event of events) assert.ok(event.kind === 'Event' && event.apiVersion === 'audit.k8s.io/v1', 'standard output holds audit events and nothing else');
    assert.deepEqual(events, parseEventLines(outputs[2]![1]), 'the file has the same events');
    assert.deepEqual(
      receiver.events.map((e) => e.auditID).sort(),
      events.map((e) => e.auditID).sort(),
      'SIGTERM delivered what the webhook buffer held',
    );
    const logLines = outputs[1]![1].split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { msg?: string; kind?: string });
    assert.ok(logLines.some((l) => l.msg === 'chaperone sidecar serving'), 'standard error holds the operational log');
    assert.ok(logLines.every((l) => l.kind === undefined && typeof l.msg === 'string'), 'and no audit event');
    const event = (what: string) => events.find((e) => e.auditID === ids[responses.findIndex(([w]) => w === what)] && e.stage === 'ResponseComplete')!;
    assert.equal(event('a pod created (recorded at Request level)').level, 'Request');
    assert.equal((event('a pod created (recorded at Request level)').requestObject as { kind?: string }).kind, 'Pod', 'bodies are recorded where the policy says');
    assert.equal(event('a Secret created').level, 'Metadata');
    assert.equal(event('a Secret created').requestObject, undefined);

    const secrets: [string, string][] = [
      ['the scoped service-account token', scopedToken],
      ['a bearer token forged beside a certificate', forgedToken],
      ['a bearer token sent alone', strangerToken],
      ["alice's private key", alice.keyPem],
      ['the serving key', sidecar.servingCert.keyPem],
      ['the identity CA key', sidecar.identityCa.keyPem],
      ["the webhook client's key", receiver.client.keyPem],
      ["the Secret's value", secretValue],
      ["the Secret's value in base64", Buffer.from(secretValue).toString('base64')],
    ];
    for (const [where, text] of outputs) {
      for (const [name, secret] of secrets) {
        for (const [tale, needle] of tellTales(name, secret)) assert.ok(!text.includes(needle), `${where} gives away ${tale}`);
      }
    }
  });
});
