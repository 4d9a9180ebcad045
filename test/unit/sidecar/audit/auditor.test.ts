// The recorder the pipeline talks to: stages, levels, bodies and back-pressure, with sinks that remember.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { UpstreamResponse } from '../../../../sidecar/forward/http.js';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Auditor } from '../../../../sidecar/audit/auditor.js';
import { AuditPolicy } from '../../../../sidecar/audit/policy.js';
import type { SerialisedEvent, Sink, SinkStats } from '../../../../sidecar/audit/sinks/sink.js';
import { emptyStats } from '../../../../sidecar/audit/sinks/sink.js';
import type { Event } from '../../../../sidecar/audit/types.js';
import { forbidden, internalError } from '../../../../sidecar/status.js';
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

function setup(auditPolicy = AuditPolicy.DEFAULT) {
  const sink = new MemorySink();
  let now = 1_767_366_245_000_000;
  const { log, lines } = capturingLogger();
  const auditor = new Auditor({ policy: auditPolicy, sinks: [sink], served: { podName: 'p', podNamespace: 'n' }, bodyLimit: 4096, log, clock: () => (now += 1000) });
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
