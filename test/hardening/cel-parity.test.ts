// chaperone's CEL against the API server's own (test/fixtures/cel-oracle: cel-go with the API
// server's libraries, compiler and claims values): the same expressions over the same claims must
// give the same value of the same type (lists with the same Go type under them), both fail, or
// chaperone must refuse (the configuration at load, or the token), and chaperone's runtime cost
// is never below the API server's, so a token the API server stops at its cost limit is refused
// too. Every function, macro and operator chaperone accepts is in the corpus; a property then
// builds random expressions from them over random claims (short in npm test, long under
// npm run test:hardening).
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CelOracle, chaperoneAnswer, disagreement, type CelAnswer, type CelCase } from './support/cel-oracle.js';
import { figure, fuzz } from './support/knobs.js';

const CLAIMS: Record<string, unknown>[] = [
  { s: 'Kate', n: 1234567, l: ['a', 'b'], m: { a: 1, b: 'x' }, b: true, z: null, e: '', el: [], em: {} },
  // F9: the Kelvin sign and friends that full Unicode case mapping changes
  { s: '\u212Aate', n: 0.1, l: ['\u017Fam', 'stra\u00DFe', 'A'], m: { '\u0130': 'i' }, b: false, z: null, e: '\uFB00', el: ['', 'x'], em: { k: [] } },
  // F10: numbers Go prints with an exponent, strings with astral characters, Go's and JavaScript's spaces
  { s: '\uFEFF a\u0085', n: 1e21, l: ['😀x', 'a😀b'], m: { x: [1, 2] }, b: true, z: 'null', e: '\u00A0', el: [1.5, -0], em: { '': '' } },
  { s: '😀😀a', n: -9.223372036854776e18, l: [2 ** 53, 1e-7, 123456, 1e6], m: {}, b: false, z: 0, e: ' \t\n\v\f\r', el: [true], em: { a: { b: 'c' } } },
  { s: 'a,b,,c', n: 18446744073709551616, l: ['x', 'y', 'x'], m: { 'a.b': 1 }, b: true, z: false, e: '\u2028x\u3000', el: [null], em: { n: null } },
];

