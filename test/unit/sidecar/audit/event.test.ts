// Events shaped as the API server's own (compare the harness's audit log), from what the pipeline recorded.
import assert from 'node:assert/strict';
import { ANNOTATIONS, buildEvent, completesObjectRef, microTime, responseStatusOf, type EventInput } from '../../../../sidecar/audit/event.js';
import { requestInfo } from '../../../../sidecar/authz/request-info.js';
import { unauthorized } from '../../../../lib/status.js';
import { forbidden } from '../../../../sidecar/authz/forbidden.js';
import { ORIGINAL_USER_INFO_EXTRA } from '../../../../sidecar/identity.js';
import { alice, forwardedFor, recordFor } from './helpers.js';

const RECEIVED = Date.UTC(2026, 0, 2, 15, 4, 5) * 1000 + 123456;

function input(overrides: Partial<EventInput> & Pick<EventInput, 'record'>): EventInput {
  return {
    level: 'Metadata',
    stage: 'ResponseComplete',
    receivedMicros: RECEIVED,
    stageMicros: RECEIVED + 2500,
    served: { podName: 'headlamp-7d9f', podNamespace: 'team-a' },
    responseStatus: { metadata: {}, code: 200 },
    ...overrides,
  };
}

describe('sidecar/audit/event', function () {
  it('writes timestamps as the API server does: UTC, six fractional digits', function () {
    assert.equal(microTime(RECEIVED), '2026-01-02T15:04:05.123456Z');
    assert.equal(microTime(Date.UTC(2026, 0, 2) * 1000 + 7), '2026-01-02T00:00:00.000007Z');
  });

  it('describes a forwarded request field for field like the API server, in its order', function () {
    const record = forwardedFor('GET', '/api/v1/namespaces/team-a/pods?limit=500');
    const event = buildEvent(input({ record }));
    assert.deepEqual(Object.keys(event), [
      'kind', 'apiVersion', 'level', 'auditID', 'stage', 'requestURI', 'verb', 'user', 'impersonatedUser', 'sourceIPs', 'userAgent', 'objectRef', 'responseStatus',
      'requestReceivedTimestamp', 'stageTimestamp', 'annotations',
    ]);
    assert.deepEqual(event, {
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: record.auditID,
      stage: 'ResponseComplete',
      requestURI: '/api/v1/namespaces/team-a/pods?limit=500',
      verb: 'list',
      user: { username: 'alice', groups: ['dev', 'system:authenticated'] },
      impersonatedUser: { username: 'alice', groups: ['dev', 'system:authenticated'] },
      sourceIPs: ['127.0.0.1'],
      userAgent: 'kubectl/v1.37.2 (linux/amd64) kubernetes/abcdef',
      objectRef: { resource: 'pods', namespace: 'team-a', apiVersion: 'v1' },
      responseStatus: { metadata: {}, code: 200 },
      requestReceivedTimestamp: '2026-01-02T15:04:05.123456Z',
      stageTimestamp: '2026-01-02T15:04:05.125956Z',
      annotations: {
        [ANNOTATIONS.authenticationMethod]: 'x509',
        [ANNOTATIONS.authorizationDecision]: 'allow',
        [ANNOTATIONS.authorizationReason]: 'RBAC: allowed by RoleBinding "view/team-a" of ClusterRole "view" to User "alice"',
        [ANNOTATIONS.forwarded]: 'true',
        [ANNOTATIONS.podName]: 'headlamp-7d9f',
        [ANNOTATIONS.podNamespace]: 'team-a',
      },
    });
  });

  it('names groups and subresources in objectRef, and leaves the core group out', function () {
    const logs = buildEvent(input({ record: forwardedFor('GET', '/api/v1/namespaces/a/pods/web/log') }));
    assert.deepEqual(logs.objectRef, { resource: 'pods', namespace: 'a', name: 'web', apiVersion: 'v1', subresource: 'log' });
    const deployments = buildEvent(input({ record: forwardedFor('GET', '/apis/apps/v1/deployments') }));
    assert.deepEqual(deployments.objectRef, { resource: 'deployments', apiGroup: 'apps', apiVersion: 'v1' });
    assert.equal(buildEvent(input({ record: forwardedFor('GET', '/version') })).objectRef, undefined);
  });

  it('records a request without credentials as the API server does: an empty user, its 401 Status', function () {
    const record = recordFor('GET', '/api/v1/namespaces', {
      authenticationFailures: [{ method: 'x509', reason: 'the certificate has expired' }],
      refusal: unauthorized(),
      error: 'authentication failed: x509: the certificate has expired',
      responseCode: 401,
    });
    const event = buildEvent(input({ record, responseStatus: responseStatusOf(record, undefined, undefined) }));
    assert.deepEqual(event.user, {});
    assert.equal(event.impersonatedUser, undefined);
    assert.deepEqual(event.responseStatus, { metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    assert.equal(event.annotations?.[ANNOTATIONS.authenticationFailures], 'x509: the certificate has expired');
    assert.equal(event.annotations?.[ANNOTATIONS.forwarded], 'false');
    assert.equal(event.annotations?.[ANNOTATIONS.error], 'authentication failed: x509: the certificate has expired');
    assert.equal(event.annotations?.[ANNOTATIONS.authenticationMethod], undefined);
  });

  it('records the sidecar\'s own refusal with its Status, and no impersonated user', function () {
    const record = recordFor('GET', '/api/v1/namespaces/b/pods', {
      authenticated: { identity: alice, method: 'x509' },
      decision: { allowed: false, reason: '' },
      refusal: forbidden('alice', recordFor('GET', '/api/v1/namespaces/b/pods').info),
      responseCode: 403,
    });
    const event = buildEvent(input({ record, responseStatus: responseStatusOf(record, undefined, undefined) }));
    assert.equal(event.impersonatedUser, undefined);
    assert.deepEqual(event.responseStatus, {
      metadata: {},
      status: 'Failure',
      message: 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "b"',
      reason: 'Forbidden',
      details: { kind: 'pods' },
      code: 403,
    });
    assert.equal(event.annotations?.[ANNOTATIONS.authorizationDecision], 'forbid');
  });

  it('lists every review when the request took more than one, in order, empty fields left out; none for a single review', function () {
    const allow = { allowed: true, reason: '' };
    const record = forwardedFor('POST', '/api/v1/namespaces/b/pods/web/exec?command=ls', {
      reviews: [
        { user: 'carol', attributes: { resource: { verb: 'impersonate', group: '', resource: 'users', name: 'alice' } }, decision: allow },
        { user: 'alice', attributes: { resource: { verb: 'get', group: '', version: 'v1', resource: 'pods', subresource: 'exec', namespace: 'b', name: 'web' } }, decision: allow },
        { user: 'alice', attributes: { resource: { verb: 'create', group: '', version: 'v1', resource: 'pods', subresource: 'exec', namespace: 'b', name: 'web' } }, decision: { allowed: false, reason: 'no' } },
      ],
    });
    const event = buildEvent(input({ record, responseStatus: responseStatusOf(record, undefined, undefined) }));
    assert.deepEqual(JSON.parse(event.annotations?.[ANNOTATIONS.authorizationReviews] ?? 'null'), [
      { user: 'carol', verb: 'impersonate', resource: 'users', name: 'alice', decision: 'allow' },
      { user: 'alice', verb: 'get', version: 'v1', resource: 'pods', subresource: 'exec', namespace: 'b', name: 'web', decision: 'allow' },
      { user: 'alice', verb: 'create', version: 'v1', resource: 'pods', subresource: 'exec', namespace: 'b', name: 'web', decision: 'forbid', reason: 'no' },
    ]);
    const single = forwardedFor('GET', '/api/v1/namespaces/b/pods');
    assert.equal(single.reviews.length, 1);
    assert.equal(buildEvent(input({ record: single, responseStatus: responseStatusOf(single, undefined, undefined) })).annotations?.[ANNOTATIONS.authorizationReviews], undefined);
  });

  it('names the person as user and the impersonated identity as impersonatedUser when the client impersonates', function () {
    const carol = { username: 'carol', groups: ['support', 'system:authenticated'], extra: {} };
    const sent = { username: 'alice', groups: ['dev'], extra: { [ORIGINAL_USER_INFO_EXTRA]: ['{"username":"carol"}'] } };
    const record = forwardedFor('GET', '/api/v1/namespaces/a/pods', { authenticated: { identity: carol, method: 'x509' }, impersonated: sent, nestedImpersonation: true });
    const event = buildEvent(input({ record }));
    assert.deepEqual(event.user, { username: 'carol', groups: ['support', 'system:authenticated'] });
    assert.deepEqual(event.impersonatedUser, sent);
    assert.equal(event.annotations?.[ANNOTATIONS.nestedImpersonation], 'true');
  });

  it('takes Status fields from an API server failure, and the code alone on success', function () {
    const record = forwardedFor('GET', '/api/v1/namespaces/a/configmaps/nope');
    const status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'configmaps "nope" not found', reason: 'NotFound', details: { name: 'nope', kind: 'configmaps' }, code: 404 };
    assert.deepEqual(responseStatusOf(record, 404, status), {
      metadata: {},
      status: 'Failure',
      message: 'configmaps "nope" not found',
      reason: 'NotFound',
      details: { name: 'nope', kind: 'configmaps' },
      code: 404,
    });
    assert.deepEqual(responseStatusOf(record, 200, { kind: 'PodList' }), { metadata: {}, code: 200 });
    assert.deepEqual(
      responseStatusOf(recordFor('GET', '/api'), undefined, undefined),
      { metadata: {}, status: 'Failure', message: 'context canceled: the client went away before the request was answered', reason: 'InternalError', code: 500 },
      'abandoned with no answer: never a success',
    );
  });

  it('carries the request object at Request level only, completing objectRef from it at every level as LogRequestObject does', function () {
    const record = forwardedFor('POST', '/api/v1/namespaces/a/configmaps', { responseCode: 201 });
    const body = { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'cm1', namespace: 'a' }, data: { k: 'v' } };
    const objectMeta = { fields: body.metadata };
    const metadata = buildEvent(input({ record, requestBody: { object: body }, responseBody: { object: body }, objectMeta }));
    assert.equal(metadata.requestObject, undefined);
    assert.deepEqual(metadata.objectRef, { resource: 'configmaps', namespace: 'a', name: 'cm1', apiVersion: 'v1' });
    const request = buildEvent(input({ record, level: 'Request', requestBody: { object: body }, responseBody: { object: body }, objectMeta }));
    assert.deepEqual(request.requestObject, body);
    assert.equal(request.responseObject, undefined);
    assert.deepEqual(request.objectRef, { resource: 'configmaps', namespace: 'a', name: 'cm1', apiVersion: 'v1' });
    const both = buildEvent(input({ record, level: 'RequestResponse', requestBody: { object: body }, responseBody: { object: body } }));
    assert.deepEqual(both.responseObject, body);
    assert.deepEqual(Object.keys(both).slice(12, 15), ['responseStatus', 'requestObject', 'responseObject']);
  });

  it('completes the objectRef of creates and updates only: a patch is logged as a patch, a delete carries DeleteOptions, exec is connected', function () {
    const body = { metadata: { name: 'other', namespace: 'b', uid: 'u' } };
    const objectMeta = { fields: body.metadata };
    const patch = buildEvent(input({ record: forwardedFor('PATCH', '/api/v1/namespaces/a/configmaps/cm'), level: 'Request', requestBody: { object: body }, objectMeta }));
    assert.deepEqual(patch.objectRef, { resource: 'configmaps', namespace: 'a', name: 'cm', apiVersion: 'v1' });
    const update = buildEvent(input({ record: forwardedFor('PUT', '/api/v1/namespaces/a/configmaps/cm'), requestBody: { object: body }, objectMeta }));
    assert.deepEqual(update.objectRef, { resource: 'configmaps', namespace: 'a', name: 'cm', uid: 'u', apiVersion: 'v1' }, 'what the URL names wins');
    const exec = buildEvent(input({ record: forwardedFor('POST', '/api/v1/namespaces/a/pods/web/exec?command=ls'), objectMeta }));
    assert.deepEqual(exec.objectRef, { resource: 'pods', namespace: 'a', name: 'web', apiVersion: 'v1', subresource: 'exec' });
    assert.equal(completesObjectRef(requestInfo('POST', '/api/v1/namespaces/a/services/web/proxy/x')), false);
    assert.equal(completesObjectRef(requestInfo('POST', '/api/v1/namespaces/a/pods/web/eviction')), true, 'an eviction is decoded');
    assert.equal(completesObjectRef(requestInfo('PUT', '/apis/apps/v1/namespaces/a/deployments/d/scale')), true);
  });

  it('says when the API server decoded a body chaperone could not read, and completes nothing from it', function () {
    const event = buildEvent(input({ record: forwardedFor('POST', '/api/v1/namespaces/a/configmaps'), objectMeta: { unread: 'the application/yaml body does not decode: why' } }));
    assert.deepEqual(event.objectRef, { resource: 'configmaps', namespace: 'a', apiVersion: 'v1' });
    assert.equal(event.annotations?.[ANNOTATIONS.objectRefIncomplete], 'the application/yaml body does not decode: why');
    const list = buildEvent(input({ record: forwardedFor('POST', '/api/v1/namespaces/a/configmaps'), objectMeta: { none: 'a ConfigMapList has no ObjectMeta' } }));
    assert.deepEqual(list.objectRef, { resource: 'configmaps', namespace: 'a', apiVersion: 'v1' });
    assert.equal(list.annotations?.[ANNOTATIONS.objectRefIncomplete], undefined);
  });

  it('says why a body the level asks for is missing', function () {
    const record = forwardedFor('POST', '/api/v1/namespaces/a/configmaps');
    const event = buildEvent(input({ record, level: 'RequestResponse', requestBody: { omitted: 'too large' }, responseBody: { omitted: 'not JSON' } }));
    assert.equal(event.requestObject, undefined);
    assert.equal(event.annotations?.[ANNOTATIONS.requestObjectOmitted], 'too large');
    assert.equal(event.annotations?.[ANNOTATIONS.responseObjectOmitted], 'not JSON');
  });

  it('writes source addresses as Go does and cuts a long user agent as the API server does', function () {
    const record = forwardedFor('GET', '/api', { sourceIP: '::ffff:10.1.2.3', userAgent: 'x'.repeat(1500) });
    const event = buildEvent(input({ record }));
    assert.deepEqual(event.sourceIPs, ['10.1.2.3']);
    assert.equal(event.userAgent, `${'x'.repeat(1024)}...TRUNCATED`);
    assert.deepEqual(buildEvent(input({ record: forwardedFor('GET', '/api', { sourceIP: '::1', userAgent: undefined }) })).sourceIPs, ['::1']);
  });
});
