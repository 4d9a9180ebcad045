// The sidecar's side of the access policy: refused early with a Status that names the policy, the
// file re-read when the kubelet updates it, and no serving at all while a configured policy is unreadable.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { serialisePolicy, type AccessPolicy } from '../../../lib/access-policy.js';
import { AccessGate } from '../../../sidecar/access.js';
import { requestInfo } from '../../../sidecar/authz/request-info.js';
import type { Identity } from '../../../sidecar/identity.js';
import type { StatusError } from '../../../lib/status.js';
import { waitFor } from '../../../local-cluster/wait.js';

const log = pino({ enabled: false });
const alice: Identity = { username: 'alice', groups: ['dev', 'system:authenticated'], extra: {} };
const readOnly: AccessPolicy = {
  mode: 'constrained',
  access: 'read-only',
  rules: [{ apiGroups: [''], resources: ['pods', 'configmaps'], verbs: ['get', 'list', 'watch'] }],
  nonResourceURLs: ['*'],
  groups: ['dev'],
  extras: ['chaperone.dev/original-user-info'],
};

const refusal = (gate: AccessGate, identity: Identity, method: string, url: string): StatusError | undefined => {
  try {
    gate.check(identity, requestInfo(method, url));
    return undefined;
  } catch (err) {
    return err as StatusError;
  }
};

