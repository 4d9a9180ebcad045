// sidecar/authn/jwt/cel.ts and cel-runtime.ts: CEL as cel-go evaluates it in the API server. Each
// expected value here is what the API server gives (checked against cel-go itself by
// test/hardening/cel-parity.test.ts); this file keeps the cases that once differed (F9, F10, F11)
// and the refusals, without needing Go.
import assert from 'node:assert/strict';
import { compile, toStringList, CelCompileError } from '../../../../lib/cel/expressions.js';
import { formatDouble, parseGoFloat, Err, type CelList } from '../../../../lib/cel/runtime.js';
import { parseAuthenticationConfiguration, JwtConfigError } from '../../../../lib/sidecar-config/jwt.js';

const run = (expression: string, claims: Record<string, unknown>, returns: 'any' | 'bool' = 'any') => compile('claims', expression, returns).evaluate(claims);

describe('sidecar/authn/jwt/cel: the API server\'s CEL, or a refusal', function () {
  it('F9: lowerAscii() and upperAscii() change ASCII letters only', function () {
    assert.equal(run("'oidc:' + claims.u.lowerAscii()", { u: '\u212Aate' }), 'oidc:\u212Aate');
    assert.equal(run('claims.u.upperAscii()', { u: 'a\u017F\u0131\u00DF\uFB00' }), 'A\u017F\u0131\u00DF\uFB00');
    assert.equal(run('claims.u.lowerAscii()', { u: 'K\u0130' }), 'k\u0130');
  });

  it('F10: string() of a double is Go\'s %g; strings are indexed by code point; trim is Go\'s', function () {
    assert.equal(run('string(claims.id)', { id: 1234567 }), '1.234567e+06');
    assert.equal(run('string(claims.id)', { id: 123456 }), '123456');
    assert.equal(run('string(claims.id)', { id: 0.00001 }), '1e-05');
    assert.equal(run("claims.s.substring(1)", { s: '😀ab' }), 'ab');
    assert.equal(run("claims.s.indexOf('b')", { s: '😀ab' }), 2n);
    assert.equal(run("claims.s.lastIndexOf('a')", { s: '😀ab' }), 1n);
    assert.equal(run('claims.s.charAt(1)', { s: '😀ab' }), 'a');
    assert.deepEqual((run("claims.s.split('')", { s: '😀a' }) as CelList).items, ['😀', 'a']);
    assert.equal(run('claims.s.trim()', { s: '\uFEFF a\u0085' }), '\uFEFF a');
    assert.throws(() => run('int(claims.n)', { n: 1e21 }), /integer overflow/);
    assert.throws(() => run('uint(claims.n)', { n: -1 }), /overflow/);
    assert.equal(run("claims.s < 'a'", { s: '😀' }), false);
    assert.equal(run("claims.s < '\uFFFF'", { s: '😀' }), false, 'UTF-8 (code point) order, not UTF-16');
  });

  it('formats doubles and reads numbers as Go does', function () {
    const cases: [number, string][] = [[0, '0'], [-0, '-0'], [1e21, '1e+21'], [1e20, '1e+20'], [123456, '123456'], [1234567, '1.234567e+06'], [0.0001, '0.0001'], [1.5e-7, '1.5e-07'], [Infinity, '+Inf'], [NaN, 'NaN'], [-2.5, '-2.5'], [100, '100'], [1e6, '1e+06']];
    for (const [d, text] of cases) assert.equal(formatDouble(d), text, String(d));
    assert.equal(parseGoFloat('1_000'), 1000);
    assert.equal(parseGoFloat('.5'), 0.5);
    assert.equal(parseGoFloat('-Infinity'), -Infinity);
    for (const bad of [' 1', '1e', '_1', '+nan', '0x10', '1e400', '']) assert.ok(parseGoFloat(bad) instanceof Err, bad);
  });

  it('takes as a list of strings only what the API server takes: not the []string split() makes', function () {
    assert.deepEqual(toStringList(run("claims.s.split(',') + ['x']", { s: 'a,b' })), ['a', 'b', 'x']);
    assert.throws(() => toStringList(run("claims.s.split(',')", { s: 'a,b' })), /string or a list of strings/);
    assert.deepEqual(toStringList(run("dyn(claims.s.split(',')).map(g, g)", { s: 'a,b' })), ['a', 'b']);
  });

  it('refuses at load what it does not evaluate as the API server does, saying why', function () {
    const refused: [string, RegExp][] = [
      ["claims.u.matches('\\\\p{Lu}')", /matches\(\) is not supported: the API server runs RE2/],
      ["'%s'.format([claims.u])", /compilation failed|format/],
      ['claims.u.reverse()', /reverse/],
      ['claims', /claims is read only by name/],
      ["'sub' in claims", /claims is read only by name/],
      ["dyn(claims).exists(k, k == 'sub')", /claims is read only by name/],
      ["int('x')", /program instantiation failed/],
      ["duration('1h') > duration('1m')", /duration\(\) is not supported/],
      ["b'a' == b'a'", /bytes literals are not supported/],
      ['!-claims.n', /mixes unary operators/],
    ];
    for (const [expression, why] of refused) {
      assert.throws(() => compile('claims', expression, 'any'), (err: Error) => err instanceof CelCompileError && why.test(err.message), expression);
    }
  });

  it('names the field of a refused expression in the configuration', function () {
    const config = `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer: {url: https://issuer.example, audiences: [a]}
    claimValidationRules:
      - expression: "!claims.preferred_username.matches('\\\\\\\\p{Lu}')"
    claimMappings:
      username: {expression: "claims.sub"}
`;
    assert.throws(() => parseAuthenticationConfiguration(config, 'authn.yaml'), (err: Error) => {
      assert.ok(err instanceof JwtConfigError);
      assert.match(err.message, /authn\.yaml: jwt\[0\]\.claimValidationRules\[0\]\.expression: Invalid value: .*matches\(\) is not supported/);
      return true;
    });
  });

  it('stops at the API server\'s cost limit, and refuses a token it cannot evaluate alike', function () {
    const big = Array.from({ length: 2000 }, (_, i) => `g${i}`);
    assert.throws(() => run('dyn(claims.l).all(x, dyn(claims.l).exists(y, x == y))', { l: big }), /actual cost limit exceeded/);
    assert.equal(run('dyn(claims.l).all(x, x != "")', { l: big }), true);
    assert.throws(() => run('dyn(claims.m).map(k, k)', { m: { a: 1, b: 2 } }), /cannot evaluate this exactly as the API server/);
    assert.throws(() => run('double(claims.s)', { s: '0x1p3' }), /cannot evaluate this exactly as the API server/);
  });
});
