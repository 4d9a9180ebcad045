import assert from 'node:assert/strict';
import type { Attributes, AccessReviewer } from '../../../sidecar/authz/review.js';
import { ORIGINAL_USER_INFO_EXTRA, type Identity } from '../../../sidecar/identity.js';
import {
  authorizeImpersonation,
  escapeExtraKey,
  impersonationChecks,
  impersonationHeaders,
  asForwarded,
  readImpersonationRequest,
} from '../../../sidecar/impersonation.js';
import type { StatusError } from '../../../lib/status.js';

const carol: Identity = { username: 'carol', groups: ['support', 'system:authenticated'], extra: {} };

function reviewer(allow: (attributes: Attributes) => boolean): AccessReviewer & { asked: Attributes[] } {
  const asked: Attributes[] = [];
  return {
    asked,
    review: (_identity, attributes) => {
      asked.push(attributes);
      return Promise.resolve({ allowed: allow(attributes), reason: '' });
    },
  };
}

describe('sidecar/impersonation', function () {
  describe('reading the client\'s headers', function () {
    it('is undefined without Impersonate-* headers', function () {
      assert.equal(readImpersonationRequest(['Accept', '*/*']), undefined);
    });

    it('reads user, uid, every group and extras in any letter case, keys unescaped', function () {
      assert.deepEqual(
        readImpersonationRequest(['IMPERSONATE-USER', 'alice', 'impersonate-group', 'a', 'Impersonate-Group', 'b', 'Impersonate-Uid', '42', 'Impersonate-Extra-Example.com%2Fteam', 'x', 'impersonate-extra-example.com%2fteam', 'y']),
        { username: 'alice', uid: '42', groups: ['a', 'b'], extra: { 'example.com/team': ['x', 'y'] } },
      );
    });

    for (const [header, value] of [['Impersonate-Group', 'g'], ['Impersonate-Uid', '1'], ['Impersonate-Extra-scopes', 's']] as const) {
      it(`refuses ${header} without a user with 400, as the API server does`, function () {
        assert.throws(() => readImpersonationRequest([header, value]), (err: StatusError) => err.code === 400 && /without impersonating a user/.test(err.message));
      });
    }

    it('refuses two users or two uids with 400: the API server would take the first, a reader of the last the other', function () {
      for (const name of ['Impersonate-User', 'Impersonate-Uid']) {
        const headers = ['Impersonate-User', 'alice', name, 'first', name.toLowerCase(), 'second'];
        assert.throws(() => readImpersonationRequest(headers), (err: StatusError) => err.code === 400 && err.message.includes(name));
      }
    });

    it('refuses a client trying to set the original-user extra itself', function () {
      assert.throws(() => readImpersonationRequest(['Impersonate-User', 'a', `Impersonate-Extra-${ORIGINAL_USER_INFO_EXTRA}`, '{}']), (err: StatusError) => err.code === 403);
    });

    it('reads UTF-8 values that arrive as latin1 bytes', function () {
      const wire = Buffer.from('zoë', 'utf8').toString('latin1');
      assert.equal(readImpersonationRequest(['Impersonate-User', wire])?.username, 'zoë');
    });
  });

  describe('the API server\'s checks', function () {
    it('checks users, groups, extras and uid, and service accounts as serviceaccounts', function () {
      assert.deepEqual(impersonationChecks({ username: 'system:serviceaccount:ns:robot', uid: 'u', groups: ['g'], extra: { scopes: ['s'] } }), [
        { verb: 'impersonate', group: '', resource: 'serviceaccounts', namespace: 'ns', name: 'robot' },
        { verb: 'impersonate', group: '', resource: 'groups', name: 'g' },
        { verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: 'scopes', name: 's' },
        { verb: 'impersonate', group: 'authentication.k8s.io', resource: 'uids', name: 'u' },
      ]);
    });

    it('gives an impersonated service account its groups when none were asked for, and keeps the original', async function () {
      const identity = await authorizeImpersonation(reviewer(() => true), carol, { username: 'system:serviceaccount:ns:robot', groups: [], extra: {} });
      assert.deepEqual(identity.groups, ['system:serviceaccounts', 'system:serviceaccounts:ns', 'system:authenticated']);
      assert.deepEqual(JSON.parse(identity.extra[ORIGINAL_USER_INFO_EXTRA]![0]!), carol);
    });

    it('takes a service-account name the API server would not split (SplitUsername) for a user\'s: impersonate users, no service-account groups', async function () {
      for (const username of ['system:serviceaccount:ns:Ghost_1', 'system:serviceaccount:NS:robot', 'system:serviceaccount:ns:', 'system:serviceaccount::robot', 'system:serviceaccount:ns:a:b', `system:serviceaccount:${'n'.repeat(64)}:robot`, 'system:serviceaccount:ns:-robot']) {
        assert.deepEqual(impersonationChecks({ username, groups: [], extra: {} }), [{ verb: 'impersonate', group: '', resource: 'users', name: username }], username);
        const identity = await authorizeImpersonation(reviewer(() => true), carol, { username, groups: [], extra: {} });
        assert.deepEqual(identity.groups, ['system:authenticated'], username);
      }
      assert.deepEqual(impersonationChecks({ username: 'system:serviceaccount:ns:robot.v1-2', groups: [], extra: {} })[0], { verb: 'impersonate', group: '', resource: 'serviceaccounts', namespace: 'ns', name: 'robot.v1-2' });
    });

    it('adds system:authenticated as the API server does: not to anonymous, nor to someone impersonated into system:unauthenticated', async function () {
      const groupsOf = async (username: string, groups: string[]) => (await authorizeImpersonation(reviewer(() => true), carol, { username, groups, extra: {} })).groups;
      assert.deepEqual(await groupsOf('alice', ['system:unauthenticated']), ['system:unauthenticated']);
      assert.deepEqual(await groupsOf('alice', ['dev']), ['dev', 'system:authenticated']);
      assert.deepEqual(await groupsOf('alice', ['system:authenticated', 'dev']), ['system:authenticated', 'dev']);
      assert.deepEqual(await groupsOf('system:anonymous', []), ['system:unauthenticated']);
      assert.deepEqual(await groupsOf('system:anonymous', ['dev']), ['dev', 'system:unauthenticated']);
    });

    it('refuses at the first check that is not allowed, in the API server\'s words', async function () {
      const r = reviewer((a) => !('resource' in a && a.resource.resource === 'groups'));
      await assert.rejects(authorizeImpersonation(r, carol, { username: 'alice', groups: ['admins', 'other'], extra: {} }), (err: StatusError) => {
        assert.equal(err.code, 403);
        assert.equal(err.message, 'groups "admins" is forbidden: User "carol" cannot impersonate resource "groups" in API group "" at the cluster scope');
        return true;
      });
      assert.equal(r.asked.length, 2);
    });
  });

  describe('outbound headers', function () {
    it('sends one Impersonate-Group per group, the uid, and escaped extra keys', function () {
      for (const mode of ['classic', 'constrained'] as const) {
        assert.deepEqual(impersonationHeaders({ username: 'alice', uid: '7', groups: ['a', 'b'], extra: { 'example.com/Team': ['x'] } }, mode), {
          'impersonate-user': 'alice',
          'impersonate-group': ['a', 'b'],
          'impersonate-uid': '7',
          'impersonate-extra-example.com%2F%54eam': ['x'],
        });
      }
    });

    it('impersonates a service account by name alone under constrained impersonation, as the API server requires', function () {
      const robot = { username: 'system:serviceaccount:ci:deployer', uid: '9', groups: ['system:serviceaccounts', 'system:serviceaccounts:ci', 'system:authenticated'], extra: { 'authentication.kubernetes.io/credential-id': ['JTI=1'] } };
      assert.deepEqual(impersonationHeaders(robot, 'constrained'), { 'impersonate-user': 'system:serviceaccount:ci:deployer' });
      assert.deepEqual(Object.keys(impersonationHeaders(robot, 'classic')).sort(), ['impersonate-extra-authentication.kubernetes.io%2Fcredential-id', 'impersonate-group', 'impersonate-uid', 'impersonate-user']);
    });

    it('records as impersonated what the API server will see: under constrained impersonation a service account without uid or extras, with its namespace\'s groups', function () {
      const robot = { username: 'system:serviceaccount:ci:deployer', uid: '9', groups: ['team'], extra: { 'authentication.kubernetes.io/credential-id': ['JTI=1'] } };
      assert.deepEqual(asForwarded(robot, 'constrained'), { username: robot.username, groups: ['system:serviceaccounts', 'system:serviceaccounts:ci', 'system:authenticated'], extra: {} });
      assert.equal(asForwarded(robot, 'classic'), robot);
      const person = { username: 'alice', uid: '7', groups: ['dev'], extra: { 'example.com/team': ['x'] } };
      assert.equal(asForwarded(person, 'constrained'), person);
    });

    it('escapes what cannot be a header name, and upper case, which the API server would lower', function () {
      assert.equal(escapeExtraKey('a b/C%é'), 'a%20b%2F%43%25%C3%A9');
      for (const key of ['a b/C%é', 'Example.COM/Team', 'chaperone.dev/original-user-info']) {
        // what the API server does: lower-case the header name, then unescape it
        assert.equal(decodeURIComponent(escapeExtraKey(key).toLowerCase()), key);
      }
    });

    it('refuses names that cannot travel in a header line', function () {
      assert.throws(() => impersonationHeaders({ username: 'alice\r\nImpersonate-Group: system:masters', groups: [], extra: {} }, 'constrained'), (err: StatusError) => err.code === 400);
      assert.throws(() => impersonationHeaders({ username: '', groups: [], extra: {} }, 'constrained'), (err: StatusError) => err.code === 400);
    });
  });
});