describe('sidecar access policy', function () {
  let dir: string;
  let file: string;
  const gates: AccessGate[] = [];
  const gate = (options: { policyFile?: string; readOnly?: boolean } = {}) => {
    const made = new AccessGate({ readOnly: false, log, ...options });
    gates.push(made);
    return made;
  };

  beforeEach(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-access-'));
    file = path.join(dir, 'access-policy.json');
  });

  afterEach(async function () {
    gates.splice(0).forEach((g) => g.close());
    await rm(dir, { recursive: true, force: true });
  });

  it('allows what the policy allows and refuses the rest with a 403 that names the policy', async function () {
    await writeFile(file, serialisePolicy(readOnly));
    const g = gate({ policyFile: file });
    assert.equal(g.mode(), 'constrained');
    assert.equal(refusal(g, alice, 'GET', '/api/v1/namespaces/team/pods'), undefined);
    assert.equal(refusal(g, alice, 'GET', '/version'), undefined);
    const post = refusal(g, alice, 'POST', '/api/v1/namespaces/team/configmaps');
    assert.equal(post?.code, 403);
    assert.match(post.message, /configmaps is forbidden: User "alice" cannot create resource "configmaps".*the namespace's chaperone access policy \(read-only\) does not allow it/);
    assert.equal(refusal(g, alice, 'GET', '/api/v1/namespaces/team/secrets')?.code, 403);
  });

  it('refuses groups outside the allow-list and extras the policy does not name', async function () {
    await writeFile(file, serialisePolicy(readOnly));
    const g = gate({ policyFile: file });
    assert.match(refusal(g, { ...alice, groups: ['ops'] }, 'GET', '/api/v1/namespaces/team/pods')!.message, /does not let it act for group "ops"/);
    const tenant = { ...alice, extra: { 'example.com/tenant': ['a'] } };
    assert.match(refusal(g, tenant, 'GET', '/api/v1/namespaces/team/pods')!.message, /user extra "example.com\/tenant" \(the injector's --impersonation-extras\)/);
    // A service account goes by name alone under constrained impersonation: its groups are the API server's.
    const robot: Identity = { username: 'system:serviceaccount:ci:bot', groups: ['system:serviceaccounts', 'system:serviceaccounts:ci'], extra: { 'authentication.kubernetes.io/pod-name': ['x'] } };
    assert.equal(refusal(g, robot, 'GET', '/api/v1/namespaces/team/pods'), undefined);
  });

  it('refuses, under constrained impersonation, a service account asked for with groups, a uid or extras', async function () {
    await writeFile(file, serialisePolicy(readOnly));
    const g = gate({ policyFile: file });
    const robot = { username: 'system:serviceaccount:ci:bot', groups: [], extra: {} };
    assert.doesNotThrow(() => g.checkNested(robot));
    assert.throws(() => g.checkNested({ ...robot, groups: ['dev'] }), /impersonated by its name alone/);
    assert.throws(() => g.checkNested({ ...robot, uid: '1' }), /impersonated by its name alone/);
    assert.doesNotThrow(() => g.checkNested({ username: 'carol', groups: ['dev'], extra: {} }), 'a user may have groups');
    assert.doesNotThrow(() => gate().checkNested({ ...robot, groups: ['dev'] }), 'classic impersonation takes them');
  });

  it('refuses every request, 503, and says why, while a configured policy is missing or invalid; recovers when it is fixed', async function () {
    const g = gate({ policyFile: file });
    assert.match(g.problem()!, /missing or empty/);
    assert.equal(refusal(g, alice, 'GET', '/api/v1/namespaces/team/pods')?.code, 503);
    await writeFile(file, '{"mode":"constrained"}');
    await waitFor('the policy to be refused', () => /not a valid access policy/.test(g.problem() ?? ''));
    assert.equal(refusal(g, alice, 'GET', '/api/v1/namespaces/team/pods')?.code, 503);
    await writeFile(file, serialisePolicy(readOnly));
    await waitFor('the policy to be taken', () => g.problem() === undefined);
    assert.equal(refusal(g, alice, 'GET', '/api/v1/namespaces/team/pods'), undefined);
    assert.equal(g.describe(), 'impersonation mode constrained, access read-only, groups limited to dev');
  });

  it('follows a policy that changes under it (the kubelet updating the ConfigMap)', async function () {
    await writeFile(file, serialisePolicy({ ...readOnly, access: 'dashboard', rules: [{ apiGroups: ['*'], resources: ['*'], verbs: ['get', 'create'] }] }));
    const g = gate({ policyFile: file });
    assert.equal(refusal(g, alice, 'POST', '/api/v1/namespaces/team/configmaps'), undefined);
    await writeFile(file, serialisePolicy(readOnly));
    await waitFor('the read-only refusal', () => refusal(g, alice, 'POST', '/api/v1/namespaces/team/configmaps') !== undefined);
  });

  it('without a policy file: no namespace policy, classic mode, and a read-only pod still only reads', function () {
    const open = gate();
    assert.equal(open.mode(), 'classic');
    assert.equal(refusal(open, { ...alice, groups: ['anything'] }, 'DELETE', '/api/v1/namespaces/team/pods/x'), undefined);
    const pod = gate({ readOnly: true });
    assert.equal(refusal(pod, alice, 'GET', '/api/v1/namespaces/team/pods?watch=1'), undefined);
    assert.match(refusal(pod, alice, 'DELETE', '/api/v1/namespaces/team/pods/x')!.message, /this pod is read-only \(chaperone.dev\/read-only\)/);
  });

  it('a read-only pod upgrades a connection only to watch or to read a log: never to an extension\'s own stream (a VM console)', function () {
    const pod = gate({ readOnly: true });
    const upgraded = (url: string) => {
      try {
        pod.check(alice, requestInfo('GET', url), true);
        return undefined;
      } catch (err) {
        return (err as StatusError).message;
      }
    };
    assert.match(upgraded('/apis/subresources.kubevirt.io/v1/namespaces/team/virtualmachineinstances/vm1/console') ?? 'allowed', /this pod is read-only/);
    assert.match(upgraded('/apis/subresources.kubevirt.io/v1/namespaces/team/virtualmachineinstances/vm1/vnc') ?? 'allowed', /this pod is read-only/);
    assert.match(upgraded('/api/v1/namespaces/team/pods/web') ?? 'allowed', /this pod is read-only/);
    assert.equal(upgraded('/api/v1/namespaces/team/pods?watch=1'), undefined);
    assert.equal(upgraded('/api/v1/namespaces/team/pods/web/log?follow=true'), undefined);
    assert.equal(refusal(pod, alice, 'GET', '/apis/subresources.kubevirt.io/v1/namespaces/team/virtualmachineinstances/vm1/guestosinfo'), undefined, 'a plain GET of an extension reads');
  });

  it("a namespace's read-only policy, too, upgrades a connection only to watch or to read a log", async function () {
    await writeFile(file, serialisePolicy({ ...readOnly, rules: [...readOnly.rules, { apiGroups: ['subresources.kubevirt.io'], resources: ['*'], verbs: ['get', 'list', 'watch'] }] }));
    const g = gate({ policyFile: file });
    const vmConsole = requestInfo('GET', '/apis/subresources.kubevirt.io/v1/namespaces/team/virtualmachineinstances/vm1/console');
    assert.throws(() => g.check(alice, vmConsole, true), /access policy \(read-only\) upgrades a connection only to watch or to read a log/);
    assert.doesNotThrow(() => g.check(alice, vmConsole, false), 'the same GET without an upgrade is a read the rules allow');
    assert.doesNotThrow(() => g.check(alice, requestInfo('GET', '/api/v1/namespaces/team/pods?watch=1'), true));
  });

  it('a read-only pod reads, but never through a door a GET opens: a node\'s kubelet, a pod\'s exec or proxy, a token', function () {
    const pod = gate({ readOnly: true });
    for (const door of [
      '/api/v1/nodes/n1/proxy/exec/team/web/app?command=id', // the kubelet's API: exec into any pod on the node
      '/api/v1/namespaces/team/pods/web/exec?command=id', // a websocket exec is a GET
      '/api/v1/namespaces/team/pods/web/attach?stdout=true',
      '/api/v1/namespaces/team/pods/web/portforward?ports=80',
      '/api/v1/namespaces/team/pods/web/proxy/admin',
      '/api/v1/namespaces/team/services/web:80/proxy/',
    ]) {
      assert.match(refusal(pod, alice, 'GET', door)?.message ?? 'allowed', /this pod is read-only/, door);
    }
    for (const read of ['/api/v1/namespaces/team/pods/web/log', '/api/v1/namespaces/team/pods/web/status', '/api/v1/nodes/n1', '/healthz']) {
      assert.equal(refusal(pod, alice, 'GET', read), undefined, read);
    }
    // Asking about oneself changes nothing (kubectl auth whoami, can-i; a dashboard choosing its buttons).
    for (const review of ['/apis/authentication.k8s.io/v1/selfsubjectreviews', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews']) {
      assert.equal(refusal(pod, alice, 'POST', review), undefined, review);
    }
    for (const write of ['/apis/authorization.k8s.io/v1/subjectaccessreviews', '/apis/authentication.k8s.io/v1/tokenreviews', '/apis/authorization.k8s.io/v1/namespaces/team/localsubjectaccessreviews']) {
      assert.match(refusal(pod, alice, 'POST', write)?.message ?? 'allowed', /this pod is read-only/, write);
    }
  });
});