/** Expressions over claims, each a rule of a kind the API server accepts (or refuses) in a configuration. */
const CLAIM_EXPRESSIONS = [
  // F9: lowerAscii/upperAscii change ASCII letters only
  "'oidc:' + claims.s.lowerAscii()",
  'claims.s.upperAscii()',
  "dyn(claims.l).map(x, x.upperAscii())",
  'claims.e.upperAscii()',
  "claims.?m.?['\u0130'].orValue('').lowerAscii()",
  // F10: string(double), code-point indexing, Go's trim, conversion ranges
  'string(claims.n)',
  'string(claims.n / 3.0)',
  'string(claims.n * 1000.0)',
  "string(-0.0) + string(1e-5) + string(0.0001) + string(123456.0) + string(1e6)",
  'dyn(claims.l).map(x, string(x))',
  'claims.s.substring(1)',
  'claims.s.substring(1, 2)',
  'claims.s.substring(0, 10)',
  'claims.s.charAt(0)',
  'claims.s.charAt(2)',
  'claims.s.charAt(size(claims.s))',
  "claims.s.indexOf('a')",
  "claims.s.indexOf('a', 2)",
  "claims.s.indexOf('', 99)",
  "claims.s.indexOf('a', -1)",
  "claims.s.lastIndexOf('a')",
  "claims.s.lastIndexOf('a', 1)",
  "claims.s.lastIndexOf('')",
  "claims.s.lastIndexOf('😀😀a😀')",
  "claims.s.split('')",
  "claims.s.split('', 2)",
  "claims.s.split(',')",
  "claims.s.split(',', 0)",
  "claims.s.split(',', -1)",
  "claims.s.split(',', 2)",
  'claims.s.trim()',
  'claims.e.trim()',
  "claims.s.replace('a', '-')",
  "claims.s.replace('', '-')",
  "claims.s.replace('', '-', 2)",
  "claims.s.replace('a', 'b', 0)",
  "claims.s.replace('a', 'aa', -1)",
  'size(claims.s)',
  'claims.s.size()',
  'int(claims.n)',
  'uint(claims.n)',
  'int(1e21)',
  'int(-9.223372036854775808e18)',
  'uint(-1.0)',
  'uint(1.8446744073709552e19)',
  "int('9223372036854775807') + 0",
  "int(claims.s)",
  "double(claims.s)",
  "double(' 1')",
  "double('1_0')",
  "double('inf') > 1.0",
  "double('-Infinity') < 0.0",
  "string(double('nan'))",
  "bool('T') && bool('1') && !bool('F')",
  "bool(claims.s)",
  "uint('+1')",
  "int('+1')",
  "int('0x10')",
  // F11's rule: refused (matches)
  "!claims.s.matches('\\\\p{Lu}')",
  // strings, lists, joins
  "claims.s.contains('a')",
  "claims.s.startsWith('\u212A')",
  "claims.s.endsWith('a')",
  "dyn(claims.l).join(',')",
  "dyn(claims.l).join()",
  "['a', claims.s].join('-')",
  "claims.s.split(',').join('+')",
  // what the API server takes as a list of strings
  'claims.l',
  "claims.s.split(',')",
  "claims.s.split(',') + []",
  "claims.s.split(',') + ['x']",
  "dyn(claims.s.split(',')).map(x, x)",
  "dyn(claims.s.split(',')).filter(x, x != '')",
  "[claims.s, 'x']",
  "claims.l + []",
  "[] + claims.l",
  // operators
  'claims.n + 1.0',
  'claims.n + 1',
  'claims.n - 1.0',
  'claims.n * 2.0',
  'claims.n / 0.0',
  '-claims.n',
  'claims.n == 1234567',
  'claims.n != 1234567u',
  'claims.n < 9223372036854775807',
  'claims.n >= 1',
  'claims.n > 18446744073709551615u',
  "claims.s < 'b'",
  "claims.s <= '\uFFFF'",
  "claims.s > '\uE000'",
  "'\uFFFF' < '😀'",
  'claims.b == true',
  '!claims.b',
  'claims.b || claims.nope',
  'claims.nope || claims.b',
  'claims.b && claims.nope',
  'claims.nope && !claims.b',
  "claims.b ? claims.s : 'no'",
  "claims.b ? claims.m.a : claims.nope",
  "(claims.b ? claims.m : {'a': 2.0}).a",
  'claims.z == null',
  'claims.m == {}',
  "claims.m == {'a': 1.0, 'b': 'x'}",
  'claims.l == []',
  "claims.l == ['a', 'b']",
  'claims.el == []',
  'claims.em == {}',
  "'a' in claims.l",
  "'a' in claims.m",
  "'s' in claims",
  "1.0 in [1, 2]",
  "claims.s in ['Kate', 'x']",
  "claims.s in [claims.e, 'Kate'].map(x, x)",
  '9223372036854775807 + 1',
  '-9223372036854775807 - 2',
  '5 / 0',
  '5 % 0',
  '7 % -3',
  '-7 / 2',
  '18446744073709551615u + 1u',
  '1u - 2u',
  '2u * 3u',
  '7u / 2u',
  '7u % 4u',
  '0.1 + 0.2',
  "'a' + claims.s",
  "[1] + [2]",
  // selection and optionals
  'claims.m.a',
  "claims.m['b']",
  'claims.m.nope',
  'claims.l[0]',
  'claims.l[1.0]',
  'claims.l[5]',
  'claims.l[-1]',
  'claims.em.a.b',
  'has(claims.s)',
  'has(claims.nope)',
  'has(claims.m.a)',
  'has(claims.s.a)',
  'has(claims.z.a)',
  'has(claims.em.a.b)',
  'claims.?s',
  "claims.?nope.orValue('d')",
  "claims.?m.a.orValue(0)",
  'claims.?m.?nope',
  "claims.?em.?a.?b.orValue('-')",
  "claims[?'s'].hasValue()",
  "claims.?nope.or(claims.?s).value()",
  'claims.?nope.value()',
  'optional.of(claims.s).orValue(claims.nope)',
  'optional.none().orValue(claims.s)',
  'optional.ofNonZeroValue(claims.e).hasValue()',
  'optional.ofNonZeroValue(claims.el).hasValue()',
  'optional.ofNonZeroValue(claims.em).hasValue()',
  'optional.ofNonZeroValue(claims.z).hasValue()',
  "optional.ofNonZeroValue(claims.n).orValue(-1.0)",
  // types and conversions
  'type(claims.s) == string',
  'type(claims.n) == double',
  'type(claims.l) == list',
  'type(claims.m) == map',
  'type(claims.z) == null_type',
  'type(claims.b) == bool',
  'type(1u) == uint',
  'type(type(1)) == type',
  'type(claims.?s)',
  'dyn(claims.n) == 1234567',
  'string(claims.b)',
  'string(claims.z)',
  'int(claims.b)',
  'double(claims.l)',
  'string(1u) + string(-5)',
  'uint(claims.s)',
  // comprehensions
  "dyn(claims.l).all(x, x != '')",
  "dyn(claims.l).exists(x, x == 'a')",
  "dyn(claims.l).exists_one(x, x == 'x')",
  "dyn(claims.l).filter(x, x != 'a')",
  "dyn(claims.l).map(x, x + '!')",
  "dyn(claims.l).map(x, x != 'a', 'p:' + x)",
  'dyn(claims.l).map(x, 1)',
  "dyn(claims.l).all(x, x.startsWith('a'))",
  "dyn(claims.l).exists(x, x.nope)",
  "dyn(claims.l).all(x, claims.nope)",
  "dyn(claims.l).exists_one(x, claims.nope == x)",
  "dyn(claims.l).map(x, claims.m[x])",
  "dyn(claims.m).all(k, k != '')",
  "dyn(claims.m).exists(k, k == 'a')",
  "dyn(claims.m).exists_one(k, k == 'a')",
  "dyn(claims.m).map(k, k)",
  "dyn(claims.em).filter(k, true)",
  "dyn(claims.l).map(claims, claims)",
  "dyn(claims.l).all(x, dyn(claims.l).exists(y, x == y))",
  'dyn(claims.s).all(x, true)',
  'claims.l.all(x, true)',
  // refused: what chaperone does not evaluate, or the API server refuses
  "claims.s.reverse()",
  "'%s'.format([claims.s])",
  "strings.quote(claims.s)",
  "claims.s.find('a')",
  "b'x' == bytes(claims.s)",
  "duration('1h') > duration('1m')",
  "timestamp(claims.s)",
  "[1, 2].sum()",
  "sets.contains([1], [1])",
  "claims",
  "claims == claims",
  "dyn(claims).all(k, true)",
  "size(claims)",
  "int('x')",
  "double('0x1p3')",
  "[1, 'a']",
  "[claims.s, 1]",
  "{'a': 1, 'b': 'x'}",
  "{1: 'a'}",
  "1 == 1u",
  "claims.s.charAt()",
  "claims.a__dot__b",
  "[?claims.?s]",
  "cel.bind(x, 1, x)",
  "[1, 2].all(i, v, v > 0)",
];

