// A namespace's access policy from its annotations, and the impersonator role generated from it.
import assert from 'node:assert/strict';
import { accessPolicyFor, type AccessDefaults, type ServedResources } from '../../../injector/provision/access.js';
import { impersonatorRules, sameRules } from '../../../injector/provision/impersonator-role.js';
import { policyAllows, type AccessAttributes } from '../../../lib/access-policy.js';

const defaults: AccessDefaults = { mode: 'constrained', access: 'dashboard', groups: [], extras: [] };
const served: ServedResources = {
  core: [
    { name: 'pods', verbs: ['get', 'list', 'watch', 'create', 'delete'] },
    { name: 'pods/log', verbs: ['get'] },
    { name: 'pods/exec', verbs: ['create', 'get'] },
    { name: 'pods/portforward', verbs: ['create', 'get'] },
    { name: 'services/proxy', verbs: ['get', 'create'] },
    { name: 'nodes/proxy', verbs: ['get', 'create'] },
    { name: 'secrets', verbs: ['get', 'list', 'watch', 'create'] },
    { name: 'serviceaccounts/token', verbs: ['create'] },
    { name: 'bindings', verbs: ['create'] },
  ],
  groups: ['apps', 'rbac.authorization.k8s.io', 'admissionregistration.k8s.io'],
};
const get = (resource: string, subresource = '', apiGroup = '', verb = 'get'): AccessAttributes => ({ isResourceRequest: true, path: '', verb, apiGroup, resource, subresource, name: '' });

describe('injector access policies', function () {
  it("gives a dashboard every ordinary verb, but writes no security setting, mints no token and never reaches a kubelet", function () {
    const policy = accessPolicyFor(undefined, defaults, served);
    assert.equal(policy.access, 'dashboard');
    assert.ok(policyAllows(policy, get('secrets', '', '', 'delete')));
    assert.ok(policyAllows(policy, get('pods', 'exec', '', 'create')));
    assert.ok(policyAllows(policy, get('deployments', 'scale', 'apps', 'patch')));
    assert.ok(policyAllows(policy, get('clusterrolebindings', '', 'rbac.authorization.k8s.io', 'list')), 'reads them');
    assert.ok(!policyAllows(policy, get('clusterrolebindings', '', 'rbac.authorization.k8s.io', 'create')));
    assert.ok(!policyAllows(policy, get('mutatingwebhookconfigurations', '', 'admissionregistration.k8s.io', 'update')));
    assert.ok(!policyAllows(policy, get('serviceaccounts', 'token', '', 'create')));
    assert.ok(!policyAllows(policy, get('nodes', 'proxy')), "a node's proxy is its kubelet");
    assert.ok(policyAllows(policy, get('services', 'proxy')), 'a service proxy is an ordinary dashboard feature');
    assert.ok(!policyAllows(policy, get('users', '', '', 'impersonate')));
    assert.ok(!policyAllows(policy, get('clusterroles', '', 'rbac.authorization.k8s.io', 'escalate')));
  });

  it('makes read-only mean get, list and watch on what is served, without secrets, exec, port-forward or proxies', function () {
    const policy = accessPolicyFor({ 'chaperone.dev/access': 'read-only' }, defaults, served);
    assert.ok(policyAllows(policy, get('pods')));
    assert.ok(policyAllows(policy, get('pods', 'log')));
    assert.ok(policyAllows(policy, get('deployments', '', 'apps', 'watch')));
    for (const [resource, sub] of [['secrets', ''], ['pods', 'exec'], ['pods', 'portforward'], ['services', 'proxy']] as const) {
      assert.ok(!policyAllows(policy, get(resource, sub)), `${resource}/${sub}`);
    }
    assert.ok(!policyAllows(policy, get('pods', '', '', 'create')));
    const withSecrets = accessPolicyFor({ 'chaperone.dev/access': 'read-only', 'chaperone.dev/access-secrets': 'true' }, defaults, served);
    assert.ok(policyAllows(withSecrets, get('secrets', '', '', 'list')));
  });

  it('takes a tool its own rules, and names the annotation that is wrong', function () {
    const rules = '- apiGroups: [""]\n  resources: [configmaps]\n  verbs: [get, update]\n';
    const policy = accessPolicyFor({ 'chaperone.dev/access': 'custom', 'chaperone.dev/access-rules': rules }, defaults, served);
    assert.ok(policyAllows(policy, get('configmaps', '', '', 'update')));
    assert.ok(!policyAllows(policy, get('pods')));
    const refused: [Record<string, string>, RegExp][] = [
      [{ 'chaperone.dev/access': 'readonly' }, /annotation chaperone.dev\/access: "readonly" is not one of dashboard, read-only, custom/],
      [{ 'chaperone.dev/access': 'custom' }, /chaperone.dev\/access-rules must list the rules/],
      [{ 'chaperone.dev/access': 'custom', 'chaperone.dev/access-rules': '- verbs: [escalate]' }, /annotation chaperone.dev\/access-rules: .*verbs among get/],
      [{ 'chaperone.dev/access-rules': rules }, /only read when chaperone.dev\/access is custom/],
      [{ 'chaperone.dev/access-secrets': 'true' }, /only read when chaperone.dev\/access is read-only/],
    ];
    for (const [annotations, message] of refused) assert.throws(() => accessPolicyFor(annotations, defaults, served), message);
  });

  it('generates a constrained role that says whom and what, and a classic one that can only say whom', function () {
    const policy = accessPolicyFor({ 'chaperone.dev/access': 'read-only' }, { ...defaults, groups: ['dev'] }, served);
    const constrained = impersonatorRules(policy);
    const verbs = constrained.flatMap((r) => r.verbs);
    assert.ok(!verbs.includes('impersonate'), 'no classic verb');
    assert.ok(verbs.includes('impersonate-on:user-info:list'));
    assert.ok(!verbs.some((v) => /:(create|update|patch|delete|deletecollection)$/.test(v)), 'read-only: no write verb');
    const groups = constrained.find((r) => r.resources?.includes('groups'))!;
    assert.deepEqual(groups.resourceNames, ['dev', 'system:authenticated', 'system:unauthenticated']);

    const classic = impersonatorRules({ ...policy, mode: 'classic' });
    assert.ok(classic.every((r) => r.verbs.every((v) => v === 'impersonate' || v === 'create')));
    assert.deepEqual(classic.find((r) => r.resources?.includes('groups'))!.resourceNames, ['dev', 'system:authenticated', 'system:unauthenticated']);
  });

  it('compares rules regardless of field order and absent-versus-empty', function () {
    const rules = impersonatorRules(accessPolicyFor(undefined, defaults, served));
    const asStored = rules.map((r) => Object.fromEntries(Object.entries(r).reverse()) as typeof r);
    assert.ok(sameRules(asStored, rules));
    assert.ok(!sameRules(rules.slice(1), rules));
  });
});
