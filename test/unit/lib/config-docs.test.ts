import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { CONFIGURATION_DOC, renderConfigurationDoc } from '../../../scripts/gen-config-docs.js';

describe('docs/configuration.md', function () {
  it('is what the configuration specs generate', function () {
    const stale = 'docs/configuration.md is out of date with the configuration specs: run npx tsx scripts/gen-config-docs.ts';
    assert.ok(existsSync(CONFIGURATION_DOC), stale);
    assert.ok(readFileSync(CONFIGURATION_DOC, 'utf8') === renderConfigurationDoc(), stale);
  });
});
