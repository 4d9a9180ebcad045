// The audit policy, against the rules of the API server's checker.go and validation.go.
import assert from 'node:assert/strict';
import { requestInfo } from '../../../../sidecar/authz/request-info.js';
import { AuditPolicy, AuditPolicyError, type PolicyAttributes } from '../../../../lib/sidecar-config/audit-policy.js';
import { policyAttributes } from '../../../../sidecar/audit/auditor.js';

function attrs(method: string, url: string, user?: { username: string; groups?: string[] }): PolicyAttributes {
  return policyAttributes(requestInfo(method, url), user && { username: user.username, groups: user.groups ?? [], extra: {} });
}

const policy = (rules: string, top = '') => AuditPolicy.parse(`apiVersion: audit.k8s.io/v1\nkind: Policy\n${top}rules:\n${rules}`, 'policy.yaml');
const alice = { username: 'alice', groups: ['dev', 'system:authenticated'] };

describe('sidecar/audit/policy', function () {
  describe('reading', function () {
    it('audits everything at Metadata without a policy file, every stage', function () {
      const config = AuditPolicy.DEFAULT.evaluate(attrs('GET', '/api/v1/namespaces/a/pods', alice));
      assert.equal(config.level, 'Metadata');
      assert.deepEqual([...config.omitStages], []);
      assert.equal(AuditPolicy.DEFAULT.evaluate(attrs('GET', '/healthz')).level, 'Metadata');
    });

    it('reads JSON as well as YAML', function () {
      const p = AuditPolicy.parse(JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules: [{ level: 'Request' }] }), 'p.json');
      assert.equal(p.evaluate(attrs('GET', '/api')).level, 'Request');
    });

    const invalid: [string, string, RegExp][] = [
      ['another API version', 'apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]', /apiVersion: must be audit\.k8s\.io\/v1/],
      ['no rules', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []', /rules: must hold at least one rule/],
      ['a level that does not exist', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Everything}]', /rules\[0\]\.level: is required: one of None, Metadata, Request, RequestResponse/],
      ['a rule without a level', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{verbs: [get]}]', /rules\[0\]\.level/],
      ['a misspelt key', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, userGroup: [dev]}]', /rules\[0\]: unknown key "userGroup"/],
      ['a URL without its slash', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: [healthz]}]', /nonResourceURLs\[0\]: "healthz": non-resource URL rules must begin with a '\/'/],
      ['a wildcard before the end', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: ["/api/*/x"]}]', /wildcards '\*' must be the final character/],
      [
        'resources and URLs in one rule',
        'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: ["/x"], namespaces: [a]}]',
        /rules cannot apply to both regular resources and non-resource URLs/,
      ],
      ['a group with its version', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, resources: [{group: apps/v1}]}]', /resources\[0\]\.group: "apps\/v1" is not a valid API group/],
      ['resourceNames without resources', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, resources: [{resourceNames: [x]}]}]', /resourceNames: using resourceNames requires at least one resource/],
      ['a stage that does not exist', 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Started]\nrules: [{level: None}]', /omitStages\[0\]: is not a stage/],
      ['broken YAML', 'rules: [', /policy\.yaml: not YAML/],
    ];
    for (const [what, text, expected] of invalid) {
      it(`refuses ${what}, naming the place`, function () {
        assert.throws(() => AuditPolicy.parse(text, 'policy.yaml'), (err: Error) => err instanceof AuditPolicyError && expected.test(err.message) && err.message.startsWith('policy.yaml'));
      });
    }
  });

  describe('matching, as checker.go does', function () {
    it('lets the first matching rule decide, and audits nothing when none matches', function () {
      const p = policy('  - level: None\n    verbs: [watch]\n  - level: Request\n    verbs: [create, watch]\n');
      assert.equal(p.evaluate(attrs('GET', '/api/v1/pods?watch=1', alice)).level, 'None');
      assert.equal(p.evaluate(attrs('POST', '/api/v1/namespaces/a/pods', alice)).level, 'Request');
      assert.equal(p.evaluate(attrs('GET', '/api/v1/pods', alice)).level, 'None');
    });

    it('matches users and groups of the authenticated person, and never a request without one', function () {
      const p = policy('  - level: RequestResponse\n    users: [alice]\n  - level: Request\n    userGroups: [ops, dev]\n  - level: Metadata\n');
      assert.equal(p.evaluate(attrs('GET', '/api', alice)).level, 'RequestResponse');
      assert.equal(p.evaluate(attrs('GET', '/api', { username: 'bob', groups: ['dev'] })).level, 'Request');
      assert.equal(p.evaluate(attrs('GET', '/api', { username: 'carol', groups: ['qa'] })).level, 'Metadata');
      assert.equal(p.evaluate(attrs('GET', '/api')).level, 'Metadata', 'an unauthenticated request skips rules that name users or groups');
    });

    it('matches namespaces, with "" for cluster-scoped resources, and never non-resource URLs', function () {
      const p = policy('  - level: Request\n    namespaces: [team-a]\n  - level: RequestResponse\n    namespaces: [""]\n');
      assert.equal(p.evaluate(attrs('GET', '/api/v1/namespaces/team-a/pods', alice)).level, 'Request');
      assert.equal(p.evaluate(attrs('GET', '/api/v1/namespaces/team-a', alice)).level, 'Request', 'the namespace object itself is in its namespace');
      assert.equal(p.evaluate(attrs('GET', '/api/v1/nodes', alice)).level, 'RequestResponse');
      assert.equal(p.evaluate(attrs('GET', '/healthz', alice)).level, 'None');
    });

    it('matches resources by group, with subresources, "*", "*/sub", "resource/*" and names', function () {
      const p = policy(
        [
          '  - level: None',
          '    resources: [{group: "", resources: ["pods/log"]}]',
          '  - level: RequestResponse',
          '    resources: [{group: "", resources: ["configmaps"], resourceNames: [shown]}]',
          '  - level: Request',
          '    resources: [{group: "", resources: ["*/status"]}]',
          '  - level: Metadata',
          '    resources: [{group: apps, resources: ["deployments/*"]}]',
          '  - level: Request',
          '    resources: [{group: batch, resources: ["*"]}, {group: rbac.authorization.k8s.io}]',
          '',
        ].join('\n'),
      );
      const level = (method: string, url: string) => p.evaluate(attrs(method, url, alice)).level;
      assert.equal(level('GET', '/api/v1/namespaces/a/pods/x/log'), 'None');
      assert.equal(level('GET', '/api/v1/namespaces/a/pods/x'), 'None', 'pods alone is not pods/log: no rule matches');
      assert.equal(level('GET', '/api/v1/namespaces/a/configmaps/shown'), 'RequestResponse');
      assert.equal(level('GET', '/api/v1/namespaces/a/configmaps/other'), 'None');
      assert.equal(level('GET', '/api/v1/namespaces/a/configmaps'), 'None', 'a list has no name, so resourceNames do not match it');
      assert.equal(level('PUT', '/api/v1/namespaces/a/pods/x/status'), 'Request');
      assert.equal(level('GET', '/apis/apps/v1/namespaces/a/deployments/d'), 'Metadata', 'deployments/* includes deployments');
      assert.equal(level('PUT', '/apis/apps/v1/namespaces/a/deployments/d/scale'), 'Metadata');
      assert.equal(level('GET', '/api/v1/namespaces/a/deployments/d'), 'None', 'the core group is not apps');
      assert.equal(level('DELETE', '/apis/batch/v1/namespaces/a/jobs/j'), 'Request');
      assert.equal(level('GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles'), 'Request', 'a group without resources is all of it');
    });

    it('matches non-resource URLs exactly, by trailing "*" prefix, or "*"; never a resource request', function () {
      const p = policy('  - level: None\n    nonResourceURLs: ["/healthz*", "/version"]\n  - level: Request\n    nonResourceURLs: ["*"]\n  - level: Metadata\n');
      assert.equal(p.evaluate(attrs('GET', '/healthz', alice)).level, 'None');
      assert.equal(p.evaluate(attrs('GET', '/healthz/etcd', alice)).level, 'None');
      assert.equal(p.evaluate(attrs('GET', '/version', alice)).level, 'None');
      assert.equal(p.evaluate(attrs('GET', '/version/x', alice)).level, 'Request');
      assert.equal(p.evaluate(attrs('GET', '/apis', alice)).level, 'Request', 'discovery is a non-resource request');
      assert.equal(p.evaluate(attrs('GET', '/api/v1/pods', alice)).level, 'Metadata');
    });

    it('omits the policy\'s stages and the rule\'s, and lets a rule override omitManagedFields', function () {
      const p = policy(
        '  - level: Request\n    verbs: [create]\n    omitStages: [ResponseStarted]\n    omitManagedFields: false\n  - level: Metadata\n',
        'omitStages: [RequestReceived]\nomitManagedFields: true\n',
      );
      const create = p.evaluate(attrs('POST', '/api/v1/namespaces/a/configmaps', alice));
      assert.deepEqual([...create.omitStages].sort(), ['RequestReceived', 'ResponseStarted']);
      assert.equal(create.omitManagedFields, false);
      const get = p.evaluate(attrs('GET', '/api/v1/namespaces/a/configmaps', alice));
      assert.deepEqual([...get.omitStages], ['RequestReceived']);
      assert.equal(get.omitManagedFields, true);
      const none = policy('  - level: Metadata\n    verbs: [get]\n', 'omitStages: [Panic]\n').evaluate(attrs('POST', '/api/v1/pods', alice));
      assert.equal(none.level, 'None');
      assert.deepEqual([...none.omitStages], ['Panic']);
    });
  });

  describe('the highest level anyone could get, before anyone is authenticated', function () {
    it('looks past rules that name users, and stops at the first rule for everyone', function () {
      const p = policy('  - level: RequestResponse\n    users: [alice]\n    verbs: [create]\n  - level: Metadata\n    verbs: [create]\n  - level: Request\n');
      const create = attrs('POST', '/api/v1/namespaces/a/configmaps');
      assert.equal(p.highestLevel(create), 'RequestResponse');
      const update = attrs('PUT', '/api/v1/namespaces/a/configmaps/x');
      assert.equal(p.highestLevel(update), 'Request');
      const shadowed = policy('  - level: Metadata\n  - level: RequestResponse\n');
      assert.equal(shadowed.highestLevel(create), 'Metadata');
    });
  });
});
