// Dependencies point down: lib/ is imported by everything and imports nothing of chaperone's own
// above it; the injector and the sidecar never import each other; neither imports the CLI; product
// code never imports test code. Checked on every import of every source file.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');

/** What each top-level directory may import, besides itself and packages. */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  lib: [],
  sidecar: ['lib'],
  injector: ['lib'],
  cli: ['lib', 'sidecar', 'injector', 'local-cluster'],
  'local-cluster': ['lib', 'sidecar', 'injector', 'scripts'],
  scripts: ['lib', 'sidecar', 'injector', 'cli', 'local-cluster'],
  bench: ['lib', 'sidecar', 'injector', 'cli', 'local-cluster', 'scripts'],
  test: ['lib', 'sidecar', 'injector', 'cli', 'local-cluster', 'scripts', 'bench'],
};

interface Edge {
  file: string;
  target: string;
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s(?:[^'";]*?\sfrom\s)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** Every relative import of a source file, as repository paths. */
function importsOf(file: string, text: string): Edge[] {
  return [...text.matchAll(IMPORT)].map((match) => ({ file, target: path.posix.normalize(path.posix.join(path.posix.dirname(file), match[1] ?? match[2]!)) }));
}

function topLevel(file: string): string {
  return file.split('/', 1)[0]!;
}

export function layeringViolations(edges: readonly Edge[]): string[] {
  return edges
    .filter(({ file, target }) => {
      const from = topLevel(file);
      const to = topLevel(target);
      return from !== to && !(MAY_IMPORT[from] ?? []).includes(to);
    })
    .map(({ file, target }) => `${file} imports ${target}`);
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(REPO, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && /\.(ts|mts|mjs)$/.test(entry.name) && !entry.parentPath.includes('node_modules'))
    .map((entry) => path.relative(REPO, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}

describe('layering: dependencies point down', function () {
  const edges = Object.keys(MAY_IMPORT).flatMap((dir) => sourceFiles(dir).flatMap((file) => importsOf(file, readFileSync(path.join(REPO, file), 'utf8'))));

  it('reads the imports of every source file', function () {
    assert.ok(edges.length > 500, `only ${edges.length} imports found`);
    assert.ok(edges.some((edge) => edge.file === 'sidecar/sidecar.ts' && edge.target === 'lib/tls-listeners.js'));
    assert.ok(edges.some((edge) => edge.file === 'cli/demo.ts' && edge.target.startsWith('local-cluster/')));
  });

  it('has no import against the layers', function () {
    assert.deepEqual(layeringViolations(edges), []);
  });

  it('would catch each kind of wrong edge', function () {
    const wrong = [
      { file: 'injector/review.ts', target: 'sidecar/config.js' },
      { file: 'sidecar/pipeline.ts', target: 'injector/denial.js' },
      { file: 'sidecar/main.ts', target: 'cli/main.js' },
      { file: 'lib/status.ts', target: 'sidecar/authz/request-info.js' },
      { file: 'cli/demo.ts', target: 'test/support/shared.js' },
      { file: 'local-cluster/kube.ts', target: 'test/unit/injector/helpers.js' },
    ];
    assert.equal(layeringViolations(wrong).length, wrong.length);
    assert.deepEqual(
      importsOf('injector/x.ts', "import { a } from '../sidecar/a.js';\nimport type { B } from '../lib/b.js';\nexport { c } from './c.js';\nconst d = await import('../cli/d.js');\n").map((e) => e.target),
      ['sidecar/a.js', 'lib/b.js', 'injector/c.js', 'cli/d.js'],
    );
  });
});
