// The audit options as an operator meets them: flags, variables and file, and refusals that name the key.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../../../lib/config.js';
import { loadSidecarConfig } from '../../../../lib/sidecar-config/options.js';

const REQUIRED = ['--tls-cert-file=/tls.crt', '--tls-key-file=/tls.key', '--upstream=https://10.96.0.1:443'];

function problems(argv: string[], env: Record<string, string> = {}): string[] {
  try {
    loadSidecarConfig([...REQUIRED, ...argv], env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
}

describe('sidecar/audit options', function () {
  let dir: string;
  before(function () {
    dir = mkdtempSync(path.join(tmpdir(), 'chaperone-audit-options-'));
  });
  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });

  it('audits to standard output at Metadata level by default, with a bounded, blocking webhook buffer', function () {
    const config = loadSidecarConfig(REQUIRED, {});
    assert.deepEqual(config.auditSinks, ['stdout']);
    assert.equal(config.auditPolicyFile, undefined);
    assert.equal(config.auditWebhookOverflow, 'block');
    assert.equal(config.auditWebhookBufferSize, 10000);
    assert.equal(config.auditWebhookBatchMaxWait, 5000);
    assert.equal(config.auditBodyLimit, 256 * 1024);
  });

  it('takes sinks as a list from flags, variables or the file', function () {
    const file = path.join(dir, 'config.yaml');
    const kubeconfig = path.join(dir, 'webhook.kubeconfig');
    writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://audit.example/events"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n');
    writeFileSync(file, `auditSinks: [file, webhook]\nauditFilePath: /var/log/audit.log\nauditWebhookConfigFile: ${kubeconfig}\n`);
    assert.deepEqual(loadSidecarConfig([...REQUIRED, `--config=${file}`], {}).auditSinks, ['file', 'webhook']);
    const fromEnv = loadSidecarConfig(REQUIRED, { CHAPERONE_AUDIT_SINKS: 'stdout,file', CHAPERONE_AUDIT_FILE_PATH: '/var/log/audit.log' });
    assert.deepEqual(fromEnv.auditSinks, ['stdout', 'file']);
  });

  it('refuses a sink without its destination, a destination without its sink, and sinks that do not exist', function () {
    assert.deepEqual(problems(['--audit-sinks=file']), ['auditFilePath: required when auditSinks includes file; set it with --audit-file-path, CHAPERONE_AUDIT_FILE_PATH or "auditFilePath" in the config file']);
    assert.match(problems(['--audit-sinks=webhook'])[0]!, /^auditWebhookConfigFile: required when auditSinks includes webhook/);
    assert.match(problems(['--audit-webhook-config-file=/x'])[0]!, /^auditWebhookConfigFile: set, but auditSinks does not include webhook/);
    assert.match(problems(['--audit-sinks=syslog'])[0]!, /--audit-sinks(\[0\])?: "syslog" is not a sink \(stdout, file, webhook\)/);
    assert.match(problems(['--audit-webhook-overflow=spill'])[0]!, /--audit-webhook-overflow: "spill" is not one of block, drop/);
  });

  it('refuses to start with a policy that is not valid, or a webhook kubeconfig it cannot use, naming the file and the place', function () {
    const policy = path.join(dir, 'policy.yaml');
    writeFileSync(policy, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Verbose\n');
    assert.deepEqual(problems([`--audit-policy-file=${policy}`]), [`auditPolicyFile: ${policy}: rules[0].level: is required: one of None, Metadata, Request, RequestResponse`]);
    assert.deepEqual(problems([`--audit-policy-file=${path.join(dir, 'missing.yaml')}`]), [`auditPolicyFile: ${path.join(dir, 'missing.yaml')}: cannot read: ENOENT`]);
    const kubeconfig = path.join(dir, 'no-context.kubeconfig');
    writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://audit.example/events"}}]\n');
    assert.match(problems(['--audit-sinks=webhook', `--audit-webhook-config-file=${kubeconfig}`])[0]!, new RegExp(`^auditWebhookConfigFile: ${kubeconfig}: current-context is not set`));
  });
});
