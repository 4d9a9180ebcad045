// chaperone doctor on the installation configuration: the injector's own judgement, in the doctor's words.
import assert from 'node:assert/strict';
import YAML from 'yaml';
import type { V1Namespace, V1Secret } from '@kubernetes/client-node';
import { diagnose } from '../../../../cli/doctor/diagnose.js';
import { absent, found, unreadable } from '../../../../cli/doctor/facts.js';
import { installationConfigName, installationConfigProblems } from '../../../../cli/doctor/sign-in.js';
import { loadInjectorConfig } from '../../../../injector/config.js';
import { findingOf, healthyFacts, NAMESPACE } from './fixture.js';

const CHECK = 'sign-in/installation-config';
const config = loadInjectorConfig([], {});
const namespace = (annotations: Record<string, string> = {}): V1Namespace => ({ metadata: { name: NAMESPACE, annotations, labels: { 'chaperone.dev/inject': 'enabled' } } });
const secret = (files: Record<string, string>): V1Secret => ({
  metadata: { name: 'chaperone-sidecar-config', resourceVersion: String(Math.random()).slice(2) },
  data: Object.fromEntries(Object.entries(files).map(([key, text]) => [key, Buffer.from(text).toString('base64')])),
});
const AUTHN = YAML.stringify({ apiVersion: 'apiserver.config.k8s.io/v1', kind: 'AuthenticationConfiguration', jwt: [{ issuer: { url: 'https://issuer.example.com', audiences: ['headlamp'] }, claimMappings: { username: { claim: 'sub', prefix: '' } } }] });

function finding(signIn: NonNullable<ReturnType<typeof healthyFacts>['signIn']>) {
  return findingOf(diagnose({ ...healthyFacts(), signIn }), CHECK);
}

describe('chaperone doctor: sign-in', function () {
  it("names the injector's Secret, or the one the Namespace's annotation chooses", function () {
    assert.deepEqual(installationConfigName(config, namespace()), { name: 'chaperone-sidecar-config', namedByNamespace: false });
    assert.deepEqual(installationConfigName(config, namespace({ 'chaperone.dev/sidecar-config': 'team-sso' })), { name: 'team-sso', namedByNamespace: true });
  });

  it('finds what the injector would refuse, and nothing in a good one', async function () {
    assert.deepEqual(await installationConfigProblems(config, namespace(), secret({ 'sidecar.yaml': 'authenticationConfig: a.yaml\n', 'a.yaml': AUTHN })), []);
    const [problem] = await installationConfigProblems(config, namespace(), secret({ 'sidecar.yaml': 'listen: 0.0.0.0:6443\n' }));
    assert.match(problem ?? '', /sidecar\.yaml: listen is not an installation setting/);
  });

  it('is ok without the default Secret, fails when the Namespace names one that is missing or the injector would refuse it, warns when it cannot read it', function () {
    const name = 'chaperone-sidecar-config';
    assert.equal(finding({ name, namedByNamespace: false, secret: absent }).status, 'ok');
    const missing = finding({ name: 'team-sso', namedByNamespace: true, secret: absent });
    assert.equal(missing.status, 'fail');
    assert.match(missing.message, /the namespace's chaperone\.dev\/sidecar-config names Secret chaperone-system\/team-sso, which does not exist: the injector refuses every pod here/);
    const refused = finding({ name, namedByNamespace: false, secret: found(secret({})), problems: ['listen is not an installation setting'] });
    assert.equal(refused.status, 'fail');
    assert.match(refused.message, /is refused: listen is not an installation setting/);
    assert.equal(finding({ name, namedByNamespace: false, secret: unreadable('forbidden: you need get on secrets') }).status, 'warn');
    assert.equal(finding({ name, namedByNamespace: false, secret: found(secret({})), problems: [] }).status, 'ok');
  });
});
