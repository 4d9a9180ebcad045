// The injector runs without @kubernetes/client-node (issue 20: its own copy of undici, generated
// models and the rest cost ~40 MiB resident and 1.4 MB of bundle for a handful of REST verbs). Its
// models may be imported as types, which the build erases; nothing reachable from injector/main.ts
// may import it at run time. test/e2e/artefact.test.ts checks the built bundle's packages as well.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');
const FORBIDDEN = '@kubernetes/client-node';

interface ModuleImport {
  specifier: string;
  /** Erased by the build: `import type …` or `export type … from` (with verbatimModuleSyntax, `import { type A }` is not). */
  typeOnly: boolean;
}

const STATIC = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

export function importsOf(text: string): ModuleImport[] {
  return [
    ...[...text.matchAll(STATIC)].map((match) => ({ specifier: match[3]!, typeOnly: match[2] !== undefined })),
    ...[...text.matchAll(DYNAMIC)].map((match) => ({ specifier: match[1]!, typeOnly: false })),
  ];
}

/** Every source file loaded at run time from this entry point, by its relative imports. */
function reachableFrom(entry: string): Map<string, ModuleImport[]> {
  const modules = new Map<string, ModuleImport[]>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (modules.has(file)) continue;
    const imports = importsOf(readFileSync(path.join(REPO, file), 'utf8'));
    modules.set(file, imports);
    for (const { specifier, typeOnly } of imports) {
      if (typeOnly || !specifier.startsWith('.')) continue;
      pending.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.js$/, '.ts'));
    }
  }
  return modules;
}

const importsForbidden = (imports: ModuleImport[]) => imports.some(({ specifier, typeOnly }) => !typeOnly && (specifier === FORBIDDEN || specifier.startsWith(`${FORBIDDEN}/`)));

describe('the injector at run time', function () {
  const modules = reachableFrom('injector/main.ts');

  it('reaches every module the injector runs, its REST client included', function () {
    for (const file of ['injector/controller.ts', 'injector/provision/reconciler.ts', 'injector/certs/signer.ts', 'lib/kube-api/client.ts', 'lib/webhook-kubeconfig.ts']) assert.ok(modules.has(file), file);
  });

  it('imports nothing of @kubernetes/client-node but types', function () {
    assert.deepEqual([...modules].filter(([, imports]) => importsForbidden(imports)).map(([file]) => file), []);
  });

  it('would catch a runtime import, however it is written', function () {
    const runtime = [
      "import { KubeConfig } from '@kubernetes/client-node';",
      "import { type V1Pod } from '@kubernetes/client-node';",
      "import * as k8s from '@kubernetes/client-node';",
      "import '@kubernetes/client-node/dist/watch.js';",
      "export { Watch } from '@kubernetes/client-node';",
      "const k8s = await import('@kubernetes/client-node');",
    ];
    for (const line of runtime) assert.ok(importsForbidden(importsOf(line)), line);
    assert.equal(importsForbidden(importsOf("import type { V1Pod, V1Secret } from '@kubernetes/client-node';\nexport type { V1Lease } from '@kubernetes/client-node';")), false);
    assert.ok(importsForbidden(reachableFrom('cli/main.ts').get('cli/cluster.ts')!), 'the CLI keeps client-node: cli/cluster.ts imports KubeConfig');
  });
});
