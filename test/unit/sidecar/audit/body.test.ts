// Bodies for Request and RequestResponse events: copied while they stream, never in their way.
import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { BodyCopy, decodeBody, withoutManagedFields } from '../../../../sidecar/audit/body.js';

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
    assert.deepEqual(copy.recorded(false), { object: JSON.parse(payload) as unknown });
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
    assert.deepEqual(decodeBody(Buffer.from(JSON.stringify(object)), { 'content-type': 'application/merge-patch+json' }, 1000, false), { object });
    assert.deepEqual(decodeBody(Buffer.from('[{"op":"remove","path":"/data/k"}]'), { 'content-type': 'application/json-patch+json' }, 1000, false), {
      object: [{ op: 'remove', path: '/data/k' }],
    });
    assert.deepEqual(decodeBody(Buffer.from('metadata:\n  name: x\ndata:\n  k: v\n'), { 'content-type': 'application/apply-patch+yaml' }, 1000, false), { object });
    const gzipped = gzipSync(JSON.stringify(object));
    assert.deepEqual(decodeBody(gzipped, { 'content-type': 'application/json; charset=utf-8', 'content-encoding': 'gzip' }, 1000, false), { object });
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

  it('drops managedFields from an object, a list\'s items and a table\'s rows (omitManagedFields)', function () {
    const meta = { name: 'x', managedFields: [{ manager: 'kubectl' }] };
    assert.deepEqual(withoutManagedFields({ kind: 'ConfigMap', metadata: meta }), { kind: 'ConfigMap', metadata: { name: 'x' } });
    assert.deepEqual(withoutManagedFields({ kind: 'ConfigMapList', metadata: {}, items: [{ metadata: meta }, { metadata: { name: 'y' } }] }), {
      kind: 'ConfigMapList',
      metadata: {},
      items: [{ metadata: { name: 'x' } }, { metadata: { name: 'y' } }],
    });
    assert.deepEqual(withoutManagedFields({ kind: 'Table', rows: [{ cells: [], object: { metadata: meta } }] }), { kind: 'Table', rows: [{ cells: [], object: { metadata: { name: 'x' } } }] });
    assert.deepEqual(decodeBody(Buffer.from(JSON.stringify({ metadata: meta })), json, 1000, true), { object: { metadata: { name: 'x' } } });
    assert.deepEqual(withoutManagedFields([1, 2]), [1, 2]);
  });
});
