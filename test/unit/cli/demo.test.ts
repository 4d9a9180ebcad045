import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import type { V1Pod } from '@kubernetes/client-node';
import { describeInjection, describeRules, tokenHolders } from '../../../cli/demo-describe.js';
import { auditEventIn, auditLine, AuditPrinter } from '../../../cli/demo-audit.js';
import { duration } from '../../../cli/demo-output.js';
import type { Event } from '../../../sidecar/audit/types.js';

const FIXTURES = path.resolve(import.meta.dirname, '../../fixtures/injector');

async function fixture(name: string): Promise<V1Pod> {
  return YAML.parse(await readFile(path.join(FIXTURES, name), 'utf8')) as V1Pod;
}

function event(overrides: Partial<Event>): Event {
  return {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: '8c1e4f1a-6f0e-4d0e-9b8f-1c1f6d7e9a21',
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/demo/pods?limit=500',
    verb: 'list',
    user: { username: 'alice', groups: ['dev', 'system:authenticated'] },
    objectRef: { resource: 'pods', namespace: 'demo', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 200 },
    requestReceivedTimestamp: '2026-01-02T15:04:05.123456Z',
    stageTimestamp: '2026-01-02T15:04:05.131020Z',
    annotations: { 'chaperone.dev/authorization-decision': 'allow' },
    ...overrides,
  };
}

