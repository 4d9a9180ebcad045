// docs/authentication.md's configuration examples that are no command, as the sidecar loads them:
// each is put into an installation configuration Secret, which the sidecar (and the injector, before
// it admits a pod) must accept as written.
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { installationProblems } from '../../../lib/sidecar-config/installation.js';
import { blocksRunIn, type FencedBlock } from '../../support/doc-blocks.js';

const SIDECAR_ARGV = ['--tls-cert-file=/c', '--tls-key-file=/k', '--upstream=https://127.0.0.1:6443'];
const REF = 'chaperone-system/chaperone-sidecar-config';

async function problemsOf(files: Record<string, string>): Promise<string[]> {
  const secret = { resourceVersion: '1', files: new Map(Object.entries(files).map(([key, text]) => [key, Buffer.from(text)])) };
  return installationProblems(SIDECAR_ARGV, REF, secret, tmpdir());
}

describe("docs/authentication.md's configuration examples, loaded as the sidecar loads them", function () {
  let blocks: FencedBlock[];
  const block = (text: string) => blocks.find((b) => b.body.includes(text))!;

  before(async function () {
    blocks = await blocksRunIn(import.meta.filename);
    assert.deepEqual(blocks.map((b) => b.file), ['docs/authentication.md', 'docs/authentication.md']);
  });

  it("the revocations: sidecar.yaml of the installation configuration, as written", async function () {
    assert.deepEqual(await problemsOf({ 'sidecar.yaml': block('clientCertificateRevocations:').body }), []);
  });

  it('the AuthenticationConfiguration of the OIDC guide, named by sidecar.yaml', async function () {
    const files = { 'sidecar.yaml': 'authenticationConfig: authentication-config.yaml\n', 'authentication-config.yaml': block('kind: AuthenticationConfiguration').body };
    assert.deepEqual(await problemsOf(files), []);
    // The test can fail: a misspelt claim expression is refused, naming it.
    const broken = { ...files, 'authentication-config.yaml': files['authentication-config.yaml'].replace('claims.email', 'claims.email +') };
    assert.notDeepEqual(await problemsOf(broken), []);
  });
});