const USER = { username: 'k\u212Ate', uid: '', groups: ['dev', 'system:authenticated'], extra: { 'example.com/tenant': ['a', 'b'] } };
const USER_EXPRESSIONS = [
  "!user.username.startsWith('system:')",
  "user.username.lowerAscii() == 'kkte'",
  "user.uid == ''",
  'has(user.uid)',
  "'dev' in user.groups",
  "user.groups.exists(g, g == 'dev')",
  "user.groups == ['dev', 'system:authenticated']",
  "user.extra['example.com/tenant'].all(t, t.size() == 1)",
  "size(user.extra) == 1",
  "user.extra.?['nope'].orValue([]).size() == 0",
  "user.groups.join(',').contains('dev')",
  "user == user",
  "user.nope == ''",
];

function corpus(): CelCase[] {
  const cases: CelCase[] = [];
  for (const claims of CLAIMS) {
    for (const expression of CLAIM_EXPRESSIONS) cases.push({ variable: 'claims', expression, returns: 'any', claims });
  }
  for (const expression of CLAIM_EXPRESSIONS) cases.push({ variable: 'claims', expression, returns: 'bool', claims: CLAIMS[0]! });
  for (const expression of USER_EXPRESSIONS) cases.push({ variable: 'user', expression, returns: 'bool', user: USER });
  return cases;
}

