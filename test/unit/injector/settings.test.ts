import assert from 'node:assert/strict';
import { ConfigError, type Options } from '../../../lib/config.js';
import { sidecarConfigSpec } from '../../../sidecar/config.js';
import { loadInjectorConfig } from '../../../injector/config.js';
import { Denial } from '../../../injector/denial.js';
import { resolveSettings } from '../../../injector/settings.js';
import { testConfig } from './helpers.js';

/** The sidecar's options without some: a sidecar release that lacks those flags. */
function sidecarWithout(...keys: string[]): Options {
  return Object.fromEntries(Object.entries(sidecarConfigSpec.options).filter(([key]) => !keys.includes(key)));
}

function denial(annotations: Record<string, string>, sidecarOptions?: Options): Denial {
  try {
    resolveSettings(testConfig(), annotations, sidecarOptions);
  } catch (err) {
    assert.ok(err instanceof Denial, `expected a Denial, got ${String(err)}`);
    return err;
  }
  assert.fail('the annotations were accepted');
}

describe('injector/config', function () {
  it('has the documented defaults', function () {
    const config = testConfig();
    assert.equal(config.listen, ':8443');
    assert.equal(config.namespace, 'chaperone-system');
    assert.equal(config.serviceAccount, 'chaperone-impersonator');
    assert.equal(config.servingSecret, 'chaperone-serving');
    assert.equal(config.caConfigMap, 'chaperone-ca');
    assert.equal(config.tokenExpiration, 3_600_000);
    assert.equal(config.tokenAudience, undefined);
    assert.equal(config.sidecarMode, 'native');
    assert.deepEqual(config.authenticators, ['client-cert']);
    assert.deepEqual([config.cpuRequest, config.cpuLimit, config.memoryRequest, config.memoryLimit], ['50m', '500m', '64Mi', '256Mi']);
  });

  it('refuses bad values, naming each flag and what it takes', function () {
    try {
      loadInjectorConfig(['--sidecar-mode=sideways', '--cpu-limit=lots', '--authenticators=client-cert,magic', '--sidecar-image=Not An Image'], {});
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /--sidecar-mode: "sideways" is not one of native, classic/);
      assert.match(err.message, /--cpu-limit: "lots" is not a resource quantity/);
      assert.match(err.message, /--authenticators\[1\]: "magic" is not one of client-cert, oidc, cluster-token-review, anonymous/);
      assert.match(err.message, /--sidecar-image: "Not An Image" is not an image reference/);
      assert.doesNotMatch(err.message, /tlsCertFile/, 'the certificate files are optional: without them, the controller\'s certificate is served');
    }
  });

  it('stores quantities as the API server would', function () {
    assert.equal(testConfig(['--memory-limit=0.5Gi']).memoryLimit, '512Mi');
  });
});

