import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../lib/config.js';
import { loadSidecarConfig } from '../../../lib/sidecar-config/options.js';

const IN_CLUSTER = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
const SERVING = ['--tls-cert-file=/tls/tls.crt', '--tls-key-file=/tls/tls.key'];

function refusal(argv: string[], env: Record<string, string>): string {
  try {
    loadSidecarConfig(argv, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('the configuration was accepted');
}

describe('sidecar/config', function () {
  it('has the documented defaults', function () {
    assert.deepEqual(loadSidecarConfig(SERVING, IN_CLUSTER), {
      listen: '127.0.0.1:6443',
      extraListen: undefined,
      extraListenServices: [],
      tlsCertFile: '/tls/tls.crt',
      tlsKeyFile: '/tls/tls.key',
      clientCaFile: undefined,
      clientCertificateRevocations: [],
      upstream: 'https://10.96.0.1:443',
      upstreamCaFile: '/var/run/secrets/chaperone/upstream/ca.crt',
      tokenFile: '/var/run/secrets/chaperone/upstream/token',
      installationConfig: undefined,
      installationConfigDir: '/var/run/chaperone/installation',
      anonymous: false,
      authenticationConfig: undefined,
      oidcIssuerUrl: undefined,
      oidcClientId: undefined,
      oidcUsernameClaim: 'sub',
      oidcUsernamePrefix: undefined,
      oidcGroupsClaim: undefined,
      oidcGroupsPrefix: undefined,
      oidcRequiredClaim: [],
      oidcCaFile: undefined,
      oidcSigningAlgs: ['RS256'],
      authenticationTokenWebhookConfigFile: undefined,
      authenticationTokenWebhookVersion: 'v1beta1',
      authenticationTokenWebhookCacheAuthorizedTtl: 120_000,
      authenticationTokenWebhookCacheUnauthorizedTtl: 30_000,
      authenticationTokenWebhookTimeout: 10_000,
      authenticationTokenWebhookAudiences: [],
      clusterTokenReview: false,
      clusterTokenReviewAudiences: [],
      clusterTokenReviewCacheTtl: 10_000,
      accessPolicyFile: undefined,
      readOnly: false,
      guardAllow: [],
      guardDeny: [],
      authzAllowedTtl: 30_000,
      authzDeniedTtl: 10_000,
      authzCacheSize: 10_000,
      upstreamTimeout: 60_000,
      maxRequestBodyBytes: 3 * 1024 * 1024,
      maxHeaderBytes: 64 * 1024,
      headersTimeout: 10_000,
      http2: true,
      http2MaxStreams: 250,
      maxUpgrades: 100,
      shutdownTimeout: 20_000,
      opsListen: ':9901',
      logLevel: 'info',
      podName: undefined,
      podNamespace: undefined,
      auditPolicyFile: undefined,
      auditSinks: ['stdout'],
      auditFilePath: undefined,
      auditFileMaxSize: 100,
      auditFileMaxBackups: 5,
      auditWebhookConfigFile: undefined,
      auditWebhookBatchMaxSize: 400,
      auditWebhookBatchMaxWait: 5000,
      auditWebhookBufferSize: 10000,
      auditWebhookOverflow: 'block',
      auditWebhookInitialBackoff: 1000,
      auditFlushTimeout: 4000,
      auditBodyLimit: 256 * 1024,
    });
  });

  it('finds the API server from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, bracketing IPv6', function () {
    assert.equal(loadSidecarConfig(SERVING, { KUBERNETES_SERVICE_HOST: 'fd00:10:96::1', KUBERNETES_SERVICE_PORT: '6443' }).upstream, 'https://[fd00:10:96::1]:6443');
  });

  it('prefers an upstream that is given to the one derived', function () {
    assert.equal(loadSidecarConfig([...SERVING, '--upstream=https://api.example:6443'], IN_CLUSTER).upstream, 'https://api.example:6443');
    assert.equal(loadSidecarConfig(SERVING, { ...IN_CLUSTER, CHAPERONE_UPSTREAM: 'https://127.0.0.1:7443' }).upstream, 'https://127.0.0.1:7443');
  });

  it('requires an upstream outside a cluster, saying why', function () {
    assert.equal(
      refusal(SERVING, { KUBERNETES_SERVICE_HOST: '10.96.0.1' }),
      'upstream: required when KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is unset; set it with --upstream, CHAPERONE_UPSTREAM or "upstream" in the config file',
    );
    assert.equal(loadSidecarConfig([...SERVING, '--upstream=https://127.0.0.1:7443'], {}).upstream, 'https://127.0.0.1:7443');
  });

  it('names a derived upstream that is not a URL, and where it came from', function () {
    assert.match(
      refusal(SERVING, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: 'https' }),
      /^upstream \(default https:\/\/\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT\): "https:\/\/10.96.0.1:https" is not an https URL/,
    );
  });

  it('names the missing serving certificate and key', function () {
    assert.deepEqual(refusal([], IN_CLUSTER).split('\n'), [
      'tlsCertFile: required; set it with --tls-cert-file, CHAPERONE_TLS_CERT_FILE or "tlsCertFile" in the config file',
      'tlsKeyFile: required; set it with --tls-key-file, CHAPERONE_TLS_KEY_FILE or "tlsKeyFile" in the config file',
    ]);
  });

  it('reads every option from a file, as a ConfigMap would hold it', function () {
    const dir = mkdtempSync(join(tmpdir(), 'chaperone-sidecar-config-'));
    try {
      const file = join(dir, 'sidecar.yaml');
      writeFileSync(
        file,
        [
          'listen: "[::1]:6443"',
          'extraListen: 10.244.1.7:6443',
          'tlsCertFile: /tls/tls.crt',
          'tlsKeyFile: /tls/tls.key',
          'clientCaFile: /identity/ca.crt',
          'upstream: https://api.example:6443',
          'anonymous: true',
          'guardAllow: ["system:monitoring"]',
          'guardDeny: [breakglass, root]',
          'authzAllowedTtl: 1m',
          'authzDeniedTtl: 500ms',
          'authzCacheSize: 50',
          'upstreamTimeout: 2m',
          'opsListen: 127.0.0.1:9901',
          'logLevel: debug',
          'podName: dashboard-0',
          'podNamespace: team-a',
        ].join('\n'),
      );
      const config = loadSidecarConfig([`--config=${file}`], {});
      assert.equal(config.listen, '[::1]:6443');
      assert.equal(config.extraListen, '10.244.1.7:6443');
      assert.equal(config.clientCaFile, '/identity/ca.crt');
      assert.equal(config.anonymous, true);
      assert.deepEqual(config.guardAllow, ['system:monitoring']);
      assert.deepEqual(config.guardDeny, ['breakglass', 'root']);
      assert.equal(config.authzAllowedTtl, 60_000);
      assert.equal(config.authzDeniedTtl, 500);
      assert.equal(config.authzCacheSize, 50);
      assert.equal(config.upstreamTimeout, 120_000);
      assert.equal(config.opsListen, '127.0.0.1:9901');
      assert.equal(config.logLevel, 'debug');
      assert.equal(config.podName, 'dashboard-0');
      assert.equal(config.podNamespace, 'team-a');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a log level it does not know', function () {
    assert.equal(refusal([...SERVING, '--log-level=verbose'], IN_CLUSTER), '--log-level: "verbose" is not one of trace, debug, info, warn, error');
  });
});
