// The recorder the pipeline talks to: stages, levels, bodies and back-pressure, with sinks that remember.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { UpstreamResponse } from '../../../../sidecar/forward/http.js';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Auditor } from '../../../../sidecar/audit/auditor.js';
import { AuditPolicy } from '../../../../lib/sidecar-config/audit-policy.js';
import type { SerialisedEvent, Sink, SinkStats } from '../../../../sidecar/audit/sinks/sink.js';
import { emptyStats } from '../../../../sidecar/audit/sinks/sink.js';
import type { Event } from '../../../../sidecar/audit/types.js';
import { internalError } from '../../../../lib/status.js';
import { forbidden } from '../../../../sidecar/authz/forbidden.js';
import { capturingLogger, forwardedFor, recordFor } from './helpers.js';

class MemorySink implements Sink {
  readonly name = 'stdout';
  readonly events: Event[] = [];
  room: Promise<void> | undefined;
  write(event: SerialisedEvent): void {
    this.events.push(JSON.parse(event.json) as Event);
  }
  ready(): Promise<void> | undefined {
    return this.room;
  }
  stats(): SinkStats {
    return { ...emptyStats(), written: this.events.length };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A request or response body stream with headers, as node:http hands them over. */
function message(headers: Record<string, string> = {}, statusCode?: number): IncomingMessage {
  return Object.assign(new PassThrough(), { headers, statusCode }) as unknown as IncomingMessage;
}

/** The API server's answer as the forwarder hands it over. */
function answer(response: IncomingMessage): UpstreamResponse {
  return { statusCode: response.statusCode ?? 0, headers: response.headers, body: response };
}

async function drain(stream: IncomingMessage, body?: string): Promise<void> {
  const passThrough = stream as unknown as PassThrough;
  passThrough.end(body);
  await pipeline(passThrough, new Writable({ write: (_chunk, _enc, done) => done() }));
}

const policy = (rules: string) => AuditPolicy.parse(`apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules}`, 'policy.yaml');

function setup(auditPolicy = AuditPolicy.DEFAULT, maxRequestBodyBytes?: number) {
  const sink = new MemorySink();
  let now = 1_767_366_245_000_000;
  const { log, lines } = capturingLogger();
  const auditor = new Auditor({
    policy: auditPolicy,
    sinks: [sink],
    served: { podName: 'p', podNamespace: 'n' },
    bodyLimit: 4096,
    ...(maxRequestBodyBytes !== undefined ? { maxRequestBodyBytes } : {}),
    log,
    clock: () => (now += 1000),
  });
  return { auditor, sink, lines, stages: () => sink.events.map((e) => e.stage) };
}

describe('sidecar/audit/auditor', function () {
  it('writes one ResponseComplete event for an ordinary request, with the times it saw', async function () {
    const { auditor, sink, stages } = setup();
    const record = forwardedFor('GET', '/api/v1/namespaces/a/pods');
    await auditor.begin(record, message());
    auditor.started(record, 200, answer(message({ 'content-type': 'application/json' }, 200)));
    auditor.record(record);
    assert.deepEqual(stages(), ['ResponseComplete']);
    assert.equal(sink.events[0]!.requestReceivedTimestamp, '2026-01-02T15:04:05.001000Z');
    assert.equal(sink.events[0]!.stageTimestamp, '2026-01-02T15:04:05.002000Z');
    assert.deepEqual(sink.events[0]!.responseStatus, { metadata: {}, code: 200 });
    assert.deepEqual(auditor.stats(), { requests: 1, events: 1, sinks: { stdout: { ...emptyStats(), written: 1 } } });
  });

  it('writes ResponseStarted when a watch starts streaming, and ResponseComplete when it ends', async function () {
    const { auditor, sink, stages } = setup();
    const record = forwardedFor('GET', '/api/v1/namespaces/a/pods?watch=1');
    await auditor.begin(record, message());
    auditor.started(record, 200, answer(message({ 'content-type': 'application/json' }, 200)));
    assert.deepEqual(stages(), ['ResponseStarted'], 'at once, not when the watch ends');
    auditor.record(record);
    assert.deepEqual(stages(), ['ResponseStarted', 'ResponseComplete']);
    assert.equal(sink.events[0]!.auditID, sink.events[1]!.auditID);
  });

  it('writes both stages for a watch the sidecar refused, and for an upgrade by its 101', async function () {
    const { auditor, sink, stages } = setup();
    const refused = recordFor('GET', '/api/v1/namespaces/b/pods?watch=1', { refusal: forbidden('alice', recordFor('GET', '/api/v1/namespaces/b/pods?watch=1').info) });
    await auditor.begin(refused, message());
    auditor.record(refused);
    assert.deepEqual(stages(), ['ResponseStarted', 'ResponseComplete']);
    assert.ok(sink.events.every((e) => e.responseStatus?.code === 403 && e.responseStatus.reason === 'Forbidden'));

    const exec = forwardedFor('GET', '/api/v1/namespaces/a/pods/web/exec?command=sh');
    await auditor.begin(exec, message({ upgrade: 'websocket' }));
    auditor.started(exec, 101);
    auditor.record(exec);
    assert.deepEqual(stages().slice(2), ['ResponseStarted', 'ResponseComplete']);
    assert.ok(sink.events.slice(2).every((e) => e.responseStatus?.code === 101));
  });

  it('writes Panic instead of ResponseComplete when the handler crashed', async function () {
    const { auditor, sink, stages } = setup();
    const record = recordFor('GET', '/api', { crashed: true, refusal: internalError('chaperone failed to handle the request'), error: 'boom' });
    await auditor.begin(record, message());
    auditor.record(record);
    assert.deepEqual(stages(), ['Panic']);
    assert.equal(sink.events[0]!.responseStatus?.code, 500);
  });

  it('writes nothing at level None, and leaves out omitted stages', async function () {
    const { auditor, stages } = setup(policy('  - level: None\n    users: [alice]\n  - level: Metadata\n    omitStages: [ResponseStarted]\n'));
    const quiet = forwardedFor('GET', '/api/v1/pods');
    await auditor.begin(quiet, message());
    auditor.record(quiet);
    assert.deepEqual(stages(), []);
    const watch = recordFor('GET', '/api/v1/pods?watch=1');
    await auditor.begin(watch, message());
    auditor.record(watch);
    assert.deepEqual(stages(), ['ResponseComplete']);
    assert.equal(auditor.stats().requests, 2);
  });

  it('keeps the request body only when the policy could want it, and records it at Request level', async function () {
    const { auditor, sink } = setup(policy('  - level: Request\n    users: [alice]\n    verbs: [create]\n  - level: Metadata\n'));
    const body = JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'cm' }, data: { k: 'v' } });
    const create = forwardedFor('POST', '/api/v1/namespaces/a/configmaps');
    const req = message({ 'content-type': 'application/json' });
    await auditor.begin(create, req);
    await drain(req, body); // as the forwarder would
    auditor.started(create, 201, answer(message({}, 201)));
    auditor.record(create);
    assert.deepEqual(sink.events[0]!.requestObject, JSON.parse(body));
    assert.equal(sink.events[0]!.objectRef?.name, 'cm');

    const patch = forwardedFor('PATCH', '/api/v1/namespaces/a/configmaps/cm');
    const untouched = message({ 'content-type': 'application/merge-patch+json' });
    await auditor.begin(patch, untouched);
    assert.equal(untouched.listenerCount('data'), 0, 'no rule could want this body: it is not watched');
    await drain(untouched, body);
    auditor.record(patch);
    assert.equal(sink.events[1]!.requestObject, undefined);
  });

