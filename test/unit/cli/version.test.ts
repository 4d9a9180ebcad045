// Every component prints package.json's version with --version (the bundles too:
// test/e2e/artefact.test.ts), and the chaperone launcher tells an older Node.js what it needs.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { runMain, type ProcessResult } from '../../support/run-main.js';

const REPO = path.resolve(import.meta.dirname, '../../..');
const PACKAGE_VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

function runNode(node: string, args: string[]): Promise<ProcessResult> {
  return new Promise((resolve) => {
    execFile(node, args, { cwd: REPO, env: { PATH: process.env.PATH }, timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A node binary on PATH older than 24 (the machine's own, outside npm's pinned one), or undefined. */
function olderNode(): { node: string; version: string } | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || dir.includes('node_modules')) continue;
    const node = path.join(dir, 'node');
    try {
      accessSync(node, constants.X_OK);
    } catch {
      continue;
    }
    const version = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
    if (Number(/^v(\d+)/.exec(version)?.[1]) < 24) return { node, version };
  }
  return undefined;
}

describe('--version', function () {
  this.timeout(60_000);

  for (const entry of ['sidecar/main.ts', 'injector/main.ts', 'cli/main.ts']) {
    it(`${entry} prints package.json's version and exits 0`, async function () {
      assert.deepEqual(await runMain(entry, ['--version']), { code: 0, stdout: `${PACKAGE_VERSION}\n`, stderr: '' });
    });
  }

  it('the sidecar lists --version in its help', async function () {
    const help = await runMain('sidecar/main.ts', ['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /--version +Print the version and exit\./);
  });

  it('bin/chaperone.mjs prints it too, through the launcher npm links', async function () {
    assert.deepEqual(await runNode(process.execPath, ['bin/chaperone.mjs', '--version']), { code: 0, stdout: `${PACKAGE_VERSION}\n`, stderr: '' });
  });
});

describe('bin/chaperone.mjs on an older Node.js', function () {
  this.timeout(30_000);

  it('says which Node.js chaperone needs, instead of a SyntaxError', async function () {
    const older = olderNode();
    // Debian's Node.js (20) beside npm's pinned 24: .ci/run installs it where it is missing.
    if (!older) assert.fail('no Node.js older than 24 on PATH (outside node_modules) to run the launcher with: install one (apt-get install nodejs), as .ci/run does');
    const result = await runNode(older.node, ['bin/chaperone.mjs', '--version']);
    assert.deepEqual(result, { code: 1, stdout: '', stderr: `chaperone needs Node.js 24 or later; this is ${older.version}\n` });
  });
});
