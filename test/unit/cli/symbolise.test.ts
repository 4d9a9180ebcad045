// chaperone symbolise: a stack trace of a bundle run as the images run it (no --enable-source-maps)
// names positions in the bundle; the command turns them into the TypeScript lines they came from.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { runMain } from '../../support/run-main.js';

const SOURCE = `export function checkUpstream(url: string): void {
  if (url.startsWith('http:')) {
    throw new Error('the upstream must be https: ' + url);
  }
}

export function startProxy(): void {
  checkUpstream('http://example.com');
}

startProxy();
`;

describe('chaperone symbolise', function () {
  this.timeout(60_000);
  let dir: string;
  let log: string;

  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-symbolise-'));
    await writeFile(path.join(dir, 'proxy.ts'), SOURCE);
    // As scripts/build-artefacts.ts builds the bundles: minified, names kept, a linked map without the sources.
    await build({
      entryPoints: [path.join(dir, 'proxy.ts')],
      outfile: path.join(dir, 'dist', 'sidecar.mjs'),
      bundle: true,
      platform: 'node',
      format: 'esm',
      minify: true,
      keepNames: true,
      sourcemap: 'linked',
      sourcesContent: false,
      logLevel: 'silent',
    });
    log = await new Promise<string>((resolve) => {
      execFile(process.execPath, [path.join(dir, 'dist', 'sidecar.mjs')], (_err, _stdout, stderr) => resolve(stderr));
    });
    await writeFile(path.join(dir, 'sidecar.log'), log);
  });

  after(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  it('maps each frame in the bundle to its TypeScript file and line, keeping the rest of the log', async function () {
    assert.match(log, /at checkUpstream \(file:\/\/\S+\/dist\/sidecar\.mjs:1:\d+\)/, 'without source maps the trace names the bundle');
    const result = await runMain('cli/main.ts', ['symbolise', '--map', path.join(dir, 'dist', 'sidecar.mjs.map'), path.join(dir, 'sidecar.log')]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Error: the upstream must be https: http:\/\/example\.com/);
    assert.match(result.stdout, /at checkUpstream \(proxy\.ts:3:11\)/);
    assert.match(result.stdout, /at startProxy \(proxy\.ts:8:3\)/);
    assert.doesNotMatch(result.stdout, /sidecar\.mjs:\d+:\d+/);
  });

  it('says so when the map is not named after a bundle', async function () {
    const result = await runMain('cli/main.ts', ['symbolise', '--map', path.join(dir, 'proxy.ts'), path.join(dir, 'sidecar.log')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /proxy\.ts is not named after a bundle \(sidecar\.mjs\.map/);
  });
});