  it('reads a create\'s body at Metadata level too, for the name the API server records in objectRef, and records no object', async function () {
    const { auditor, sink } = setup();
    const create = forwardedFor('POST', '/api/v1/namespaces/a/configmaps');
    const req = message({ 'content-type': 'application/json' });
    await auditor.begin(create, req);
    await drain(req, JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'cm', uid: 'u-1' } }));
    auditor.started(create, 201, answer(message({}, 201)));
    auditor.record(create);
    assert.equal(sink.events[0]!.level, 'Metadata');
    assert.deepEqual(sink.events[0]!.objectRef, { resource: 'configmaps', namespace: 'a', name: 'cm', uid: 'u-1', apiVersion: 'v1' });
    assert.equal(sink.events[0]!.requestObject, undefined);
    assert.equal(sink.events[0]!.annotations?.['chaperone.dev/request-object-omitted'], undefined);
  });

  describe("a create's objectRef: what the API server's LogRequestObject took, when its handler decoded the body", function () {
    const statusOf = (code: number, message: string, reason = 'BadRequest', details?: Record<string, string>) =>
      JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code });

    /** A create of `body` the API server answers with `code` (and a Status, for a failure); the event's objectRef and annotations. */
    async function create(body: string | Buffer, code: number | undefined, options: { answer?: string | Buffer; answerType?: string; contentType?: string; level?: string; cut?: boolean; forwarded?: boolean } = {}) {
      const { auditor, sink } = setup(options.level ? policy(`  - level: ${options.level}\n`) : AuditPolicy.DEFAULT, 1 << 20);
      const record = forwardedFor('POST', '/api/v1/namespaces/a/configmaps', options.forwarded === false ? { forwarded: false } : {});
      const req = message({ 'content-type': options.contentType ?? 'application/json', 'content-encoding': 'gzip' });
      await auditor.begin(record, req);
      if (options.cut) {
        (req as unknown as PassThrough).write(body);
        (req as unknown as PassThrough).destroy();
        await new Promise((resolve) => setImmediate(resolve));
      } else {
        await drain(req, body as string);
        record.bodySent = record.forwarded; // as the forwarder reports it, once the whole body is on the stream
      }
      if (code !== undefined) {
        const response = message({ 'content-type': options.answerType ?? 'application/json' }, code);
        auditor.started(record, code, answer(response));
        await drain(response, (options.answer ?? (code < 300 ? '{}' : statusOf(code, 'x'))) as string);
      }
      auditor.record(record);
      return sink.events[0]!;
    }
    const configMap = (name: string, extra = '') => `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"}${extra}}`;

    it('takes the name once the API server decoded the body: on success, and on failures after decoding', async function () {
      assert.equal((await create(configMap('cm'), 201)).objectRef?.name, 'cm');
      assert.equal((await create(configMap('Bad_Name'), 422, { answer: statusOf(422, 'ConfigMap "Bad_Name" is invalid', 'Invalid', { name: 'Bad_Name', kind: 'ConfigMap' }) })).objectRef?.name, 'Bad_Name');
      assert.equal((await create(configMap('cm'), 409, { answer: statusOf(409, 'configmaps "cm" already exists', 'AlreadyExists') })).objectRef?.name, 'cm');
      assert.equal((await create(configMap('cm'), undefined)).objectRef?.name, 'cm', 'sent whole with no answer: the API server had it to decode');
    });

    it('takes nothing when the API server failed before decoding, or never had the whole body', async function () {
      const decodeFailure = statusOf(400, 'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data');
      assert.equal((await create(configMap('cm', ',"data":5'), 400, { answer: decodeFailure })).objectRef?.name, undefined);
      const forbidden = statusOf(403, 'configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "a"', 'Forbidden');
      assert.equal((await create(configMap('cm'), 403, { answer: forbidden })).objectRef?.name, undefined);
      assert.equal((await create(configMap('cm'), 429, { answer: 'Too many requests, please try again later.', answerType: 'text/plain' })).objectRef?.name, undefined);
      assert.equal((await create(configMap('cm'), undefined, { cut: true })).objectRef?.name, undefined, 'a body cut short never decoded');
      const { auditor, sink } = setup(AuditPolicy.DEFAULT, 1 << 20);
      assert.equal((await create(configMap('cm'), 500, { cut: true, answer: statusOf(500, 'unexpected EOF') })).objectRef?.name, undefined, 'a body cut short, ended short upstream and answered: never decoded');
      const notYetSent = forwardedFor('POST', '/api/v1/namespaces/a/configmaps', { bodySent: false });
      const req = message({ 'content-type': 'application/json' });
      await auditor.begin(notYetSent, req);
      await drain(req, configMap('cm'));
      auditor.record(notYetSent);
      assert.equal(sink.events[0]!.objectRef?.name, undefined, 'read whole from the client but cut (--upstream-timeout) before it was all sent: never decoded');
      assert.equal((await create(configMap('cm'), undefined, { forwarded: false })).objectRef?.name, undefined, 'refused by chaperone: the API server never saw it');
    });

    it('reads a protobuf Status answer as well as a JSON one', async function () {
      const field = (n: number, value: string | Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, Buffer.byteLength(value)]), Buffer.from(value)]);
      const protobufStatus = (message: string) => {
        const status = Buffer.concat([field(3, message), Buffer.from([6 << 3, 144, 3])]);
        return Buffer.concat([Buffer.from('k8s\0', 'latin1'), field(1, Buffer.concat([field(1, 'v1'), field(2, 'Status')])), field(2, status)]);
      };
      const options = (message: string) => ({ answer: protobufStatus(message), answerType: 'application/vnd.kubernetes.protobuf' });
      assert.equal((await create(configMap('cm'), 400, options('ConfigMap in version "v1" cannot be handled as a ConfigMap: proto: bad'))).objectRef?.name, undefined);
      assert.equal((await create(configMap('cm'), 400, options('the namespace of the provided object does not match the namespace sent on the request'))).objectRef?.name, 'cm');
    });

    it('reads the whole body for the metadata, past the audit body limit, and never decompresses it', async function () {
      const big = configMap('big', `,"data":{"k":"${'x'.repeat(10_000)}"}`);
      const metadata = await create(big, 201);
      assert.equal(metadata.objectRef?.name, 'big', 'the 4096-byte --audit-body-limit does not bound what is read for objectRef');
      const request = await create(big, 201, { level: 'Request' });
      assert.equal(request.objectRef?.name, 'big');
      assert.equal(request.requestObject, undefined, 'the object itself stays bounded by the limit');
      assert.match(request.annotations?.['chaperone.dev/request-object-omitted'] ?? '', /larger than the 4096-byte limit/);
    });

    it('says when the API server decoded a body chaperone could not read', async function () {
      const event = await create(Buffer.from([0xd9, 0xd9, 0xf7]), 201, { contentType: 'application/x-made-up' });
      assert.equal(event.objectRef?.name, undefined);
      assert.match(event.annotations?.['chaperone.dev/object-ref-incomplete'] ?? '', /decodes no application\/x-made-up body/);
    });

    it('refuses a CBOR create or update before anything is forwarded: an API server with CBOR on would name an object chaperone cannot', async function () {
      const { auditor } = setup();
      const record = forwardedFor('POST', '/api/v1/namespaces/a/configmaps');
      await assert.rejects(auditor.begin(record, message({ 'content-type': 'application/CBOR; x=y' })), (err: Error & { code?: number }) => err.code === 415 && /does not read application\/cbor/.test(err.message));
      const patch = forwardedFor('PATCH', '/api/v1/namespaces/a/configmaps/cm');
      await auditor.begin(patch, message({ 'content-type': 'application/cbor' }));
    });
  });

  it('records the response at RequestResponse, and an API server failure\'s Status at any level', async function () {
    const { auditor, sink } = setup(policy('  - level: RequestResponse\n    resources: [{group: "", resources: [configmaps]}]\n  - level: Metadata\n'));
    const get = forwardedFor('GET', '/api/v1/namespaces/a/configmaps/cm');
    await auditor.begin(get, message());
    const response = message({ 'content-type': 'application/json' }, 200);
    auditor.started(get, 200, answer(response));
    await drain(response, JSON.stringify({ kind: 'ConfigMap', metadata: { name: 'cm', managedFields: [] } }));
    auditor.record(get);
    assert.deepEqual(sink.events[0]!.responseObject, { kind: 'ConfigMap', metadata: { name: 'cm', managedFields: [] } });

    const missing = forwardedFor('GET', '/api/v1/namespaces/a/secrets/nope');
    await auditor.begin(missing, message());
    const notFound = message({ 'content-type': 'application/json' }, 404);
    auditor.started(missing, 404, answer(notFound));
    await drain(notFound, JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'secrets "nope" not found', reason: 'NotFound', code: 404 }));
    auditor.record(missing);
    assert.equal(sink.events[1]!.level, 'Metadata');
    assert.equal(sink.events[1]!.responseObject, undefined);
    assert.deepEqual(sink.events[1]!.responseStatus, { metadata: {}, status: 'Failure', message: 'secrets "nope" not found', reason: 'NotFound', code: 404 });
  });

  it('holds a request back while a sink has no room, and lets it go when there is', async function () {
    const { auditor, sink } = setup();
    let makeRoom!: () => void;
    sink.room = new Promise((resolve) => (makeRoom = resolve));
    let admitted = false;
    const waiting = auditor.begin(recordFor('GET', '/api'), message()).then(() => (admitted = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(admitted, false);
    sink.room = undefined;
    makeRoom();
    await waiting;
    assert.equal(admitted, true);

    sink.room = new Promise((resolve) => setTimeout(() => resolve((sink.room = undefined)), 20));
    const gone: IncomingMessage = Object.assign(message(), { socket: { destroyed: true } });
    await assert.rejects(auditor.begin(recordFor('GET', '/api'), gone), /the client went away/, 'a client that gave up meanwhile is not served');
  });

  it('never lets a failing sink throw into the request path', async function () {
    const { auditor, sink, lines } = setup();
    sink.write = () => {
      throw new Error('disk on fire');
    };
    const record = forwardedFor('GET', '/api');
    await auditor.begin(record, message());
    assert.doesNotThrow(() => auditor.record(record));
    assert.ok(lines.some((l) => l.auditID === record.auditID && l.err === 'disk on fire'));
  });
});