describe('cli/demo: what the injector did, in a few lines', function () {
  it('names the sidecar, the service account, the swapped mount, the volumes and who holds a token', async function () {
    const lines = describeInjection(await fixture('headlamp.in.yaml'), await fixture('headlamp.out.yaml'));
    const text = lines.join('\n');
    assert.match(lines[0]!, /^\+ container chaperone: a native sidecar \(init container, restartPolicy Always\), image ghcr\.io\/chaperone-dev\/chaperone-sidecar:/);
    assert.match(text, /^ {4}args {3}--listen=127\.0\.0\.1:6443 /m);
    assert.match(text, /^~ container headlamp\n {4}env {3}\+KUBERNETES_SERVICE_HOST=127\.0\.0\.1 \+KUBERNETES_SERVICE_PORT=6443/m);
    assert.match(text, /^ {4}mount \/var\/run\/secrets\/kubernetes\.io\/serviceaccount: kube-api-access-x7k2p -> chaperone-api-access$/m);
    assert.match(text, /^~ serviceAccountName: headlamp -> chaperone-impersonator$/m);
    assert.match(text, /^~ automountServiceAccountToken: \(unset\) -> false$/m);
    assert.match(text, /^- volume kube-api-access-x7k2p +token of ServiceAccount headlamp, 60m; ConfigMap kube-root-ca\.crt \(ca\.crt\); namespace$/m);
    assert.match(text, /^\+ volume chaperone-upstream +token of ServiceAccount chaperone-impersonator, 1h; ConfigMap chaperone-ca \(upstream-ca\.crt\)$/m);
    assert.match(text, /^\+ volume chaperone-api-access +ConfigMap chaperone-ca \(serving-ca\.crt\); namespace; token "chaperone-placeholder-token\.this-token-has-no-power"$/m);
    assert.match(text, /^\+ annotations .*chaperone\.dev\/status/m);
    assert.equal(lines.at(-1), 'service-account tokens: mounted by headlamp without chaperone, by chaperone with it');
  });

  it('says nothing changed in a pod left alone, and names every container that still holds a token', async function () {
    const pod = await fixture('headlamp.in.yaml');
    assert.deepEqual(describeInjection(pod, structuredClone(pod)), ['service-account tokens: mounted by headlamp without chaperone, by headlamp with it']);
    assert.deepEqual(tokenHolders({ spec: { containers: [{ name: 'app' }] } }), []);
  });

  it('tells a classic sidecar (an ordinary container) from a native one, and removed environment variables', function () {
    const before: V1Pod = { spec: { containers: [{ name: 'app', env: [{ name: 'KUBERNETES_SERVICE_HOST', value: '10.0.0.1' }, { name: 'KEEP', value: '1' }] }] } };
    const after: V1Pod = { spec: { containers: [{ name: 'app', env: [{ name: 'KEEP', value: '1' }] }, { name: 'chaperone', image: 'example.invalid/chaperone:1' }] } };
    assert.deepEqual(describeInjection(before, after).slice(0, 3), [
      '~ container app',
      '    env   -KUBERNETES_SERVICE_HOST',
      '+ container chaperone: a container, image example.invalid/chaperone:1',
    ]);
  });

  it("groups a role's rules by verb, constrained-impersonation verbs under their kind", function () {
    assert.deepEqual(
      describeRules([
        { apiGroups: [''], resources: ['users', 'groups'], verbs: ['impersonate:user-info'] },
        { apiGroups: [''], resources: ['serviceaccounts'], verbs: ['impersonate:serviceaccount'] },
        { apiGroups: [''], resources: ['*'], verbs: ['impersonate-on:user-info:get', 'impersonate-on:user-info:list'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
      ]),
      ['impersonate     users, groups, serviceaccounts', 'impersonate-on  *', 'create          subjectaccessreviews'],
    );
  });
});

describe("cli/demo: the sidecar's audit events, one line each", function () {
  it('says who, what, the decision and the auditID', function () {
    assert.equal(auditLine(event({})), '15:04:05  alice     list pods -n demo               allow 200           auditID=8c1e4f1a-6f0e-4d0e-9b8f-1c1f6d7e9a21');
  });

  it('gives a refusal without a review its code and reason, and nobody for no credential', function () {
    const line = auditLine(event({ user: {}, annotations: {}, responseStatus: { metadata: {}, code: 401, reason: 'Unauthorized' } }));
    assert.match(line, /^15:04:05 {2}\(nobody\) {2}list pods -n demo +401 Unauthorized +auditID=/);
  });

  it('names the impersonated identity, a non-resource path without its query, a named object, and a stage before the last', function () {
    assert.match(auditLine(event({ impersonatedUser: { username: 'bob' } })), /^15:04:05 {2}alice as bob {2}list pods -n demo/);
    assert.match(auditLine(event({ objectRef: undefined, verb: 'get', requestURI: '/version?timeout=32s' })), / {2}get \/version +allow 200/);
    assert.match(auditLine(event({ verb: 'get', objectRef: { resource: 'pods', subresource: 'log', name: 'headlamp', namespace: 'demo' } })), / {2}get pods\/log headlamp -n demo /);
    assert.match(auditLine(event({ stage: 'ResponseStarted', verb: 'watch' })), / {2}\(ResponseStarted\)$/);
  });

  it('formats durations for people', function () {
    assert.deepEqual([duration(870), duration(12_345), duration(9 * 60_000 + 5_000)], ['0.9s', '12.3s', '9m05s']);
  });
});

describe("cli/demo: the audit events in the sidecar's container log", function () {
  it('takes the events, and neither the log lines beside them nor anything that is not JSON', function () {
    const line = JSON.stringify(event({ auditID: 'a' }));
    assert.equal(auditEventIn(line)?.auditID, 'a');
    assert.equal(auditEventIn(JSON.stringify({ level: 'info', msg: 'chaperone sidecar serving' })), undefined);
    assert.equal(auditEventIn(JSON.stringify({ kind: 'Event', apiVersion: 'v1', reason: 'Started' })), undefined);
    assert.equal(auditEventIn(line.slice(0, 40)), undefined);
    assert.equal(auditEventIn('E1207 10:00:00 something else'), undefined);
  });

  it('holds the events until the first flush, then prints each as it comes', function () {
    const printed: string[] = [];
    const printer = new AuditPrinter((e) => printed.push(e.auditID));
    printer.add(event({ auditID: 'a' }));
    printer.add(event({ auditID: 'b' }));
    assert.deepEqual(printed, []);
    assert.equal(printer.flush(), 2);
    assert.deepEqual(printed, ['a', 'b']);
    printer.add(event({ auditID: 'c' }));
    assert.deepEqual(printed, ['a', 'b', 'c']);
  });
});
