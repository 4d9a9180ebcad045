import assert from 'node:assert/strict';
import { goField, goFieldMatches, JsonRefused, parseGoJson } from '../../../../sidecar/authn/jwt/go-json.js';

const refused = (input: Uint8Array | string, pattern: RegExp) => assert.throws(() => parseGoJson(input), (err: Error) => err instanceof JsonRefused && pattern.test(err.message));

describe('sidecar/authn/jwt/go-json: JSON taken only where Go and JSON.parse read it alike', function () {
  it('reads ordinary JSON as JSON.parse does', function () {
    const text = '{"a":[1,2.5,-3e2,"x\\u00e9\\ud83d\\ude00"],"b":{"c":null,"d":true},"e":"\\"}{,:"}';
    assert.deepEqual(parseGoJson(Buffer.from(text)), JSON.parse(text));
    assert.deepEqual(parseGoJson('{"a":{},"b":{}}'), { a: {}, b: {} }, 'the same name in sibling objects is not a duplicate');
  });

  it('refuses a member name twice in one object, at any depth, escaped or not', function () {
    refused('{"sub":"a","sub":"b"}', /"sub" appears twice/);
    refused('{"x":[{"a":1,"a":1}]}', /"a" appears twice/);
    refused('{"sub":"a","s\\u0075b":"b"}', /"sub" appears twice/);
  });

  it('refuses bytes that are not UTF-8, a byte-order mark, and escaped lone surrogates', function () {
    refused(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xe2, 0x82, 0x22, 0x7d]), /not valid UTF-8/);
    refused(Buffer.from('\ufeff{}'), /not JSON/);
    refused('{"a":"x\\ud800"}', /unpaired surrogate/);
    refused('{"\\udc00":1}', /unpaired surrogate/);
  });

  it('refuses numbers beyond float64 and nesting deeper than a thousand levels', function () {
    refused('{"a":1e400}', /beyond float64/);
    refused('{"a":-1e309}', /beyond float64/);
    assert.deepEqual(parseGoJson('{"a":1e-400}'), { a: 0 }, 'underflow is zero for both');
    refused(`{"a":${'['.repeat(1001)}${']'.repeat(1001)}}`, /deeper than 1000/);
    assert.throws(() => parseGoJson('{"a":'), (err: Error) => err instanceof JsonRefused && err.syntax);
  });

  it('matches names to struct fields as encoding/json does: any ASCII letter case, K and ſ for k and s, the last match winning', function () {
    for (const name of ['exp', 'EXP', 'Exp', 'eXp']) assert.ok(goFieldMatches(name, 'exp'), name);
    assert.ok(goFieldMatches('\u212aind', 'kind'));
    assert.ok(goFieldMatches('i\u017f\u017f', 'iss'));
    for (const name of ['ex', 'expp', 'éxp', 'e_xp', 'ıss', 'İss']) assert.ok(!goFieldMatches(name, name.includes('ss') ? 'iss' : 'exp'), name);
    assert.equal(goField({ apiVersion: 'a', APIVERSION: 'b' }, 'apiVersion'), 'b');
    assert.equal(goField({ APIVERSION: 'b', apiVersion: 'a' }, 'apiVersion'), 'a');
    assert.equal(goField({ other: 1 }, 'apiVersion'), undefined);
  });
});
