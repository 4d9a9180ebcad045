// A YAML body as the API server's audit event records it. The expectations are what kube-apiserver
// v1.37.2's own code (yaml.ToJSON, then its event's encoder) makes of each body; test/e2e/audit-yaml
// checks thousands of generated bodies against that code and against a real API server.
import assert from 'node:assert/strict';
import { goFloat32Key, goJsonString, yamlAsJson } from '../../../../sidecar/audit/yaml-json.js';

const patch = (body: string | Uint8Array, limit = 1 << 20) => yamlAsJson(typeof body === 'string' ? Buffer.from(body) : body, { patch: true, limit });

describe('sidecar/audit/yaml-json', function () {
  it('writes what go-yaml v2 decodes, as Go writes it: YAML 1.1 scalars, integers to 2^64, keys sorted by their bytes', function () {
    const cases: [string, string][] = [
      [
        'a: 9007199254740993\nb: 1e3\nc: 2001-12-14\nd: !!binary aGVsbG8=\ne: 18446744073709551615\nf: 0.1\ng: <&>\n1.5: x\n1000000.0: y\n',
        '{"1.5":"x","1e+06":true,"a":9007199254740993,"b":1000,"c":"2001-12-14","d":"hello","e":18446744073709551615,"f":0.1,"g":"\\u003c\\u0026\\u003e"}',
      ],
      ['x: "\\u2028"\ny: !!binary /w==\n08: a\nz: -0.0\n', '{"8":"a","true":"\\ufffd","x":"\\u2028","z":-0}'],
      [
        'a: &x {b: 1, c: [1,2]}\nd:\n  <<: *x\n  b: 2\ne: ! 12\nf: !!float 3\ng: 1e-7\nh: 123456789.0\n0.00001: k\n1e21: l\n-0.0: m\n',
        '{"-0":"m","1e+21":"l","1e-05":"k","a":{"b":1,"c":[1,2]},"d":{"b":2,"c":[1,2]},"e":"12","f":3,"g":1e-7,"h":123456789}',
      ],
      ['a: "\\b\\f\\x01\\t"\nb: 0b101\nc: -0b11\nd: 0x_1F\ne: +12\nf: 1_000\ng: 0b-101\n', '{"a":"\\b\\f\\u0001\\t","b":5,"c":-3,"d":31,"e":12,"f":1000,"g":-5}'],
      ['', 'null'],
      ['# only a comment\n', 'null'],
      ['{"a":   1, "b": "<"}', '{"a":1,"b":"\\u003c"}'],
    ];
    for (const [body, json] of cases) assert.deepEqual(patch(body), { json }, body);
  });

  it('records nothing where the API server records nothing, or one of several values, and says why', function () {
    const omitted = (body: string) => {
      const result = patch(body);
      assert.ok('omitted' in result, `${JSON.stringify(body)}: ${JSON.stringify(result)}`);
      return result.omitted;
    };
    assert.match(omitted('a: .inf\n'), /refuses it: json: unsupported value: \+Inf/);
    assert.match(omitted('? [a]\n: 1\n'), /refuses it: invalid map key/);
    assert.match(omitted('~: 1\n'), /refuses it: unsupported map key/);
    assert.match(omitted('18446744073709551615: 1\n'), /refuses it: unsupported map key of type: uint64/);
    assert.match(omitted('a: !!int x\n'), /refuses it: go-yaml cannot decode/);
    assert.match(omitted('{a: 1}'), /begins with `\{` but is not JSON/, 'a patch taken as JSON, which the event cannot hold');
    assert.match(omitted('1: a\n"1": b\n'), /not certain: .*"1"/);
    assert.match(omitted('a: "\u0001"\n'), /U\+0001, which libyaml refuses/);
    assert.deepEqual(patch('1: a\n"1": a\n'), { json: '{"1":"a"}' }, 'the same value either way is certain');
    assert.deepEqual(yamlAsJson(Buffer.from('{a: 1}'), { patch: false, limit: 1000 }), { json: '{"a":1}' }, 'a create reads it as YAML');
  });

  it('an alias bomb is refused as go-yaml refuses it, and nothing larger than the limit is built', function () {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
    assert.match((patch(lines.join('\n')) as { omitted: string }).omitted, /excessive aliasing/);
    assert.match((patch(`a: &a "${'x'.repeat(1000)}"\nb: [${Array(200).fill('*a').join(',')}]`, 10_000) as { omitted: string }).omitted, /larger than the 10000-byte limit/);
  });

  it('Go strings: bytes that are not UTF-8 become \\ufffd escapes, U+FFFD itself stays', function () {
    assert.equal(goJsonString(Buffer.from([0x61, 0xff, 0xed, 0xa0, 0x80, 0xef, 0xbf, 0xbd])), '"a\\ufffd\\ufffd\\ufffd\\ufffd\ufffd"');
  });

  it('float keys as strconv.FormatFloat(f, \'g\', -1, 32) writes them', function () {
    const cases: [number, string][] = [[1.5, '1.5'], [1e6, '1e+06'], [123456789, '1.2345679e+08'], [0.1, '0.1'], [1e-5, '1e-05'], [0.0001, '0.0001'], [1e39, '.inf'], [-0, '-0'], [100000, '100000']];
    for (const [value, key] of cases) assert.equal(goFloat32Key(value), key, String(value));
  });
});
