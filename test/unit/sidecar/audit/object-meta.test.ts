// What the API server's LogRequestObject takes from a create's or update's body, read as its decoders
// read it. Each expectation here was checked against apimachinery v0.37.2's own decoders (the
// serializer the create handler uses, then meta.Accessor); test/e2e/audit-object-ref.test.ts checks
// the same against the real API server's audit log.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { apiServerDecoded, hasObjectMeta, mediaTypeOf, readObjectMetadata, type MetadataReading } from '../../../../sidecar/audit/object-meta.js';

const JSON_TYPE = 'application/json';
const YAML_TYPE = 'application/yaml';
const PROTOBUF_TYPE = 'application/vnd.kubernetes.protobuf';

const read = (body: string | Buffer, contentType = JSON_TYPE, group = '') => readObjectMetadata(typeof body === 'string' ? Buffer.from(body) : body, contentType, group);
const named = (name: string, rest: Record<string, string> = {}): MetadataReading => ({ fields: { name, ...rest } });
const unread = (reading: MetadataReading) => 'unread' in reading;

// ---- protobuf bodies ----

function varint(value: number, padding = 0): number[] {
  const out: number[] = [];
  for (let v = value; ; v = Math.floor(v / 128)) {
    const more = v >= 128 || padding > 0;
    out.push((v % 128) | (more ? 0x80 : 0));
    if (v < 128) break;
  }
  for (let p = 0; p < padding; p++) out.push(p === padding - 1 ? 0 : 0x80);
  return out;
}
const field = (number: number, payload: Buffer | string, padding = 0) => {
  const bytes = Buffer.from(payload);
  return Buffer.concat([Buffer.from(varint((number << 3) | 2, padding)), Buffer.from(varint(bytes.length)), bytes]);
};
const envelope = (kind: string, object: Buffer) => Buffer.concat([Buffer.from('k8s\0', 'latin1'), field(1, Buffer.concat([field(1, 'v1'), field(2, kind)])), field(2, object)]);

