import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../../../..');

describe('docs/authentication.md', function () {
  it('shows the cluster-token-review role exactly as the end-to-end suite applies it', async function () {
    const docs = await readFile(path.join(REPO, 'docs/authentication.md'), 'utf8');
    const role = await readFile(path.join(REPO, 'manifests/components/cluster-token-review/cluster-token-review-clusterrole.yaml'), 'utf8');
    assert.ok(docs.includes(`\`\`\`yaml\n${role}\`\`\``), 'the role in the docs differs from manifests/components/cluster-token-review/cluster-token-review-clusterrole.yaml');
  });
});
