// The cluster's CA the injector writes for the sidecars: the one it verifies the API server with itself.
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { createCA } from '../../../lib/pki.js';
import { upstreamCaOf } from '../../../injector/provision/upstream-ca.js';
import { waitFor } from '../../../local-cluster/wait.js';

function kubeconfigWith(cluster: { caData?: string; caFile?: string }): KubeConfig {
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://10.0.0.1', skipTLSVerify: false, ...cluster }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kubeconfig;
}

describe("injector: the cluster's CA for the sidecars", function () {
  const first = createCA({ commonName: 'cluster-1' }).certPem;
  const second = createCA({ commonName: 'cluster-2' }).certPem;

  it("is the kubeconfig's certificate-authority-data", function () {
    const ca = upstreamCaOf(kubeconfigWith({ caData: Buffer.from(first).toString('base64') }));
    assert.equal(ca.current(), first);
    ca.close();
  });

  it('is unknown when the kubeconfig names no CA, or data that holds no certificate', function () {
    assert.equal(upstreamCaOf(kubeconfigWith({})).current(), undefined);
    assert.equal(upstreamCaOf(kubeconfigWith({ caData: Buffer.from('not a certificate').toString('base64') })).current(), undefined);
  });

  it('follows the CA file (the in-cluster service-account ca.crt), keeping the last bundle while the file is missing', async function () {
    const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-upstream-ca-'));
    const file = path.join(dir, 'ca.crt');
    await writeFile(file, first);
    const changes: string[] = [];
    const ca = upstreamCaOf(kubeconfigWith({ caFile: file }), { intervalMs: 20, onChange: (pem) => changes.push(pem) });
    try {
      assert.equal(ca.current(), first);
      await writeFile(`${file}.tmp`, `${first}${second}`);
      await rename(`${file}.tmp`, file);
      await waitFor('the new bundle', () => ca.current() === `${first}${second}`);
      assert.deepEqual(changes, [`${first}${second}`]);
      await rm(file);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(ca.current(), `${first}${second}`, 'a missing file keeps the last bundle');
      await writeFile(file, '');
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(ca.current(), `${first}${second}`, 'an empty file keeps the last bundle');
      await writeFile(file, second);
      await waitFor('the next bundle', () => ca.current() === second);
      assert.deepEqual(changes, [`${first}${second}`, second]);
    } finally {
      ca.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
