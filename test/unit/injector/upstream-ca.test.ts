// The cluster's CA the injector writes for the sidecars: the one it verifies the API server with itself.
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { kubeconfigConnection, type KubeConnection } from '../../../lib/kube-api/connection.js';
import { createCA } from '../../../lib/pki.js';
import { upstreamCaOf } from '../../../injector/provision/upstream-ca.js';
import { waitFor } from '../../../local-cluster/wait.js';

describe("injector: the cluster's CA for the sidecars", function () {
  const first = createCA({ commonName: 'cluster-1' }).certPem;
  const second = createCA({ commonName: 'cluster-2' }).certPem;
  let dir: string;
  let n = 0;

  /** The connection of a kubeconfig whose cluster has these fields. */
  async function connectionWith(cluster: Record<string, string>): Promise<KubeConnection> {
    const file = path.join(dir, `k${n++}.kubeconfig`);
    const config = { clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.1', ...cluster } }], users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }] };
    await writeFile(file, YAML.stringify({ ...config, 'current-context': 'x' }));
    return kubeconfigConnection(file);
  }

  beforeEach(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-upstream-ca-'));
  });

  afterEach(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  it("is the kubeconfig's certificate-authority-data", async function () {
    const ca = upstreamCaOf(await connectionWith({ 'certificate-authority-data': Buffer.from(first).toString('base64') }));
    assert.equal(ca.current(), first);
    ca.close();
  });

  it('is unknown when the kubeconfig names no CA, or data that holds no certificate', async function () {
    assert.equal(upstreamCaOf(await connectionWith({})).current(), undefined);
    assert.equal(upstreamCaOf(await connectionWith({ 'certificate-authority-data': Buffer.from('not a certificate').toString('base64') })).current(), undefined);
  });

  it('follows the CA file (the in-cluster service-account ca.crt), keeping the last bundle while the file is missing', async function () {
    const file = path.join(dir, 'ca.crt');
    await writeFile(file, first);
    const changes: string[] = [];
    const ca = upstreamCaOf(await connectionWith({ 'certificate-authority': file }), { intervalMs: 20, onChange: (pem) => changes.push(pem) });
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
    }
  });
});