interface Tally {
  cases: number;
  refusedAtLoad: number;
  refusedToken: number;
  exactCost: number;
}

function judge(cases: readonly CelCase[], api: readonly CelAnswer[], tally: Tally): string[] {
  const problems: string[] = [];
  cases.forEach((c, i) => {
    const ours = chaperoneAnswer(c);
    const why = disagreement(api[i]!, ours);
    tally.cases++;
    if (!ours.compiled && api[i]!.compiled) tally.refusedAtLoad++;
    if (ours.unmatched !== undefined || (ours.costExceeded && !api[i]!.costExceeded)) tally.refusedToken++;
    if (ours.compiled && api[i]!.compiled && ours.cost === api[i]!.cost) tally.exactCost++;
    if (why) problems.push(`${c.variable} ${JSON.stringify(c.expression)} (${c.returns}) over ${JSON.stringify(c.variable === 'claims' ? c.claims : c.user)}: ${why}`);
  });
  return problems;
}

describe('hardening: CEL parity with the API server (cel-go itself)', function () {
  this.timeout(0);
  let oracle: CelOracle;

  before(async function () {
    oracle = await CelOracle.start();
  });

  after(function () {
    oracle?.close();
  });

  it('agrees on every function, macro and operator chaperone accepts, and refuses the rest', async function () {
    const cases = corpus();
    const tally: Tally = { cases: 0, refusedAtLoad: 0, refusedToken: 0, exactCost: 0 };
    const problems = judge(cases, await oracle.ask(cases), tally);
    assert.deepEqual(problems, []);
    figure(`CEL corpus: ${tally.cases} cases, ${tally.refusedAtLoad} refused at load, ${tally.refusedToken} tokens refused, ${tally.exactCost} with cel-go's exact cost`);
  });

  it('keeps the attacks closed: F9 (lowerAscii), F10 (string of a double, code points), F11 (matches)', async function () {
    const attacks: [CelCase, unknown][] = [
      [{ variable: 'claims', returns: 'any', expression: "'oidc:' + claims.preferred_username.lowerAscii()", claims: { preferred_username: '\u212Aate' } }, { string: 'oidc:\u212Aate' }],
      [{ variable: 'claims', returns: 'any', expression: 'claims.u.upperAscii()', claims: { u: '\u017F\u0131\u00DF\uFB00' } }, { string: '\u017F\u0131\u00DF\uFB00' }],
      [{ variable: 'claims', returns: 'any', expression: 'string(claims.employee_id)', claims: { employee_id: 1234567 } }, { string: '1.234567e+06' }],
      [{ variable: 'claims', returns: 'any', expression: 'claims.s.substring(1)', claims: { s: '😀ab' } }, { string: 'ab' }],
      [{ variable: 'claims', returns: 'any', expression: 'claims.s.trim()', claims: { s: '\uFEFFa\u0085' } }, { string: '\uFEFFa' }],
    ];
    const api = await oracle.ask(attacks.map(([c]) => c));
    attacks.forEach(([c, expected], i) => {
      assert.deepEqual(api[i]!.value, expected, `the API server: ${c.expression}`);
      assert.deepEqual(chaperoneAnswer(c).value, expected, `chaperone: ${c.expression}`);
    });
    const rule: CelCase = { variable: 'claims', returns: 'bool', expression: "!claims.preferred_username.matches('\\\\p{Lu}')", claims: { preferred_username: 'Kate' } };
    const [apiRule] = await oracle.ask([rule]);
    assert.deepEqual(apiRule!.value, { bool: false }, 'the API server reads \\p{Lu} as RE2 does');
    assert.equal(chaperoneAnswer(rule).compiled, false, 'chaperone refuses matches()');
  });

  it('random expressions over random claims: the same result, both fail, or chaperone refuses', async function () {
    const tally: Tally = { cases: 0, refusedAtLoad: 0, refusedToken: 0, exactCost: 0 };
    await fuzz(
      this,
      fc.asyncProperty(fc.array(celCase, { minLength: 20, maxLength: 20 }), async (cases) => {
        const problems = judge(cases, await oracle.ask(cases), tally);
        assert.deepEqual(problems, []);
      }),
      { short: 15, long: 1500 },
    );
    figure(`CEL fuzz: ${tally.cases} cases, ${tally.refusedAtLoad} refused at load, ${tally.refusedToken} tokens refused, ${tally.exactCost} with cel-go's exact cost`);
  });
});

