import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { INJECTOR_DOC, renderInjectorDoc } from '../../../scripts/gen-config-docs.js';
import { NAMESPACE_SETTINGS, POD_SETTINGS, resolveSettings } from '../../../injector/settings.js';
import { injectedVolumes, sidecarContainer } from '../../../injector/proxy.js';
import { testConfig } from './helpers.js';

describe('docs/injector.md', function () {
  it('has the annotation table the settings generate', function () {
    const current = readFileSync(INJECTOR_DOC, 'utf8');
    assert.ok(current === renderInjectorDoc(current), 'the annotation table in docs/injector.md is out of date: run npx tsx scripts/gen-config-docs.ts');
    for (const setting of [...Object.keys(POD_SETTINGS), ...Object.keys(NAMESPACE_SETTINGS)]) assert.ok(current.includes(`\`chaperone.dev/${setting}\``), setting);
  });

  it('lists every volume and port the injector adds, with its name', function () {
    const current = readFileSync(INJECTOR_DOC, 'utf8');
    const settings = resolveSettings(testConfig(), {}, { name: 'team-a', annotations: { 'chaperone.dev/authenticators': 'client-cert' } });
    for (const volume of injectedVolumes(settings)) assert.ok(current.includes(`| \`${volume.name}\` |`), `the volume table misses ${volume.name}`);
    for (const port of sidecarContainer(settings).ports ?? []) {
      assert.ok(current.includes(`| \`chaperone\` | ${port.containerPort}/${port.protocol} | \`${port.name}\` |`), `the port table misses ${port.name}`);
    }
  });
});
