// Bodies for Request and RequestResponse events: copied while they stream, never in their way.
import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { BodyCopy, decodeBody, RawJson } from '../../../../sidecar/audit/body.js';
import { compactJson } from '../../../../sidecar/audit/go-json-view.js';
import { serialiseEvent } from '../../../../sidecar/audit/event.js';
import type { Event } from '../../../../sidecar/audit/types.js';

const json = { 'content-type': 'application/json' };

function sink(): { stream: Writable; received: () => Buffer } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write: (chunk: Buffer, _enc, done) => (chunks.push(chunk), done()) }), received: () => Buffer.concat(chunks) };
}

describe('sidecar/audit/body', function () {
  it('copies a stream without taking a byte from its consumer, even when the consumer comes later', async function () {
    const source = new PassThrough();
    const copy = new BodyCopy(1024, json).watch(source);
    const payload = JSON.stringify({ kind: 'ConfigMap', data: { a: 'b'.repeat(300) } });
    source.write(payload.slice(0, 100));
    await new Promise((resolve) => setTimeout(resolve, 20)); // nothing flows until the consumer pipes
    const consumer = sink();
    source.end(payload.slice(100));
    await pipeline(source, consumer.stream);
    assert.equal(consumer.received().toString(), payload);
    assert.deepEqual(copy.recorded(false), { object: new RawJson(payload) });
  });

  it('keeps nothing past the limit, and says so', async function () {
    const source = Readable.from([Buffer.alloc(600, 'a'), Buffer.alloc(600, 'b')]);
    const copy = new BodyCopy(1000, json).watch(source);
    const consumer = sink();
    await pipeline(source, consumer.stream);
    assert.equal(consumer.received().length, 1200, 'the consumer still gets everything');
    assert.deepEqual(copy.recorded(false), { omitted: 'the body is larger than the 1000-byte limit (--audit-body-limit)' });
    assert.equal(new BodyCopy(10, json).recorded(false), undefined, 'no body, nothing recorded');
  });

  it('keeps more than it records when asked to (a create\'s whole body, for its metadata), and says whether the body ended', async function () {
    const source = Readable.from([Buffer.alloc(600, 'a'), Buffer.alloc(600, 'b')]);
    const copy = new BodyCopy(1000, json, 2000).watch(source);
    assert.equal(copy.ended, false);
    await pipeline(source, sink().stream);
    assert.equal(copy.ended, true);
    assert.equal(copy.bytes()?.length, 1200, 'kept whole');
    assert.deepEqual(copy.recorded(false), { omitted: 'the body is larger than the 1000-byte limit (--audit-body-limit)' }, 'recorded only up to the limit');
    const large = Readable.from([Buffer.alloc(101)]);
    const past = new BodyCopy(10, json, 100).watch(large);
    await pipeline(large, sink().stream);
    assert.equal(past.bytes(), undefined, 'nothing past what it keeps');
    const cut = new PassThrough();
    const copyOfCut = new BodyCopy(10, json).watch(cut);
    cut.resume();
    cut.write('{"a"');
    cut.destroy();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(copyOfCut.ended, false, 'a body cut off did not end');
  });

  it('decodes JSON and its patch types, YAML apply patches, and compressed bodies', function () {
    const object = { metadata: { name: 'x' }, data: { k: 'v' } };
    assert.deepEqual(decodeBody(Buffer.from(JSON.stringify(object)), { 'content-type': 'application/merge-patch+json' }, 1000, false), { object: new RawJson(JSON.stringify(object)) });
    assert.deepEqual(decodeBody(Buffer.from('[{"op":"remove","path":"/data/k"}]'), { 'content-type': 'application/json-patch+json' }, 1000, false), {
      object: new RawJson('[{"op":"remove","path":"/data/k"}]'),
    });
    assert.deepEqual(decodeBody(Buffer.from('metadata:\n  name: x\ndata:\n  k: v\n'), { 'content-type': 'application/apply-patch+yaml' }, 1000, false), {
      object: new RawJson('{"data":{"k":"v"},"metadata":{"name":"x"}}'),
    });
    const gzipped = gzipSync(JSON.stringify(object));
    assert.deepEqual(decodeBody(gzipped, { 'content-type': 'application/json; charset=utf-8', 'content-encoding': 'gzip' }, 1000, false), { object: new RawJson(JSON.stringify(object)) });
  });

  it('leaves out what it cannot show as JSON, and says why', function () {
    assert.deepEqual(decodeBody(Buffer.from([0x6b, 0x38, 0x73, 0]), { 'content-type': 'application/vnd.kubernetes.protobuf' }, 1000, false), {
      omitted: 'the body is application/vnd.kubernetes.protobuf, not JSON',
    });
    const broken = decodeBody(Buffer.from('{"kind":'), json, 1000, false);
    assert.ok(broken && 'omitted' in broken && broken.omitted.startsWith('the body could not be decoded'));
    const bomb = decodeBody(gzipSync(Buffer.alloc(50_000, ' ')), { 'content-type': 'application/json', 'content-encoding': 'gzip' }, 1000, false);
    assert.deepEqual(bomb, { omitted: 'the body could not be decoded: larger than the 1000-byte limit (--audit-body-limit) once decompressed' });
  });

  it('omitManagedFields on a JSON body drops exactly those members from its bytes, from every metadata member', function () {
    const text = (body: string) => (decodeBody(Buffer.from(body), json, 10_000, true) as { object: RawJson }).object.text;
    assert.equal(text('{"metadata":{"name":"x","managedFields":[{"m":"{\\"}"}]},"n":9007199254740993}'), '{"metadata":{"name":"x"},"n":9007199254740993}');
    assert.equal(text('{"metadata":{"managedFields":[]},"metadata":{"a":1,"managedFields":null,"b":2}}'), '{"metadata":{},"metadata":{"a":1,"b":2}}');
    assert.equal(
      text('{"kind":"PodList","items":[{"metadata":{"managedFields":[1],"name":"a"}},7,{"metadata":{"name":"b"}}],"metadata":{}}'),
      '{"kind":"PodList","items":[{"metadata":{"name":"a"}},7,{"metadata":{"name":"b"}}],"metadata":{}}',
    );
    assert.equal(text('{"kind":"Table","rows":[{"cells":[1],"object":{"metadata":{"managedFields":[],"x":"1"}}}]}'), '{"kind":"Table","rows":[{"cells":[1],"object":{"metadata":{"x":"1"}}}]}');
    assert.equal(text('{"kind":"NotATable","rows":[{"object":{"metadata":{"managedFields":[]}}}]}'), '{"kind":"NotATable","rows":[{"object":{"metadata":{"managedFields":[]}}}]}');
    const yaml = { 'content-type': 'application/apply-patch+yaml' };
    assert.deepEqual(decodeBody(Buffer.from('metadata:\n  managedFields: []\n  name: x\n'), yaml, 10_000, true), { object: new RawJson('{"metadata":{"name":"x"}}') }, 'a YAML object too');
  });

  it('a patch is recorded as the API server records it (LogRequestPatch): managedFields and all; a YAML patch with no body is null', function () {
    const body = Buffer.from('{"metadata":{"managedFields":[],"name":"x"}}');
    const copy = (headers: Record<string, string>, bytes: Buffer) => {
      const stream = Readable.from([bytes]);
      const c = new BodyCopy(1000, headers).watch(stream);
      stream.resume();
      return c;
    };
    const jsonCopy = copy({ 'content-type': 'application/merge-patch+json' }, body);
    const yamlCopy = copy({ 'content-type': 'application/apply-patch+yaml' }, body);
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      assert.deepEqual(jsonCopy.recorded(true, true), { object: new RawJson(body.toString()) });
      assert.deepEqual(yamlCopy.recorded(true, true), { object: new RawJson(body.toString()) });
      assert.deepEqual(jsonCopy.recorded(true, false), { object: new RawJson('{"metadata":{"name":"x"}}') }, 'not a patch: omitManagedFields applies');
      assert.deepEqual(new BodyCopy(1000, { 'content-type': 'application/apply-patch+yaml' }).recorded(false, true), { object: new RawJson('null') });
      const notUtf8 = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff]), Buffer.from('"}')]);
      assert.deepEqual(decodeBody(notUtf8, { 'content-type': 'application/merge-patch+json' }, 1000, false, true), {
        omitted: 'the patch is not UTF-8: the API server records its bytes as they are, which chaperone does not write',
      });
      assert.equal(new BodyCopy(1000, { 'content-type': 'application/merge-patch+json' }).recorded(false, true), undefined);
    });
  });

  describe('a JSON body is recorded as sent, as the API server records a patch: compacted and HTML-escaped by Go, never decoded and written again', function () {
    /** What the event line holds for this body, as text. */
    function recorded(body: string, omitManagedFields = false): string {
      const result = decodeBody(Buffer.from(body), json, 10_000_000, omitManagedFields);
      assert.ok(result && 'object' in result, JSON.stringify(result));
      const line = serialiseEvent({ kind: 'Event', requestObject: result.object } as Event);
      return line.slice('{"kind":"Event","requestObject":'.length, -1);
    }

    it('keeps integers beyond 2^53, escapes, key order and duplicate keys', function () {
      const body = '{"spec":{"terminationGracePeriodSeconds":9007199254740993},"2":"b","1":"a","s":"\\u00e9\\ud83d\\ude00","s":"second","f":1.50,"e":1E400}';
      assert.equal(recorded(body), body);
      assert.equal(recorded('{\n  "a" : [ 1 , 2 ],\t"b":"<&>\u2028 x"\r\n}'), '{"a":[1,2],"b":"\\u003c\\u0026\\u003e\\u2028 x"}');
    });

    it('deeply nested bodies are recorded whole, up to what an event holding them can be read with (Go reads 10000 levels)', function () {
      const nested = (pairs: number) => `${'{"a":['.repeat(pairs)}1${']}'.repeat(pairs)}`;
      assert.equal(recorded(nested(4999)), nested(4999), '9998 levels, and the event around them');
      assert.deepEqual(decodeBody(Buffer.from(nested(5000)), json, 10_000_000, false), {
        omitted: "the body nests 10000 deep: an event holding it would nest deeper than Go's JSON reader reads (the API server writes one all the same)",
      });
      assert.deepEqual(decodeBody(Buffer.from(`[${nested(5000)}]`), json, 10_000_000, false), { omitted: 'the body nests deeper than 10000, more than the API server reads or writes' });
    });

    it('property: any JSON text, however spaced, is recorded as Go would compact it; its value is unchanged', function () {
      const space = fc.constantFrom('', ' ', '\n', '\t ', '\r\n');
      const bigInteger = fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String);
      const text = fc.string({ unit: 'grapheme' });
      const quoted = text.map((s) => JSON.stringify(s));
      const escaped = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 6 }).map((codes) => `"${codes.map((c) => `\\u${c.toString(16).padStart(4, '0')}`).join('')}"`);
      const { value } = fc.letrec<{ value: string }>((tie) => ({
        value: fc.oneof(
          { depthSize: 'small' },
          bigInteger,
          quoted,
          escaped,
          fc.constantFrom('true', 'false', 'null', '1.5e-7', '-0'),
          fc.array(tie('value'), { maxLength: 4 }).chain((items) => space.map((s) => `[${s}${items.join(`${s},${s}`)}${s}]`)),
          fc.array(fc.tuple(quoted, tie('value')), { maxLength: 4 }).chain((members) => space.map((s) => `{${s}${members.map(([k, v]) => `${k}${s}:${s}${v}`).join(`${s},`)}${s}}`)),
        ),
      }));
      fc.assert(
        fc.property(value, (body) => {
          const wrapped = `{"kind":"X","v":${body}}`;
          const out = recorded(wrapped);
          // The same tokens in the same order: strings as sent but for Go's HTML escaping, numbers digit for digit.
          const tokens = (t: string) => t.match(/"(?:[^"\\]|\\.)*"|[{}[\],:]|[^\s"{}[\],:]+/g) ?? [];
          const goEscaped = (token: string) => (token.startsWith('"') ? token.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : token);
          assert.deepEqual(tokens(out), tokens(wrapped).map(goEscaped));
          assert.ok(!/\s/.test(out.replace(/"(?:[^"\\]|\\.)*"/g, '""')), 'no whitespace outside strings');
          assert.equal(out, compactJson(wrapped));
          assert.deepEqual(JSON.parse(out), JSON.parse(wrapped));
        }),
        { numRuns: 300 },
      );
    });
  });
});