// ---------------------------------------------------------------------------------------------
// Random expressions: typed terms composed with every allowed function and operator.

const STRINGS = ['', 'a', 'Kate', '\u212Aate', '\u017F', '\u0131', '\u00DF', '\uFB00', '\u0130', 'A\u0300', '😀', 'a😀b', '\uFEFF', '\u0085', '\u00A0', ' a ', '\t', ',', 'a,b', '\uFFFF', '\uE000', 'system:', 'x.y'];
const quote = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\t/g, '\\t').replace(/\r/g, '\\r')}'`;

const stringLit = fc.constantFrom(...STRINGS).map(quote);
const intLit = fc.constantFrom('0', '1', '-1', '2', '7', '9223372036854775807', '-9223372036854775807', '100');
const uintLit = fc.constantFrom('0u', '1u', '2u', '18446744073709551615u');
const doubleLit = fc.constantFrom('0.0', '-0.0', '0.5', '1.0', '1e21', '1234567.0', '1e-7', '123456.0', '-2.5', '9.223372036854776e18');

const claimRef = fc.constantFrom('claims.s', 'claims.n', 'claims.l', 'claims.m', 'claims.b', 'claims.z', 'claims.x', 'claims.nope', 'claims.m.a', "claims.?s.orValue('')", 'claims.l[0]');

const expr: fc.Arbitrary<string> = fc.letrec<{ e: string; s: string; i: string; l: string }>((tie) => ({
  s: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    stringLit,
    fc.constantFrom('claims.s', 'claims.x', "claims.?s.orValue('')", 'claims.m.b', 'claims.l[0]'),
    tie('s').map((s) => `${s}.lowerAscii()`),
    tie('s').map((s) => `${s}.upperAscii()`),
    tie('s').map((s) => `${s}.trim()`),
    fc.tuple(tie('s'), tie('i')).map(([s, i]) => `${s}.charAt(${i})`),
    fc.tuple(tie('s'), tie('i')).map(([s, i]) => `${s}.substring(${i})`),
    fc.tuple(tie('s'), tie('i'), tie('i')).map(([s, i, j]) => `${s}.substring(${i}, ${j})`),
    fc.tuple(tie('s'), tie('s'), tie('s')).map(([s, a, b]) => `${s}.replace(${a}, ${b})`),
    fc.tuple(tie('s'), tie('s'), tie('s'), tie('i')).map(([s, a, b, n]) => `${s}.replace(${a}, ${b}, ${n})`),
    fc.tuple(tie('s'), tie('s')).map(([a, b]) => `${a} + ${b}`),
    fc.tuple(tie('l'), tie('s')).map(([l, s]) => `${l}.join(${s})`),
    tie('e').map((e) => `string(${e})`),
    fc.tuple(tie('e'), tie('s'), tie('s')).map(([c, a, b]) => `(${c} == ${c} ? ${a} : ${b})`),
  ),
  i: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    intLit,
    tie('s').map((s) => `size(${s})`),
    fc.tuple(tie('s'), tie('s')).map(([s, t]) => `${s}.indexOf(${t})`),
    fc.tuple(tie('s'), tie('s'), tie('i')).map(([s, t, i]) => `${s}.indexOf(${t}, ${i})`),
    fc.tuple(tie('s'), tie('s')).map(([s, t]) => `${s}.lastIndexOf(${t})`),
    fc.tuple(tie('s'), tie('s'), tie('i')).map(([s, t, i]) => `${s}.lastIndexOf(${t}, ${i})`),
    fc.tuple(tie('i'), fc.constantFrom('+', '-', '*', '/', '%'), tie('i')).map(([a, op, b]) => `(${a} ${op} ${b})`),
    tie('e').map((e) => `int(${e})`),
    tie('l').map((l) => `size(${l})`),
  ),
  l: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom('claims.l', 'dyn(claims.l)', '[]', "['a', 'b']"),
    fc.tuple(tie('s'), tie('s')).map(([s, t]) => `${s}.split(${t})`),
    fc.tuple(tie('s'), tie('s'), tie('i')).map(([s, t, n]) => `${s}.split(${t}, ${n})`),
    fc.tuple(tie('s'), tie('s')).map(([a, b]) => `[${a}, ${b}]`),
    fc.tuple(tie('l'), tie('l')).map(([a, b]) => `${a} + ${b}`),
    fc.tuple(tie('l'), tie('s')).map(([l, s]) => `dyn(${l}).map(v, ${s.replaceAll('claims.s', 'v')})`),
    fc.tuple(tie('l'), tie('e')).map(([l, p]) => `dyn(${l}).filter(v, ${p.replaceAll('claims.s', 'v')} == true)`),
  ),
  e: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    tie('s'),
    tie('i'),
    tie('l'),
    claimRef,
    uintLit,
    doubleLit,
    fc.constantFrom('null', 'true', 'false', 'int', 'string', 'double', 'list', 'map'),
    fc.tuple(tie('e'), fc.constantFrom('==', '!=', '<', '<=', '>', '>=', '+', '-', '*', '/', '&&', '||', 'in'), tie('e')).map(([a, op, b]) => `(${a} ${op} ${b})`),
    tie('e').map((e) => `!${e}`),
    tie('e').map((e) => `-${e}`),
    fc.tuple(fc.constantFrom('int', 'uint', 'double', 'string', 'bool', 'dyn', 'type', 'size'), tie('e')).map(([f, e]) => `${f}(${e})`),
    fc.tuple(tie('e'), tie('e'), tie('e')).map(([c, a, b]) => `(${c} ? ${a} : ${b})`),
    fc.tuple(fc.constantFrom('all', 'exists', 'exists_one'), tie('l'), tie('e')).map(([m, l, p]) => `dyn(${l}).${m}(v, ${p.replaceAll('claims.s', 'v')})`),
    fc.tuple(tie('s'), tie('s')).map(([s, t]) => `${s}.contains(${t})`),
    fc.tuple(tie('s'), tie('s')).map(([s, t]) => `${s}.startsWith(${t})`),
    fc.tuple(tie('s'), tie('s')).map(([s, t]) => `${s}.endsWith(${t})`),
    fc.tuple(fc.constantFrom('claims.?s', 'claims.?m.?a', 'claims.?nope', 'optional.none()', 'optional.of(claims.n)', 'optional.ofNonZeroValue(claims.x)'), tie('e')).map(([o, d]) => `${o}.orValue(${d})`),
    fc.constantFrom('claims.?s.hasValue()', 'claims.?x.value()', 'has(claims.x)', 'has(claims.m.a)', "{'k': claims.x}", "{'k': claims.x}.k", "'x' in claims"),
  ),
})).e;

