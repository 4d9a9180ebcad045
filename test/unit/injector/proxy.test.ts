// The sidecar container the injector writes must be one the sidecar itself accepts: its arguments
// are read here by the sidecar's own configuration loader.
import assert from 'node:assert/strict';
import path from 'node:path';
import type { V1Container, V1Volume } from '@kubernetes/client-node';
import { loadSidecarConfig } from '../../../lib/sidecar-config/options.js';
import { injectedVolumes, sidecarArgs, sidecarContainer, TOKEN_VOLUME } from '../../../injector/proxy.js';
import { resolveSettings, type InjectionSettings } from '../../../injector/settings.js';
import { testConfig } from './helpers.js';

/** The environment the kubelet gives the container: its downward-API variables and the real service variables. */
function kubeletEnv(container: V1Container): Record<string, string> {
  const fields: Record<string, string> = { 'metadata.name': 'dashboard-7f9c', 'metadata.namespace': 'team-a' };
  const env: Record<string, string> = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
  for (const variable of container.env ?? []) env[variable.name] = variable.value ?? fields[variable.valueFrom!.fieldRef!.fieldPath]!;
  return env;
}

/** The volume mounted at the directory of this file, and the file's name in it. */
function source(container: V1Container, volumes: V1Volume[], file: string): { volume: V1Volume; name: string } {
  const mount = container.volumeMounts!.find((m) => m.mountPath === path.dirname(file));
  assert.ok(mount, `${file} is in no directory the sidecar mounts`);
  return { volume: volumes.find((v) => v.name === mount.name)!, name: path.basename(file) };
}

describe('injector/proxy (the sidecar container)', function () {
  /** The settings of a pod with these annotations in team-a, whose annotations are namespaceAnnotations. */
  function settings(annotations: Record<string, string> = {}, namespaceAnnotations: Record<string, string> = {}): InjectionSettings {
    return resolveSettings(testConfig(), annotations, { name: 'team-a', annotations: namespaceAnnotations });
  }

  it("is accepted by the sidecar's own configuration, listening where the dashboard is pointed", function () {
    const container = sidecarContainer(settings({ 'chaperone.dev/log-level': 'debug' }, { 'chaperone.dev/authenticators': 'client-cert,anonymous' }));
    const config = loadSidecarConfig(container.args!, kubeletEnv(container));
    assert.equal(config.listen, '127.0.0.1:6443');
    assert.equal(config.opsListen, ':9901');
    assert.equal(config.anonymous, true);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.podName, 'dashboard-7f9c');
    assert.equal(config.podNamespace, 'team-a');
    assert.equal(config.upstream, 'https://10.96.0.1:443', 'the sidecar reaches the real API server through the service variables');
  });

  it('points every file flag into a volume that holds that file', function () {
    const s = settings();
    const container = sidecarContainer(s);
    const volumes = injectedVolumes(s);
    const config = loadSidecarConfig(container.args!, kubeletEnv(container));

    const token = source(container, volumes, config.tokenFile);
    assert.equal(token.volume.name, TOKEN_VOLUME);
    const projection = token.volume.projected!.sources!.find((p) => p.serviceAccountToken)!.serviceAccountToken!;
    assert.deepEqual(projection, { expirationSeconds: 3600, path: token.name });
    const upstreamCa = source(container, volumes, config.upstreamCaFile);
    // The cluster CA as the injector wrote it into its own ConfigMap, never kube-root-ca.crt (which `edit` may change).
    const caSources = upstreamCa.volume.projected!.sources!.filter((p) => p.configMap);
    assert.deepEqual(caSources, [{ configMap: { name: 'chaperone-ca', items: [{ key: 'upstream-ca.crt', path: upstreamCa.name }] } }]);
    assert.ok(!JSON.stringify(volumes).includes('kube-root-ca.crt'), 'no volume of the sidecar names kube-root-ca.crt');

    for (const file of [config.tlsCertFile, config.tlsKeyFile]) {
      assert.equal(source(container, volumes, file).volume.secret?.secretName, 'chaperone-serving');
    }
    const identity = source(container, volumes, config.clientCaFile!);
    assert.deepEqual(identity.volume.configMap?.items, [{ key: 'identity-ca.crt', path: identity.name }]);
  });

  it('mounts no identity CA when client certificates are not among the authenticators', function () {
    const s = settings({}, { 'chaperone.dev/authenticators': 'anonymous' });
    assert.ok(!sidecarArgs(s).some((arg) => arg.startsWith('--client-ca-file')));
    assert.ok(!injectedVolumes(s).some((v) => v.name === 'chaperone-identity-ca'));
  });

  it('passes the OIDC issuer and client ID as the sidecar flags that mirror the API server', function () {
    const s = settings({}, { 'chaperone.dev/authenticators': 'oidc', 'chaperone.dev/oidc-issuer-url': 'https://issuer.example', 'chaperone.dev/oidc-client-id': 'headlamp' });
    const args = sidecarArgs(s);
    assert.ok(args.includes('--oidc-issuer-url=https://issuer.example'), args.join(' '));
    assert.ok(args.includes('--oidc-client-id=headlamp'), args.join(' '));
  });

  it('gives the token the configured audience and lifetime', function () {
    const s = resolveSettings(testConfig(['--token-audience=https://kubernetes.default.svc', '--token-expiration=2h']));
    const token = injectedVolumes(s).find((v) => v.name === TOKEN_VOLUME)!.projected!.sources![0]!.serviceAccountToken;
    assert.deepEqual(token, { audience: 'https://kubernetes.default.svc', expirationSeconds: 7200, path: 'token' });
  });

  it('is hardened: non-root, read-only root, no capabilities, no escalation, RuntimeDefault seccomp', function () {
    const sc = sidecarContainer(settings()).securityContext!;
    assert.equal(sc.runAsNonRoot, true);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.deepEqual(sc.capabilities, { drop: ['ALL'] });
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.privileged, false);
    assert.deepEqual(sc.seccompProfile, { type: 'RuntimeDefault' });
  });

  it('is a native sidecar only in native mode, and waits for /readyz on the ops port either way', function () {
    const native = sidecarContainer(settings());
    const classic = sidecarContainer(settings({ 'chaperone.dev/sidecar-mode': 'classic' }));
    assert.equal(native.restartPolicy, 'Always');
    assert.equal(classic.restartPolicy, undefined);
    assert.deepEqual(native.startupProbe!.httpGet, { path: '/readyz', port: 9901, scheme: 'HTTP' });
  });

  it('declares the port its ops listener (health, /metrics) binds under a name a PodMonitor selects, and no other', function () {
    const container = sidecarContainer(settings());
    const config = loadSidecarConfig(container.args!, kubeletEnv(container));
    assert.deepEqual(container.ports, [{ name: 'chaperone-ops', containerPort: Number(config.opsListen.split(':').pop()), protocol: 'TCP' }]);
    assert.match(container.ports[0]!.name, /^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/, 'an IANA service name the API server accepts');
  });
});