describe('sidecar/audit/object-meta', function () {
  describe('JSON, as sigs.k8s.io/json decodes into a built-in type', function () {
    it('takes name, namespace, uid and resourceVersion from metadata', function () {
      assert.deepEqual(read('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"n","uid":"u","resourceVersion":"7","labels":{"x":"y"}}}'), {
        fields: { name: 'a', namespace: 'n', uid: 'u', resourceVersion: '7' },
      });
      assert.deepEqual(read('{"data":{}}'), { fields: {} });
      assert.deepEqual(read(' null '), { fields: {} }, 'null decodes into an empty object');
    });

    it('merges metadata given twice, as Go decodes both into one struct (F4)', function () {
      assert.deepEqual(read('{"metadata":{"name":"real"},"metadata":{"labels":{"a":"b"}}}'), named('real'));
      assert.deepEqual(read('{"metadata":{"name":"decoy","uid":"u"},"metadata":{"name":"real"}}'), named('real', { uid: 'u' }));
      assert.deepEqual(read('{"metadata":{"name":"real"},"metadata":null}'), named('real'), 'null leaves a struct as it is');
      assert.deepEqual(read('{"metadata":{"name":"real","name":null}}'), named('real'), 'null leaves a string as it is');
    });

    it('matches metadata and its fields exactly, but kind and apiVersion without regard to case (encoding/json)', function () {
      assert.deepEqual(read('{"Metadata":{"name":"decoy"},"metadata":{"Name":"decoy","name":"real"}}'), named('real'));
      assert.deepEqual(read('{"KIND":"ConfigMapList","metadata":{"name":"a"}}'), { none: 'a ConfigMapList has no ObjectMeta' });
      assert.deepEqual(read('{"\u212aind":"ConfigMapList","metadata":{"name":"a"}}'), { none: 'a ConfigMapList has no ObjectMeta' }, 'KELVIN SIGN folds to k');
      assert.deepEqual(read('{"kind":"ConfigMapList","KIND":null,"metadata":{"name":"a"}}'), { none: 'a ConfigMapList has no ObjectMeta' }, 'null changes nothing');
      assert.deepEqual(read('{"kind":"Secret","metadata":{"name":"a"}}'), named('a'), 'another kind with ObjectMeta: its name is taken');
      assert.deepEqual(read('{"apiVersion":"a/b/c","apiVersion":"v1","metadata":{"name":"a"}}'), named('a'), 'only the last apiVersion is parsed');
    });

    it('decodes strings as Go does: invalid UTF-8 byte by byte, and lone surrogates, to U+FFFD', function () {
      assert.deepEqual(read(Buffer.concat([Buffer.from('{"metadata":{"name":"a'), Buffer.from([0xe2, 0x82, 0x62, 0xed, 0xa0, 0x80, 0xff]), Buffer.from('"}}')])), named('a\ufffd\ufffdb\ufffd\ufffd\ufffd\ufffd'));
      assert.deepEqual(read('{"metadata":{"n\\u0061me":"a\\ud800\\u0041\\ud83d\\ude00\\udc00"}}'), named('a\ufffdA\u{1f600}\ufffd'));
    });

    it('reads nothing from what the API server cannot decode (it then answers 400)', function () {
      for (const body of ['{"metadata":{"name":5}}', '{"metadata":"x"}', '[1]', '"text"', '{"kind":7}', '{"apiVersion":"a/b/c"}', '{"metadata":{}} x', '{"metadata":', '\ufeff{}', '{"a":01}']) {
        assert.ok(unread(read(body)), body);
      }
    });

    it('reads bodies as deep as Go does without running out of stack', function () {
      const deep = `{"extra":${'['.repeat(100_000)}${']'.repeat(100_000)},"metadata":{"name":"deep"}}`;
      assert.deepEqual(read(deep), named('deep'));
    });
  });

  describe('JSON into a custom resource: a map, so the last metadata wins whole', function () {
    const custom = (body: string) => read(`{"apiVersion":"example.com/v1","kind":"Widget",${body}}`, JSON_TYPE, 'example.com');
    it('replaces an earlier metadata, and reads anything but a string as empty', function () {
      assert.deepEqual(custom('"metadata":{"name":"decoy"},"metadata":{"labels":{}}'), { fields: {} });
      assert.deepEqual(custom('"metadata":{"name":"real","name":null}'), { fields: {} });
      assert.deepEqual(custom('"metadata":{"name":5,"namespace":"n"}'), { fields: { namespace: 'n' } });
      assert.deepEqual(custom('"metadata":{"name":"real"}'), named('real'));
      assert.ok(unread(read('null', JSON_TYPE, 'example.com')));
      assert.ok(unread(read(envelope('Widget', field(1, field(1, 'a'))), PROTOBUF_TYPE, 'example.com')), 'custom resources take no protobuf');
    });
  });

  describe('YAML, as sigs.k8s.io/yaml turns the first document into JSON with go-yaml v2', function () {
    const yaml = (text: string, group = '') => read(text, YAML_TYPE, group);

    it('merges keys in document order, over what came before (F3)', function () {
      assert.deepEqual(yaml('metadata:\n  name: decoy\n  <<: {name: real}\n'), named('real'));
      assert.deepEqual(yaml('metadata:\n  <<: {name: merged}\n  name: real\n'), named('real'));
      assert.deepEqual(yaml('a: &a {name: first}\nb: &b {name: second}\nmetadata:\n  <<: [*a, *b]\n'), named('first'), 'earlier maps of a sequence win');
      assert.deepEqual(yaml('base: &b {name: real, namespace: ns}\nmetadata:\n  <<: *b\n'), named('real', { namespace: 'ns' }));
      assert.deepEqual(yaml('metadata:\n  "<<": {name: merged}\n  name: real\n'), named('real'), 'a quoted << is a plain key');
      assert.deepEqual(yaml('metadata:\n  ! "<<": {name: merged}\n'), named('merged'), 'the non-specific tag makes it plain again');
      assert.deepEqual(yaml('metadata: {name: a}\nmetadata: {namespace: b}\n'), { fields: { namespace: 'b' } }, 'a later key replaces an earlier one whole');
    });

    it('resolves scalars as YAML 1.1 does, and tags as go-yaml does (F3b)', function () {
      assert.deepEqual(yaml(`metadata:\n  name: !!binary ${Buffer.from('real').toString('base64')}\n`), named('real'));
      assert.deepEqual(yaml('metadata:\n  uid: !!binary /+8=\n'), { fields: { uid: '\ufffd\ufffd' } }, 'binary that is not UTF-8 is written with U+FFFD');
      assert.deepEqual(yaml('metadata:\n  name: !!str 123\n'), named('123'));
      assert.deepEqual(yaml('metadata:\n  name: !foo bar\n'), named('bar'));
      assert.deepEqual(yaml('metadata:\n  name: !!timestamp 2001-1-1\n'), named('2001-1-1'));
      assert.deepEqual(yaml('metadata:\n  name: 2001-01-01\n'), named('2001-01-01'));
      assert.deepEqual(yaml("metadata:\n  name: 'yes'\n"), named('yes'));
      assert.deepEqual(yaml('metadata:\n  name: .5e999\n'), named('.5e999'), 'beyond float64 stays a string');
      assert.deepEqual(yaml('metadata:\n  name: ~\n'), { fields: {} });
      for (const word of ['yes', 'on', 'n', 'NO', '0b-101', '0x1F', '0o17', '017', '1_000', '1e3', '.5', '-.inf', '.NaN', '18446744073709551615']) {
        assert.ok(unread(yaml(`metadata:\n  name: ${word}\n`)), `${word} is not a string to go-yaml`);
      }
      for (const [tag, text] of [['!!int', 'abc'], ['!!bool', 'maybe'], ['!!timestamp', '2001-02-30'], ['!!binary', 'not base64'], ['!!null', 'x']]) {
        assert.ok(unread(yaml(`metadata:\n  name: ${tag} ${text}\n`)), `${tag} ${text} fails in go-yaml`);
      }
    });

    it('reads the first document only, and where a root flow mapping ends, the document ends (F3c)', function () {
      assert.deepEqual(yaml('metadata:\n  name: real\n---\nkind: Decoy\n: : [\n'), named('real'));
      assert.deepEqual(yaml('{"metadata": {"name": "real"}}\nmetadata:\n  name: decoy\n'), named('real'));
      assert.deepEqual(yaml('{metadata: {name: real}} , metadata: {name: decoy}\n'), named('real'));
      assert.deepEqual(yaml('metadata: {name: real}\n...\ngarbage: [\n'), named('real'));
      assert.deepEqual(yaml(''), { fields: {} });
      assert.deepEqual(yaml('# only a comment\n'), { fields: {} });
    });

    it('reads syntax as libyaml does, where YAML 1.2 parsers differ', function () {
      assert.deepEqual(yaml('status:\n      - {a: {b: c} ,\n  d: e}\nmetadata:\n  name: real\n'), named('real'), 'flow continuation lines are not indented');
      assert.deepEqual(yaml("metadata:\n  name: 'real\n  one'\nx: 'a\n/b'\n"), named('real one'));
      assert.deepEqual(yaml('metadata: {name: real, uid: -}\n'), named('real', { uid: '-' }), '- is a plain scalar in flow context');
      assert.deepEqual(yaml('metadata: {name: a:b}\n'), named('a:b'));
      assert.deepEqual(yaml('metadata:\n  name: a\nx: y\u2028metadata: {name: real}\n'), named('real'), 'LS ends a line');
      assert.deepEqual(yaml('metadata:\n  name: a\n# c\u0085metadata: {name: real}\n'), named('real'), 'NEL ends a comment');
      assert.deepEqual(yaml('metadata:\n  name: "a\\x41\\u0042\\U00000043\\N\\_"\n'), named('aABC\u0085\u00a0'));
      assert.deepEqual(yaml('metadata:\n  name: >-\n    folded\n    text\n'), named('folded text'));
      assert.deepEqual(yaml('%YAML 1.1\n%TAG !k! tag:yaml.org,2002:\n---\nmetadata: {name: !k!binary cmVhbA==}\n'), named('real'));
      assert.deepEqual(yaml('metadata: {name: !!b%69nary cmVhbA==}\n'), named('real'), 'tags are %-decoded');
      assert.deepEqual(yaml('metadata:\r\n  name: crlf\r\n'), named('crlf'));
      assert.deepEqual(yaml('\ufeffmetadata:\n  name: bom\n'), named('bom'));
      assert.deepEqual(read(Buffer.from('\ufeffmetadata: {name: utf16}\n', 'utf16le'), YAML_TYPE), named('utf16'));
      for (const text of ['%YAML 1.2\n---\nmetadata: {name: a}\n', 'metadata: {name: "\\/"}\n', 'metadata: {name: &a.b x}\n', 'metadata: {name: !!str}\n', 'metadata: {<<: *nowhere}\n']) {
        assert.ok(unread(yaml(text)), `libyaml refuses ${JSON.stringify(text)}`);
      }
    });

    it('does not read a body where go-yaml may drop the first character of lines (a byte-order mark its buffer may start with)', function () {
      assert.ok(unread(yaml('\ufeff\ufeffa: 1\nxmetadata: {name: real}\n')), 'the API server reads "metadata" here');
      assert.deepEqual(yaml('a: 1\n\ufeffmetadata: {name: real}\nmetadata: {name: b}\n'), named('b'), 'elsewhere a mark is a character like any other');
    });

    it('follows aliases no further than it reads, and nests as deep as libyaml allows', function () {
      const bomb = `a: &a [x, x]\n${Array.from({ length: 30 }, (_, i) => `${String.fromCharCode(98 + (i % 20))}${i}: &${String.fromCharCode(98 + (i % 20))}${i} [*${i === 0 ? 'a' : String.fromCharCode(98 + ((i - 1) % 20)) + (i - 1)}, *${i === 0 ? 'a' : String.fromCharCode(98 + ((i - 1) % 20)) + (i - 1)}]`).join('\n')}\nmetadata: {name: real}\n`;
      assert.deepEqual(yaml(bomb), named('real'));
      assert.deepEqual(yaml(`extra: ${'['.repeat(9999)}${']'.repeat(9999)}\nmetadata: {name: deep}\n`), named('deep'));
      assert.ok(unread(yaml(`extra: ${'['.repeat(10_001)}${']'.repeat(10_001)}\nmetadata: {name: deep}\n`)), 'exceeded max depth of 10000');
    });

    it('reads a custom resource\'s YAML the same way (its keys are unique once it is JSON)', function () {
      assert.deepEqual(yaml('apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: decoy\n  <<: {name: real}\n', 'example.com'), named('real'));
    });

    it('reads what JSON.stringify writes, as YAML, the same as JSON', function () {
      fc.assert(
        fc.property(fc.record({ name: fc.string({ unit: 'grapheme' }), namespace: fc.string(), uid: fc.string({ unit: 'binary' }) }), (metadata) => {
          const text = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata });
          assert.deepEqual(read(text, YAML_TYPE), read(text, JSON_TYPE));
        }),
      );
    });
  });

  describe('protobuf, as the generated Unmarshal reads the envelope and ObjectMeta (F7)', function () {
    it('reads name 1, namespace 3, uid 5, resourceVersion 6 of ObjectMeta, field 1 of the object', function () {
      const meta = Buffer.concat([field(1, 'a'), field(2, 'generate-'), field(3, 'n'), field(5, 'u'), field(6, '7')]);
      assert.deepEqual(read(envelope('ConfigMap', field(1, meta)), PROTOBUF_TYPE), { fields: { name: 'a', namespace: 'n', uid: 'u', resourceVersion: '7' } });
    });

    it('merges ObjectMeta given twice, reads a long-winded tag as the field it names, and skips what it does not know', function () {
      const object = Buffer.concat([field(1, Buffer.concat([field(1, 'decoy'), field(5, 'u')])), field(2, 'data?'), field(1, field(1, 'real'), 2)]);
      assert.deepEqual(read(envelope('ConfigMap', object), PROTOBUF_TYPE), named('real', { uid: 'u' }));
      const group = Buffer.from([(9 << 3) | 3, (1 << 3) | 0, 5, (9 << 3) | 4]);
      assert.deepEqual(read(envelope('ConfigMap', Buffer.concat([group, field(1, field(1, 'grouped'))])), PROTOBUF_TYPE), named('grouped'));
      // A tag whose field number is 2^32 + 1: Go cuts it to int32, which makes it field 1.
      const inner = field(1, 'high');
      const fieldOneAbove32Bits = Buffer.concat([Buffer.from([0x8a, 0x80, 0x80, 0x80, 0x80, 0x01]), Buffer.from(varint(inner.length)), inner]);
      assert.deepEqual(read(envelope('ConfigMap', fieldOneAbove32Bits), PROTOBUF_TYPE), named('high'));
    });

    it('takes nothing from a kind without ObjectMeta, and fails where Go fails', function () {
      assert.deepEqual(read(envelope('ConfigMapList', field(1, field(1, 'a'))), PROTOBUF_TYPE), { none: 'a ConfigMapList has no ObjectMeta' });
      assert.ok(unread(read(Buffer.from('k9s\0'), PROTOBUF_TYPE)));
      assert.ok(unread(read(Buffer.from('k8s\0'), PROTOBUF_TYPE)));
      assert.ok(unread(read(envelope('ConfigMap', Buffer.from([(1 << 3) | 0, 1])), PROTOBUF_TYPE)), 'metadata with the wrong wire type');
      assert.ok(unread(read(envelope('ConfigMap', Buffer.from([(1 << 3) | 2, 9, 1])), PROTOBUF_TYPE)), 'a length past the end');
    });
  });

  describe('Content-Type and Content-Encoding', function () {
    it('picks the decoder by media type alone (parameters and letter case ignored, none is JSON), and never decompresses (F5)', function () {
      assert.equal(mediaTypeOf(undefined), 'application/json');
      assert.equal(mediaTypeOf(' Application/JSON ; charset=utf-16'), 'application/json');
      assert.deepEqual(read('{"metadata":{"name":"a"}}', ''), named('a'));
      assert.ok(unread(read('{"metadata":{"name":"a"}}', 'application/merge-patch+json')), 'not a media type create or update decodes');
      assert.ok(unread(read('{"metadata":{"name":"a"}}', 'text/plain')));
    });
  });

  it('knows which kinds have no ObjectMeta', function () {
    for (const kind of ['', 'ConfigMap', 'Eviction', 'TokenRequest', 'Scale', 'Binding', 'PartialObjectMetadata']) assert.equal(hasObjectMeta(kind), true, kind);
    for (const kind of ['ConfigMapList', 'List', 'DeleteOptions', 'PodLogOptions', 'Status', 'WatchEvent', 'Table', 'APIGroup']) assert.equal(hasObjectMeta(kind), false, kind);
  });

  describe('apiServerDecoded: whether the API server got as far as LogRequestObject, from its answer', function () {
    const status = (message: string, details?: { group?: string; kind?: string }) => ({ message, ...(details ? { details } : {}) });
    it('a success did; failures before decoding did not; failures after it did', function () {
      const cases: [number, ReturnType<typeof status> | undefined, boolean][] = [
        [201, undefined, true],
        [200, undefined, true],
        [429, undefined, false], // priority and fairness answers in plain text
        [500, undefined, false],
        [401, status('Unauthorized'), false],
        [403, status('configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "a"'), false],
        [403, status('users "root" is forbidden: User "system:serviceaccount:x:y" cannot impersonate resource "users" in API group "" at the cluster scope'), false],
        [403, status('configmaps "a" is forbidden: exceeded quota: q'), true],
        [404, status('the server could not find the requested resource'), false],
        [404, status('namespaces "gone" not found'), true],
        [405, status('the server does not allow this method on the requested resource'), false],
        [406, status('only the following media types are accepted: application/json'), false],
        [415, status('the body of the request was in an unknown format - accepted media types include: application/json'), false],
        [413, status('Request entity too large: limit is 3145728'), false],
        [413, status('etcdserver: request is too large'), true],
        [400, status('ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number'), false],
        [400, status('the object provided is unrecognized (must be of type ConfigMap): couldn\'t get version/kind; json parse error (x)'), false],
        [400, status('the API version in the data (apps/v1) does not match the expected API version (v1)'), false],
        [400, status('the namespace of the provided object does not match the namespace sent on the request'), true],
        [422, status('CreateOptions.meta.k8s.io "" is invalid', { group: 'meta.k8s.io', kind: 'CreateOptions' }), false],
        [422, status('ConfigMap "Bad" is invalid', { kind: 'ConfigMap' }), true],
        [409, status('configmaps "a" already exists'), true],
        [503, status('apiserver is shutting down'), false],
        [503, status('error calling webhook'), true],
        [504, status('Timeout: request did not complete within requested timeout'), true],
      ];
      for (const [code, answer, decoded] of cases) assert.equal(apiServerDecoded(code, answer), decoded, `${code} ${answer?.message}`);
    });
  });
});
