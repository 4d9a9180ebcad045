// The inventory of the docs' command blocks keeps itself: every block a reader would run or apply
// (sh, bash, console, yaml) in README.md, docs/*.md and the examples' READMEs carries, in the HTML comment just above it,
// either the test that runs it as written (`<!-- runs in test/e2e/x.test.ts -->`) or why nothing can
// run it here (`<!-- not run: needs a registry -->`). A new block without either fails here, so a
// command cannot be documented without someone deciding whether a test proves it works.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { COMMAND_LANGUAGES, documentationFiles, fencedBlocks, type FencedBlock } from '../../support/doc-blocks.js';

const REPO = path.resolve(import.meta.dirname, '../../..');

const where = (block: FencedBlock) => `${block.file}:${block.line}`;

describe("the docs' command blocks: each run by a test or said not to be", function () {
  let blocks: FencedBlock[];

  before(async function () {
    blocks = (await Promise.all((await documentationFiles()).map((file) => fencedBlocks(file)))).flat();
  });

  it('every fenced block names its language (output and pictures are text), so no command hides in a bare block', function () {
    assert.deepEqual(blocks.filter((block) => block.language === '').map(where), []);
  });

  it('every command block is marked: runs in a test, or not run with a reason', function () {
    const unmarked = blocks.filter((block) => COMMAND_LANGUAGES.has(block.language) && !block.marker);
    assert.deepEqual(
      unmarked.map(where),
      [],
      'put <!-- runs in test/e2e/<file>.test.ts --> (and run it there: test/support/doc-runner.ts) or <!-- not run: <why> --> on the line above each',
    );
    assert.ok(blocks.filter((block) => block.marker).length >= 60, 'the docs hold at least the 60 command blocks counted when this inventory was made');
  });

  it('a block marked as run names a test file that runs the docs: it exists and reads this doc', function () {
    const wrong = blocks.flatMap((block) => {
      if (!block.marker || !('runsIn' in block.marker)) return [];
      const test = block.marker.runsIn;
      if (!/^test\/.+\.test\.ts$/.test(test) || !existsSync(path.join(REPO, test))) return [`${where(block)}: ${test} is no test file`];
      const source = readFileSync(path.join(REPO, test), 'utf8');
      // A suite with a DocRunner (or blocksRunIn) proves it ran every block marked for it; another must at least read the doc.
      const provesItRanThem = source.includes('DocRunner.create(') || source.includes('blocksRunIn(');
      return provesItRanThem || source.includes(block.file) ? [] : [`${where(block)}: ${test} never reads ${block.file}`];
    });
    assert.deepEqual(wrong, []);
  });

  it('a block marked as not run says why in words, and only command blocks carry markers', function () {
    const vague = blocks.filter((block) => block.marker && 'notRun' in block.marker && block.marker.notRun.split(/\s+/).length < 4);
    assert.deepEqual(vague.map(where), [], 'say why it cannot run here (what it needs that the local cluster has not)');
    const stray = blocks.filter((block) => block.marker && !COMMAND_LANGUAGES.has(block.language));
    assert.deepEqual(stray.map(where), []);
  });

  it('every marker stands directly above a block (a marker elsewhere marks nothing)', async function () {
    for (const file of await documentationFiles()) {
      const text = readFileSync(path.join(REPO, file), 'utf8');
      const written = [...text.matchAll(/^\s*<!-- (runs in |not run: ).*-->\s*$/gm)].length;
      assert.equal(written, blocks.filter((block) => block.file === file && block.marker).length, `${file} has a marker with no block below it`);
    }
  });
});
