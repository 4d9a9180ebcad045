// Golden files: each pod in test/fixtures/injector/*.in.yaml, reviewed by the injector, with the
// patch it answered applied (by fast-json-patch, not by the injector's own code), must give the pod
// in the .out.yaml beside it; and reviewing that output again must give no patch at all.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ALREADY_INJECTED, expectedOutput, GOLDEN_DIR, goldenCases } from '../../support/injector-goldens.js';
import { jsonPatch } from '../../../injector/patch.js';
import { decodePatch, review } from './helpers.js';

const REGENERATE = 'run npx tsx test/support/injector-goldens.ts and review the diff';

const REQUIRED_CASES = [
  'minimal',
  'headlamp',
  'kubernetes-dashboard',
  'generate-name',
  'init-containers',
  'native-sidecar',
  'collisions',
  'automount-false',
  ALREADY_INJECTED.name,
];

describe('injector golden files (test/fixtures/injector)', function () {
  const cases = goldenCases();

  it('has every case the injector promises to handle, and no output without an input', function () {
    assert.deepEqual(cases.map((c) => c.name).sort(), [...REQUIRED_CASES].sort());
    const outputs = readdirSync(GOLDEN_DIR).filter((file) => file.endsWith('.out.yaml'));
    assert.deepEqual(outputs.sort(), cases.map((c) => `${c.name}.out.yaml`).sort(), `stale .out.yaml files: ${REGENERATE}`);
  });

  for (const golden of cases) {
    describe(golden.name, function () {
      it('is injected into exactly the pod in its .out.yaml', async function () {
        assert.ok(existsSync(golden.outputFile), `${golden.name}.out.yaml is missing: ${REGENERATE}`);
        const expected = YAML.parse(readFileSync(golden.outputFile, 'utf8')) as Record<string, unknown>;
        const actual = (await expectedOutput(golden.input)) as Record<string, unknown>;
        const differences = jsonPatch(expected, actual).map((op) => `${op.op} ${op.path}`);
        assert.deepEqual(actual, expected, `${path.basename(golden.outputFile)} is stale (${differences.join(', ')}): ${REGENERATE}`);
      });

      it('is left alone when injected a second time', async function () {
        const once = await expectedOutput(golden.input);
        const again = await review({ object: once });
        assert.equal(again.response.allowed, true);
        assert.deepEqual(decodePatch(again), []);
      });
    });
  }

  it('keeps the already-injected case an injected pod: its input is the headlamp output and comes out the same', async function () {
    const golden = cases.find((c) => c.name === ALREADY_INJECTED.name)!;
    const source = cases.find((c) => c.name === ALREADY_INJECTED.from)!;
    assert.deepEqual(golden.input, await expectedOutput(source.input), `${ALREADY_INJECTED.name}.in.yaml is stale: ${REGENERATE}`);
    assert.deepEqual(await expectedOutput(golden.input), golden.input);
  });
});