/** Claims with the names the expressions use, of random JSON types. */
const jsonValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(...STRINGS),
    fc.string({ unit: 'binary', maxLength: 6 }).filter((s) => s.isWellFormed()),
    fc.constantFrom(0, -0, 1, 0.5, 1234567, 1e21, 1e-7, -2.5, 2 ** 53, 2 ** 63, 2 ** 64, 123456),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom('a', 'b', 'k', ''), tie('v'), { maxKeys: 3 }),
  ),
})).v;

const claimsArb = fc.record({
  s: fc.oneof(fc.constantFrom(...STRINGS), fc.string({ unit: 'binary', maxLength: 8 }).filter((s) => s.isWellFormed())),
  n: fc.oneof(fc.constantFrom(0, 1, -0, 1234567, 1e21, 0.1, -1.5, 123456), fc.double({ noNaN: true, noDefaultInfinity: true })),
  l: fc.array(fc.oneof(fc.constantFrom(...STRINGS), jsonValue), { maxLength: 4 }),
  m: fc.dictionary(fc.constantFrom('a', 'b', 'k'), jsonValue, { maxKeys: 3 }),
  b: fc.boolean(),
  z: fc.constant(null),
  x: jsonValue,
});

const celCase: fc.Arbitrary<CelCase> = fc.record({
  expression: expr,
  claims: claimsArb,
  returns: fc.constantFrom('any' as const, 'bool' as const),
}).map(({ expression, claims, returns }) => ({ variable: 'claims' as const, expression, claims, returns }));