describe('injector/settings', function () {
  it('takes the injector defaults when the pod says nothing', function () {
    const settings = resolveSettings(testConfig(), { 'app.kubernetes.io/name': 'headlamp' });
    assert.equal(settings.sidecarImage, 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.1.0');
    assert.equal(settings.sidecarLogLevel, 'info');
    assert.equal(settings.readOnly, false);
  });

  it('lets each chaperone.dev/<setting> annotation override its default', function () {
    const settings = resolveSettings(testConfig(), {
      'chaperone.dev/image': 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0',
      'chaperone.dev/sidecar-mode': 'classic',
      'chaperone.dev/authenticators': 'client-cert, anonymous',
      'chaperone.dev/log-level': 'debug',
      'chaperone.dev/cpu-request': '0.1',
      'chaperone.dev/cpu-limit': '1',
      'chaperone.dev/memory-request': '128Mi',
      'chaperone.dev/memory-limit': '1Gi',
    });
    assert.equal(settings.sidecarImage, 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0');
    assert.equal(settings.sidecarMode, 'classic');
    assert.deepEqual(settings.authenticators, ['client-cert', 'anonymous']);
    assert.equal(settings.sidecarLogLevel, 'debug');
    assert.deepEqual([settings.cpuRequest, settings.cpuLimit, settings.memoryRequest, settings.memoryLimit], ['100m', '1', '128Mi', '1Gi']);
  });

  const BAD: [string, string, RegExp][] = [
    ['chaperone.dev/log-level', 'loud', /"loud" is not one of trace, debug, info, warn, error/],
    ['chaperone.dev/sidecar-mode', 'sideways', /"sideways" is not one of native, classic/],
    ['chaperone.dev/read-only', 'yes', /"yes" is not a boolean \(true or false\)/],
    ['chaperone.dev/authenticators', 'client-cert,ldap', /"client-cert,ldap" \(item 1\) is not one of client-cert, oidc, cluster-token-review, anonymous/],
    ['chaperone.dev/authenticators', 'client-cert,client-cert', /names an authenticator twice/],
    ['chaperone.dev/cpu-request', 'a lot', /"a lot" is not a resource quantity \(examples: 100m, 0.5, 64Mi, 1Gi\)/],
    ['chaperone.dev/oidc-issuer-url', 'http://issuer.example', /is not an https URL/],
    ['chaperone.dev/image', 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0; rm -rf', /is not an image reference/],
  ];
  for (const [annotation, value, message] of BAD) {
    it(`denies ${annotation}: ${JSON.stringify(value)}, naming the annotation and what is allowed`, function () {
      const err = denial({ [annotation]: value });
      assert.equal(err.code, 400);
      assert.match(err.message, new RegExp(`annotation ${annotation.replace(/[./]/g, '\\$&')}: `));
      assert.match(err.message, message);
    });
  }

  it('denies an image from a repository the injector does not allow, and allows any tag or digest of its own', function () {
    assert.match(denial({ 'chaperone.dev/image': 'docker.io/evil/sidecar:1' }).message, /is not an image of ghcr\.io\/chaperone-dev\/chaperone-sidecar \(the injector's --allowed-images\)/);
    const digest = `ghcr.io/chaperone-dev/chaperone-sidecar@sha256:${'a'.repeat(64)}`;
    assert.equal(resolveSettings(testConfig(), { 'chaperone.dev/image': digest }).sidecarImage, digest);
  });

  it('denies an unknown chaperone.dev/ annotation (a typo would otherwise be ignored), listing the settings', function () {
    const err = denial({ 'chaperone.dev/readonly': 'true' });
    assert.match(err.message, /annotation chaperone\.dev\/readonly: not a chaperone setting \(the settings are chaperone\.dev\/image, .*chaperone\.dev\/read-only/);
  });

  it('tells a pod that tries to opt out by annotation that it takes a label', function () {
    assert.match(denial({ 'chaperone.dev/inject': 'disabled' }).message, /opting out is a label, not an annotation: label the pod chaperone\.dev\/inject=disabled/);
  });

  it('ignores the annotations the injector writes itself', function () {
    assert.doesNotThrow(() =>
      resolveSettings(testConfig(), { 'chaperone.dev/status': '{}', 'chaperone.dev/original-service-account': 'x', 'chaperone.dev/placeholder-token': 'y' }),
    );
  });

  it('reports every problem at once', function () {
    const err = denial({ 'chaperone.dev/log-level': 'loud', 'chaperone.dev/cpu-limit': '?', 'chaperone.dev/nope': '1' });
    assert.equal(err.message.split('; ').length, 3, err.message);
  });

  it('denies a request above its limit', function () {
    assert.match(
      denial({ 'chaperone.dev/memory-request': '1Gi', 'chaperone.dev/memory-limit': '512Mi' }).message,
      /the memory request 1Gi \(chaperone\.dev\/memory-request\) is more than the memory limit 512Mi \(chaperone\.dev\/memory-limit\)/,
    );
  });

  it('denies the oidc authenticator without an issuer and a client ID', function () {
    const err = denial({ 'chaperone.dev/authenticators': 'oidc' });
    assert.match(err.message, /includes oidc, which needs chaperone\.dev\/oidc-issuer-url \(or the injector's --oidc-issuer-url\)/);
    assert.match(err.message, /needs chaperone\.dev\/oidc-client-id/);
  });

  it('denies a setting the sidecar has no flag for yet, rather than admitting a pod whose sidecar would not start', function () {
    const older = sidecarWithout('readOnly', 'clusterTokenReview');
    assert.match(
      denial({ 'chaperone.dev/read-only': 'true' }, older).message,
      /chaperone\.dev\/read-only is true, which needs the sidecar flag --read-only: this release of the sidecar does not have it yet/,
    );
    assert.match(denial({ 'chaperone.dev/authenticators': 'cluster-token-review' }, older).message, /chaperone\.dev\/authenticators includes cluster-token-review, which needs the sidecar flag --cluster-token-review/);
    const newer = { ...sidecarConfigSpec.options, readOnly: sidecarConfigSpec.options.anonymous, clusterTokenReview: sidecarConfigSpec.options.anonymous };
    assert.equal(resolveSettings(testConfig(), { 'chaperone.dev/read-only': 'true' }, newer).readOnly, true);
  });
});
