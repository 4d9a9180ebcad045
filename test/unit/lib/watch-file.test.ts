import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { watchFile } from '../../../lib/watch-file.js';

describe('lib/watch-file', function () {
  let dir: string;

  beforeEach(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'watch-file-'));
  });

  afterEach(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  it('has read the file as it is when refresh returns: a file emptied, then filled, ends filled', async function () {
    const file = path.join(dir, 'token');
    writeFileSync(file, 'first');
    const watched = watchFile(file, { intervalMs: 60_000 });
    try {
      for (let i = 0; i < 50; i++) {
        writeFileSync(file, '');
        const emptied = watched.refresh(); // the change a writer's truncation announces
        writeFileSync(file, `token-${i}`);
        const filled = watched.refresh(); // and its write, noticed before the first was over
        assert.equal(watched.current()?.toString(), `token-${i}`);
        await Promise.all([emptied, filled]);
        assert.equal(watched.current()?.toString(), `token-${i}`);
      }
    } finally {
      watched.close();
    }
  });

  it('reports a file that went missing or empty as no content', async function () {
    const file = path.join(dir, 'token');
    writeFileSync(file, 'x');
    const changes: (string | undefined)[] = [];
    const watched = watchFile(file, { intervalMs: 60_000, onChange: (content) => changes.push(content?.toString()) });
    try {
      writeFileSync(file, '');
      await watched.refresh();
      assert.equal(watched.current(), undefined);
      writeFileSync(file, 'y');
      await watched.refresh();
      assert.deepEqual(changes, [undefined, 'y']);
    } finally {
      watched.close();
    }
  });
});
