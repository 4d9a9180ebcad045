// The fixture recipe reads the release's own go.mod: these check that reading against a go.mod of
// the shape Kubernetes publishes.
import assert from 'node:assert/strict';
import { requiredVersion, scratchGoMod, stagingModules, stagingVersion } from '../../../local-cluster/binaries.js';

const KUBERNETES_GO_MOD = `module k8s.io/kubernetes

go 1.26.0

require (
	go.etcd.io/etcd/client/v3 v3.7.0
	k8s.io/api v0.0.0
	k8s.io/utils v0.0.0-20260210185600-b8788abfbbc2
)

require (
	go.etcd.io/etcd/server/v3 v3.7.0 // indirect
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/cri-streaming => ./staging/src/k8s.io/cri-streaming
	k8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-20260101000000-000000000000
)
`;

describe('control-plane binaries recipe', function () {
  it('replaces exactly the staging modules, read from replace directives', function () {
    assert.deepEqual(stagingModules(KUBERNETES_GO_MOD), ['k8s.io/api', 'k8s.io/cri-streaming']);
  });

  it('maps a Kubernetes release to its staging module version', function () {
    assert.equal(stagingVersion('v1.37.2'), 'v0.37.2');
    assert.throws(() => stagingVersion('v1.37.0-rc.1'), /not a release version/);
  });

  it('finds the etcd server version the release requires, direct or indirect', function () {
    assert.equal(requiredVersion(KUBERNETES_GO_MOD, 'go.etcd.io/etcd/server/v3'), 'v3.7.0');
    assert.throws(() => requiredVersion(KUBERNETES_GO_MOD, 'go.etcd.io/bbolt'), /not required/);
  });

  it('writes a scratch module that requires the release and pins each replacement', function () {
    const goMod = scratchGoMod('example.test/fixture', '1.26.0', { 'k8s.io/kubernetes': 'v1.37.2' }, { 'k8s.io/api': 'v0.37.2' });
    assert.match(goMod, /^module example\.test\/fixture$/m);
    assert.match(goMod, /^go 1\.26\.0$/m);
    assert.match(goMod, /^\tk8s\.io\/kubernetes v1\.37\.2$/m);
    assert.match(goMod, /^replace k8s\.io\/api => k8s\.io\/api v0\.37\.2$/m);
  });
});
