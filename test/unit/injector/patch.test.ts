import assert from 'node:assert/strict';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { escapePointer, jsonPatch, patchJson, serialiseOnce } from '../../../injector/patch.js';

/** As the documents arrive and leave: parsed JSON (plain prototypes, no undefined). */
const asJson = (value: unknown) => JSON.parse(JSON.stringify(value)) as Record<string, unknown>;

describe('injector/patch', function () {
  it('escapes ~ and / in keys, as annotation names need', function () {
    assert.equal(escapePointer('chaperone.dev/status'), 'chaperone.dev~1status');
    assert.equal(escapePointer('a~/b'), 'a~0~1b');
    assert.deepEqual(jsonPatch({ metadata: { annotations: { x: '1' } } }, { metadata: { annotations: { x: '1', 'chaperone.dev/status': '{}' } } }), [
      { op: 'add', path: '/metadata/annotations/chaperone.dev~1status', value: '{}' },
    ]);
  });

  it('creates what is missing and replaces arrays whole', function () {
    assert.deepEqual(jsonPatch({ spec: { containers: [{ name: 'a' }] } }, { spec: { containers: [{ name: 'b' }, { name: 'a' }], initContainers: [{ name: 'c' }] } }), [
      { op: 'replace', path: '/spec/containers', value: [{ name: 'b' }, { name: 'a' }] },
      { op: 'add', path: '/spec/initContainers', value: [{ name: 'c' }] },
    ]);
  });

  it('is empty for equal documents, and removes what is gone', function () {
    assert.deepEqual(jsonPatch({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), []);
    assert.deepEqual(jsonPatch({ a: 1, b: { c: 2 } }, { b: {} }), [
      { op: 'remove', path: '/a' },
      { op: 'remove', path: '/b/c' },
    ]);
  });

  it('turns any JSON object into any other, as an independent RFC 6902 implementation applies it', function () {
    // fast-json-patch refuses __proto__ keys, as an API server never sends them.
    const key = fc.string({ maxLength: 6 }).filter((k) => k !== '__proto__');
    const value = fc.letrec((tie) => ({
      json: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), fc.integer(), fc.string({ maxLength: 4 }), fc.array(tie('json'), { maxLength: 3 }), tie('object')),
      object: fc.dictionary(key, tie('json'), { maxKeys: 4 }),
    }));
    fc.assert(
      fc.property(value.object.map(asJson), value.object.map(asJson), (before, after) => {
        const patch = jsonPatch(before, after);
        const applied = jsonpatch.applyPatch(jsonpatch.deepClone(before) as object, patch as jsonpatch.Operation[], true, false).newDocument;
        assert.deepEqual(applied, after);
      }),
    );
  });

  it('takes a property whose value is undefined for absent, as the serialised patch and document do', function () {
    const key = fc.constantFrom('a', 'b', 'c', 'constructor', 'toString');
    // The pod the injector builds: JSON values, and properties set to undefined anywhere in its objects.
    const value = fc.letrec((tie) => ({
      json: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.integer({ min: 0, max: 2 }), fc.array(tie('json'), { maxLength: 2 }), tie('object')),
      object: fc.dictionary(key, fc.oneof(tie('json'), fc.constant(undefined)), { maxKeys: 4 }),
    }));
    fc.assert(
      fc.property(value.object.map(asJson), value.object, (before, built) => {
        const patch = asJson({ ops: jsonPatch(before, built) }).ops as jsonpatch.Operation[];
        const applied = jsonpatch.applyPatch(jsonpatch.deepClone(before) as object, patch, true, false).newDocument;
        assert.deepEqual(applied, asJson(built));
        if (JSON.stringify(before) === JSON.stringify(built)) assert.deepEqual(patch, []);
      }),
      { numRuns: 500 },
    );
  });

  it('serialises a patch as JSON.stringify does, taking what was serialised once from there, and freezes that', function () {
    const key = fc.constantFrom('a', 'b', 'c', 'constructor', 'toString');
    const value = fc.letrec((tie) => ({
      json: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.string({ maxLength: 3 }), fc.array(tie('json'), { maxLength: 3 }), tie('object')),
      object: fc.dictionary(key, fc.oneof(tie('json'), fc.constant(undefined)), { maxKeys: 4 }),
    }));
    // Values the patch shares with others (the sidecar, the injector's volumes), anywhere in lists of the document.
    const shared = value.object.map((object) => serialiseOnce(object));
    const document = fc.letrec((tie) => ({
      json: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.integer(), shared, fc.array(fc.oneof(shared, tie('json')), { maxLength: 3 }), tie('object')),
      object: fc.dictionary(key, fc.oneof(tie('json'), fc.constant(undefined)), { maxKeys: 4 }),
    })).object;
    fc.assert(
      fc.property(document.map(asJson), document, (before, after) => {
        const patch = jsonPatch(before, after);
        assert.equal(patchJson(patch), JSON.stringify(patch));
      }),
      { numRuns: 500 },
    );
    const sidecar = serialiseOnce({ name: 'chaperone', args: ['--listen'] });
    assert.throws(() => sidecar.args.push('--anonymous'), TypeError);
  });
});