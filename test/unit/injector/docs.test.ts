import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { INJECTOR_DOC, renderInjectorDoc } from '../../../scripts/gen-config-docs.js';
import { NAMESPACE_SETTINGS, POD_SETTINGS } from '../../../injector/settings.js';

describe('docs/injector.md', function () {
  it('has the annotation table the settings generate', function () {
    const current = readFileSync(INJECTOR_DOC, 'utf8');
    assert.ok(current === renderInjectorDoc(current), 'the annotation table in docs/injector.md is out of date: run npx tsx scripts/gen-config-docs.ts');
    for (const setting of [...Object.keys(POD_SETTINGS), ...Object.keys(NAMESPACE_SETTINGS)]) assert.ok(current.includes(`\`chaperone.dev/${setting}\``), setting);
  });
});
