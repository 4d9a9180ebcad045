import assert from 'node:assert/strict';
import { ConfigError, type Options } from '../../../lib/config.js';
import { sidecarConfigSpec } from '../../../lib/sidecar-config/options.js';
import { loadInjectorConfig } from '../../../injector/config.js';
import { Denial } from '../../../injector/denial.js';
import { resolveSettings, resolveSettingsOnce, type NamespaceSettingsSource } from '../../../injector/settings.js';
import { applyPatch, decodePatch, inject, namespacesWith, review, testConfig } from './helpers.js';

/** The sidecar's options without some: a sidecar release that lacks those flags. */
function sidecarWithout(...keys: string[]): Options {
  return Object.fromEntries(Object.entries(sidecarConfigSpec.options).filter(([key]) => !keys.includes(key)));
}

const TEAM_A = 'team-a';

/** The namespace team-a with these annotations, as the injector reads it. */
function namespace(annotations: Record<string, string>): NamespaceSettingsSource {
  return { name: TEAM_A, annotations };
}

function denial(annotations: Record<string, string>, sidecarOptions?: Options, namespaceAnnotations: Record<string, string> = {}, config = testConfig()): Denial {
  try {
    resolveSettings(config, annotations, namespace(namespaceAnnotations), sidecarOptions);
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
    assert.deepEqual([config.cpuRequest, config.cpuLimit, config.memoryRequest, config.memoryLimit], ['50m', '500m', '128Mi', '256Mi']);
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

  it('refuses a sidecar memory limit the sidecar cannot run in', function () {
    assert.throws(() => testConfig(['--memory-limit=64Mi']), /--memory-limit.*"64Mi" is less than 128Mi/s);
    assert.equal(testConfig(['--memory-limit=128Mi']).memoryLimit, '128Mi');
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
      'chaperone.dev/sidecar-mode': 'classic',
      'chaperone.dev/read-only': 'true',
      'chaperone.dev/log-level': 'debug',
      'chaperone.dev/cpu-request': '0.1',
      'chaperone.dev/cpu-limit': '1',
      'chaperone.dev/memory-request': '128Mi',
      'chaperone.dev/memory-limit': '1Gi',
    });
    assert.equal(settings.sidecarMode, 'classic');
    assert.equal(settings.readOnly, true);
    assert.equal(settings.sidecarLogLevel, 'debug');
    assert.deepEqual([settings.cpuRequest, settings.cpuLimit, settings.memoryRequest, settings.memoryLimit], ['100m', '1', '128Mi', '1Gi']);
  });

  const BAD: [string, string, RegExp][] = [
    ['chaperone.dev/log-level', 'loud', /"loud" is not one of trace, debug, info, warn, error/],
    ['chaperone.dev/sidecar-mode', 'sideways', /"sideways" is not one of native, classic/],
    ['chaperone.dev/read-only', 'yes', /"yes" is not a boolean \(true or false\)/],
    ['chaperone.dev/cpu-request', 'a lot', /"a lot" is not a resource quantity \(examples: 100m, 0.5, 64Mi, 1Gi\)/],
    ['chaperone.dev/memory-limit', '100Mi', /"100Mi" is less than 128Mi: the sidecar takes about 90 MiB idle, and V8's heap is half the limit/],
  ];
  for (const [annotation, value, message] of BAD) {
    it(`denies ${annotation}: ${JSON.stringify(value)}, naming the annotation and what is allowed`, function () {
      const err = denial({ [annotation]: value });
      assert.equal(err.code, 400);
      assert.match(err.message, new RegExp(`annotation ${annotation.replace(/[./]/g, '\\$&')}: `));
      assert.match(err.message, message);
    });
  }

  it('denies an unknown chaperone.dev/ annotation (a typo would otherwise be ignored), listing the settings', function () {
    const err = denial({ 'chaperone.dev/readonly': 'true' });
    assert.match(err.message, /annotation chaperone\.dev\/readonly: not a chaperone setting \(the settings are chaperone\.dev\/sidecar-mode, .*chaperone\.dev\/read-only/);
    assert.doesNotMatch(err.message, /the settings are [^)]*chaperone\.dev\/image/, 'the image is not a pod setting');
  });

  it('tells a pod that tries to opt out by annotation that it takes a label', function () {
    assert.match(denial({ 'chaperone.dev/inject': 'disabled' }).message, /opting out is a label, not an annotation: label the pod chaperone\.dev\/inject=disabled/);
  });

  it('ignores the annotations the injector writes itself', function () {
    assert.doesNotThrow(() =>
      resolveSettings(testConfig(), { 'chaperone.dev/status': '{}', 'chaperone.dev/original-service-account': 'x', 'chaperone.dev/placeholder-token': 'y' }),
    );
  });

  it('resolves the same settings to the same frozen object, whatever the namespace, and refuses each time', function () {
    const config = testConfig();
    const pod = { 'chaperone.dev/log-level': 'debug', 'example.com/other': 'x' };
    const once = resolveSettingsOnce(config, pod, namespace({ 'chaperone.dev/authenticators': 'anonymous' }));
    assert.deepEqual(once, resolveSettings(config, pod, namespace({ 'chaperone.dev/authenticators': 'anonymous' })));
    assert.ok(Object.isFrozen(once));
    assert.equal(resolveSettingsOnce(config, { ...pod, 'chaperone.dev/status': '{}' }, { name: 'team-b', annotations: { 'chaperone.dev/authenticators': 'anonymous' } }), once);
    assert.notEqual(resolveSettingsOnce(config, pod, namespace({})), once);
    assert.notEqual(resolveSettingsOnce(config, { 'chaperone.dev/log-level': 'warn' }, namespace({ 'chaperone.dev/authenticators': 'anonymous' })), once);
    assert.notEqual(resolveSettingsOnce(testConfig(['--read-only']), pod, namespace({ 'chaperone.dev/authenticators': 'anonymous' })), once);
    for (const name of [TEAM_A, 'team-b']) {
      assert.throws(() => resolveSettingsOnce(config, { 'chaperone.dev/image': 'x' }, { name, annotations: {} }), (err: Error) => err instanceof Denial && err.message.includes(`kubectl annotate namespace ${name} `));
    }
  });

  it('remembers the last 256 settings resolved, forgetting the oldest first', function () {
    const config = testConfig();
    const limit = (mebibytes: number) => ({ 'chaperone.dev/memory-limit': `${mebibytes}Mi` });
    const first = resolveSettingsOnce(config, limit(300), namespace({}));
    for (let mebibytes = 301; mebibytes < 300 + 256; mebibytes++) resolveSettingsOnce(config, limit(mebibytes), namespace({}));
    assert.equal(resolveSettingsOnce(config, limit(300), namespace({})), first);
    resolveSettingsOnce(config, limit(556), namespace({}));
    resolveSettingsOnce(config, limit(557), namespace({}));
    assert.notEqual(resolveSettingsOnce(config, limit(300), namespace({})), first);
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
    const err = denial({}, undefined, { 'chaperone.dev/authenticators': 'oidc' });
    assert.match(err.message, /includes oidc, which needs chaperone\.dev\/oidc-issuer-url on the namespace \(or the injector's --oidc-issuer-url\)/);
    assert.match(err.message, /needs chaperone\.dev\/oidc-client-id on the namespace/);
  });

  it('denies a setting the sidecar has no flag for yet, rather than admitting a pod whose sidecar would not start', function () {
    const older = sidecarWithout('readOnly', 'clusterTokenReview');
    assert.match(
      denial({ 'chaperone.dev/read-only': 'true' }, older).message,
      /chaperone\.dev\/read-only is true, which needs the sidecar flag --read-only: this release of the sidecar does not have it yet/,
    );
    assert.match(denial({}, older, { 'chaperone.dev/authenticators': 'cluster-token-review' }).message, /chaperone\.dev\/authenticators includes cluster-token-review, which needs the sidecar flag --cluster-token-review/);
    const newer = { ...sidecarConfigSpec.options, readOnly: sidecarConfigSpec.options.anonymous, clusterTokenReview: sidecarConfigSpec.options.anonymous };
    assert.equal(resolveSettings(testConfig(), { 'chaperone.dev/read-only': 'true' }, undefined, newer).readOnly, true);
  });

  describe('what the sidecar runs or trusts: the namespace (cluster administrators) or the injector, never the pod', function () {
    const TRUST = {
      'chaperone.dev/image': 'ghcr.io/chaperone-dev/chaperone-sidecar:0.1.0',
      'chaperone.dev/authenticators': 'oidc,anonymous',
      'chaperone.dev/oidc-issuer-url': 'https://issuer.attacker.example',
      'chaperone.dev/oidc-client-id': 'any-client-of-hers',
    };

    it('refuses a pod that chooses its image, authenticators, issuer or client ID, saying where each setting lives now', function () {
      const err = denial(TRUST);
      assert.equal(err.code, 400);
      for (const [annotation] of Object.entries(TRUST)) {
        const flag = annotation === 'chaperone.dev/image' ? '--sidecar-image' : `--${annotation.slice('chaperone.dev/'.length)}`;
        const escaped = annotation.replace(/[./]/g, '\\$&');
        assert.match(
          err.message,
          new RegExp(`annotation ${escaped}: what the sidecar runs or trusts is not a pod's to choose: remove it from the pod; cluster administrators set it on the namespace \\(kubectl annotate namespace team-a ${escaped}=\\.\\.\\.\\) or as the injector's ${flag}`),
        );
      }
    });

    it('refuses the per-pod setting even where it matches the namespace: it would be ignored otherwise', function () {
      const ns = { 'chaperone.dev/authenticators': 'oidc', 'chaperone.dev/oidc-issuer-url': 'https://auth.example.com', 'chaperone.dev/oidc-client-id': 'headlamp' };
      assert.match(denial({ 'chaperone.dev/oidc-client-id': 'headlamp' }, undefined, ns).message, /annotation chaperone\.dev\/oidc-client-id: what the sidecar runs or trusts is not a pod's to choose/);
    });

    it('refuses a pod that names an image, even the injector\'s own or an allowed one (F3: an older release before a critical fix is allowed by --allowed-images)', function () {
      for (const image of [testConfig().sidecarImage, 'ghcr.io/chaperone-dev/chaperone-sidecar:0.1.0', 'docker.io/evil/sidecar:1']) {
        const err = denial({ 'chaperone.dev/image': image });
        assert.equal(err.code, 400);
        assert.match(
          err.message,
          /annotation chaperone\.dev\/image: what the sidecar runs or trusts is not a pod's to choose: remove it from the pod; cluster administrators set it on the namespace \(kubectl annotate namespace team-a chaperone\.dev\/image=\.\.\.\) or as the injector's --sidecar-image/,
        );
      }
    });

    it("takes the namespace's image over the injector's --sidecar-image, any tag or digest of --allowed-images", function () {
      const tag = 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0';
      assert.equal(resolveSettings(testConfig(), {}, namespace({ 'chaperone.dev/image': tag })).sidecarImage, tag);
      const digest = `ghcr.io/chaperone-dev/chaperone-sidecar@sha256:${'a'.repeat(64)}`;
      assert.equal(resolveSettings(testConfig(), { 'chaperone.dev/log-level': 'debug' }, namespace({ 'chaperone.dev/image': digest })).sidecarImage, digest);
      const mirror = testConfig(['--allowed-images=registry.internal/chaperone-sidecar', '--sidecar-image=registry.internal/chaperone-sidecar:v0.2.0']);
      assert.equal(resolveSettings(mirror, {}, namespace({ 'chaperone.dev/image': 'registry.internal/chaperone-sidecar:v0.2.1' })).sidecarImage, 'registry.internal/chaperone-sidecar:v0.2.1');
      assert.equal(resolveSettings(mirror, {}, namespace({})).sidecarImage, 'registry.internal/chaperone-sidecar:v0.2.0');
    });

    it("refuses the injector's own --sidecar-image from a repository --allowed-images does not name (so the injector does not start)", function () {
      const config = testConfig(['--sidecar-image=docker.io/someone/chaperone-sidecar:v0.1.0']);
      assert.throws(
        () => resolveSettings(config),
        /the sidecar image "docker\.io\/someone\/chaperone-sidecar:v0\.1\.0" \(--sidecar-image\) is not an image of ghcr\.io\/chaperone-dev\/chaperone-sidecar \(--allowed-images\)/,
      );
    });

    it("denies a namespace's image from a repository the injector does not allow, as it denied a pod's", function () {
      for (const image of ['docker.io/evil/sidecar:1', 'ghcr.io/chaperone-dev/chaperone-sidecar-evil:1', 'ghcr.io/chaperone-dev/chaperone-sidecar/evil:1']) {
        const err = denial({}, undefined, { 'chaperone.dev/image': image });
        assert.equal(err.code, 400);
        assert.match(
          err.message,
          new RegExp(`namespace team-a's annotation chaperone\\.dev/image: ${JSON.stringify(image).replace(/[./]/g, '\\$&')} is not an image of ghcr\\.io/chaperone-dev/chaperone-sidecar \\(the injector's --allowed-images\\)`),
        );
      }
    });

    it("takes the namespace's annotations over the injector's flags", function () {
      const config = testConfig(['--authenticators=client-cert', '--oidc-issuer-url=https://installation.example', '--oidc-client-id=installation']);
      const ns = namespace({ 'chaperone.dev/authenticators': 'oidc, client-cert', 'chaperone.dev/oidc-issuer-url': 'https://auth.example.com/realms/company', 'chaperone.dev/oidc-client-id': 'headlamp' });
      const settings = resolveSettings(config, { 'chaperone.dev/log-level': 'debug' }, ns);
      assert.deepEqual([settings.authenticators, settings.oidcIssuerUrl, settings.oidcClientId], [['oidc', 'client-cert'], 'https://auth.example.com/realms/company', 'headlamp']);
      const fromFlags = resolveSettings(testConfig(['--authenticators=oidc', '--oidc-issuer-url=https://installation.example', '--oidc-client-id=installation']), {}, namespace({}));
      assert.deepEqual([fromFlags.authenticators, fromFlags.oidcIssuerUrl, fromFlags.oidcClientId], [['oidc'], 'https://installation.example', 'installation']);
    });

    it('takes the client ID from the namespace and the issuer from the injector (each setting on its own)', function () {
      const settings = resolveSettings(testConfig(['--authenticators=oidc', '--oidc-issuer-url=https://installation.example', '--oidc-client-id=installation']), {}, namespace({ 'chaperone.dev/oidc-client-id': 'team-a-app' }));
      assert.deepEqual([settings.oidcIssuerUrl, settings.oidcClientId], ['https://installation.example', 'team-a-app']);
    });

    const BAD_NAMESPACE: [string, string, RegExp][] = [
      ['chaperone.dev/authenticators', 'client-cert,ldap', /"client-cert,ldap" \(item 1\) is not one of client-cert, oidc, cluster-token-review, anonymous/],
      ['chaperone.dev/authenticators', 'client-cert,client-cert', /names an authenticator twice/],
      ['chaperone.dev/oidc-issuer-url', 'http://issuer.example', /is not an https URL/],
      ['chaperone.dev/image', 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0; rm -rf', /is not an image reference/],
    ];
    for (const [annotation, value, message] of BAD_NAMESPACE) {
      it(`denies a namespace's ${annotation}: ${JSON.stringify(value)}, as the injector's flag would be refused`, function () {
        const err = denial({}, undefined, { [annotation]: value });
        assert.equal(err.code, 400);
        assert.match(err.message, new RegExp(`namespace team-a's annotation ${annotation.replace(/[./]/g, '\\$&')}: `));
        assert.match(err.message, message);
      });
    }

    it('reaches the sidecar through the admission review: the namespace as the injector reads it, not the pod', async function () {
      const pod = { metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] } };
      const oidc = { 'chaperone.dev/authenticators': 'oidc', 'chaperone.dev/oidc-issuer-url': 'https://auth.example.com', 'chaperone.dev/oidc-client-id': 'headlamp' };
      const out = await review({ object: pod }, testConfig(), namespacesWith(oidc));
      assert.equal(out.response.allowed, true, out.response.status?.message);
      const args = applyPatch(pod, decodePatch(out)).spec!.initContainers![0]!.args!;
      assert.ok(args.includes('--oidc-issuer-url=https://auth.example.com') && args.includes('--oidc-client-id=headlamp'), args.join(' '));
      assert.ok(!args.some((a) => a.startsWith('--client-ca-file')), args.join(' '));
      const { pod: injected } = await inject(pod);
      assert.ok(injected.spec!.initContainers![0]!.args!.some((a) => a.startsWith('--client-ca-file')), 'without annotations: the injector\'s --authenticators');
      const refused = await review({ object: { ...pod, metadata: { name: 'dash', annotations: { 'chaperone.dev/authenticators': 'anonymous' } } } }, testConfig(), namespacesWith(oidc));
      assert.equal(refused.response.allowed, false);
      assert.equal(refused.response.status?.code, 400);
      assert.match(refused.response.status?.message ?? '', /annotation chaperone\.dev\/authenticators: what the sidecar runs or trusts is not a pod's to choose: .*kubectl annotate namespace team-a chaperone\.dev\/authenticators=\.\.\./);
    });

    it("reads only what the sidecar runs or trusts from the namespace (its image, validated): its other chaperone.dev/ annotations are the access policy's", function () {
      const image = 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0';
      const settings = resolveSettings(testConfig(), {}, namespace({ 'chaperone.dev/access': 'read-only', 'chaperone.dev/log-level': 'debug', 'chaperone.dev/image': image }));
      assert.equal(settings.sidecarLogLevel, 'info');
      assert.equal(settings.sidecarImage, image);
      assert.match(denial({}, undefined, { 'chaperone.dev/access': 'read-only', 'chaperone.dev/image': 'docker.io/evil/sidecar:1' }).message, /namespace team-a's annotation chaperone\.dev\/image: "docker\.io\/evil\/sidecar:1" is not an image of/);
    });
  });

  describe('read-only: a pod narrows itself, never widens', function () {
    it('turns read-only on for one pod', function () {
      assert.equal(resolveSettings(testConfig(), { 'chaperone.dev/read-only': 'true' }, namespace({})).readOnly, true);
    });

    it("refuses a pod that turns off the injector's --read-only", function () {
      const err = denial({ 'chaperone.dev/read-only': 'false' }, undefined, {}, testConfig(['--read-only']));
      assert.match(err.message, /annotation chaperone\.dev\/read-only: "false" would let people write through a sidecar the injector makes read-only \(--read-only\): a pod may only turn read-only on/);
    });

    it('lets "false" stand where it changes nothing', function () {
      assert.equal(resolveSettings(testConfig(), { 'chaperone.dev/read-only': 'false' }, namespace({})).readOnly, false);
    });
  });
});
