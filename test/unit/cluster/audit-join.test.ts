// The audit join (local-cluster/audit-join.ts) with hand-made events: it must fail on every kind of
// disagreement, or it would prove nothing at the end of an e2e run.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  declareNoSidecarEvent,
  formatMismatches,
  joinAuditLogs,
  JOIN_DIR_VARIABLE,
  preserveControlPlaneLog,
  preserveSidecarAuditLog,
  registerControlPlane,
  registerAuditWebhookReceiver,
  registerSidecarAuditLog,
  runAuditJoin,
  type JoinEvent,
  type JoinInput,
  type JoinUser,
  type MismatchKind,
  type SidecarRecord,
} from '../../../local-cluster/audit-join.js';

const SCOPED = 'system:serviceaccount:team-a:chaperone-impersonator';
const ALICE = { username: 'alice', groups: ['dev', 'system:authenticated'], extra: { 'chaperone.dev/original-user-info': ['{"username":"alice"}'] } };
const LIST_PODS = { verb: 'list', requestURI: '/api/v1/namespaces/team-a/pods', objectRef: { resource: 'pods', namespace: 'team-a', apiVersion: 'v1' } };

let ids = 0;
const nextId = () => `00000000-0000-4000-8000-${String(++ids).padStart(12, '0')}`;

/** The API server's event of a forwarded request: the scoped account impersonating alice. */
function apiServer(auditID: string, overrides: Partial<JoinEvent> = {}): JoinEvent {
  return { auditID, stage: 'ResponseComplete', ...LIST_PODS, user: { username: SCOPED, groups: ['system:serviceaccounts', 'system:authenticated'] }, impersonatedUser: ALICE, responseStatus: { code: 200 }, ...overrides };
}

/** The sidecar's event of the same request. */
function sidecar(auditID: string, overrides: Partial<JoinEvent> = {}, source = 'sidecar of test/e2e/x.test.ts:1'): SidecarRecord {
  return {
    source,
    event: { auditID, stage: 'ResponseComplete', ...LIST_PODS, user: { username: 'alice', groups: ['dev', 'system:authenticated'] }, impersonatedUser: ALICE, responseStatus: { code: 200 }, annotations: { 'chaperone.dev/forwarded': 'true' }, ...overrides },
  };
}

function join(apiServerEvents: JoinEvent[], sidecarRecords: SidecarRecord[], more: Partial<JoinInput> = {}) {
  return joinAuditLogs({ apiServer: apiServerEvents, sidecars: sidecarRecords, scopedAccounts: new Set([SCOPED]), declared: new Map(), ...more });
}

function kinds(result: ReturnType<typeof join>): MismatchKind[] {
  return result.mismatches.map((m) => m.kind);
}

describe('the audit join', function () {
  describe('accepts', function () {
    it('a request with exactly one matching sidecar event', function () {
      const id = nextId();
      const result = join([apiServer(id)], [sidecar(id)]);
      assert.deepEqual(result.mismatches, []);
      assert.equal(result.joined, 1);
    });

    it('a watch: both stages on both sides are one request', function () {
      const id = nextId();
      const watch = { verb: 'watch', requestURI: '/api/v1/namespaces/team-a/pods?watch=1' };
      const result = join(
        [apiServer(id, { ...watch, stage: 'ResponseStarted' }), apiServer(id, watch)],
        [sidecar(id, { ...watch, stage: 'ResponseStarted' }), sidecar(id, watch)],
      );
      assert.deepEqual(result.mismatches, []);
      assert.equal(result.joined, 1);
      assert.deepEqual(result.verbs, { watch: 1 });
    });

    it('groups and extra values in another order', function () {
      const id = nextId();
      const result = join([apiServer(id)], [sidecar(id, { impersonatedUser: { ...ALICE, groups: ['system:authenticated', 'dev'] } })]);
      assert.deepEqual(result.mismatches, []);
    });

    it("the sidecar's own calls: its reviews and its readiness probe, without impersonation", function () {
      const own = (overrides: Partial<JoinEvent>) => apiServer(nextId(), { impersonatedUser: undefined, ...overrides });
      const result = join(
        [
          own({ verb: 'create', requestURI: '/apis/authorization.k8s.io/v1/subjectaccessreviews', objectRef: { apiGroup: 'authorization.k8s.io', apiVersion: 'v1', resource: 'subjectaccessreviews' }, responseStatus: { code: 201 } }),
          own({ verb: 'create', requestURI: '/apis/authentication.k8s.io/v1/tokenreviews', objectRef: { apiGroup: 'authentication.k8s.io', apiVersion: 'v1', resource: 'tokenreviews' }, responseStatus: { code: 201 } }),
          own({ verb: 'get', requestURI: '/readyz', objectRef: undefined }),
        ],
        [],
      );
      assert.deepEqual(result.mismatches, []);
      assert.equal(result.ownCalls, 3);
    });

    it('a request the API server refused with 403 before impersonating, which the sidecar forwarded impersonating', function () {
      const id = nextId();
      const result = join([apiServer(id, { impersonatedUser: undefined, responseStatus: { code: 403 } })], [sidecar(id, { responseStatus: { code: 403 } })]);
      assert.deepEqual(result.mismatches, []);
    });

    it('a declared request without a sidecar event (a test using a scoped token straight)', function () {
      const id = nextId();
      const result = join([apiServer(id, { impersonatedUser: undefined })], [], { declared: new Map([[id, 'stolen-token table']]) });
      assert.deepEqual(result.mismatches, []);
      assert.deepEqual(result.declaredUsed, [id]);
    });

    it('requests by anyone but a scoped account, and service accounts that do not impersonate', function () {
      const result = join(
        [
          apiServer(nextId(), { user: { username: 'chaperone-test-admin', groups: ['system:masters'] } }),
          apiServer(nextId(), { user: { username: 'system:serviceaccount:chaperone-system:chaperone-injector' }, impersonatedUser: undefined }),
        ],
        [],
      );
      assert.deepEqual(result.mismatches, []);
      assert.equal(result.joined, 0);
    });
  });

  describe('fails on', function () {
    it('a request with no sidecar event', function () {
      const result = join([apiServer(nextId())], []);
      assert.deepEqual(kinds(result), ['no sidecar event']);
      assert.match(result.mismatches[0]!.detail, /no sidecar recorded this auditID/);
    });

    it('a request only a sidecar of another API server recorded', function () {
      const id = nextId();
      const result = join([apiServer(id)], [], { elsewhere: [sidecar(id, {}, 'sidecar of test/e2e/other.test.ts:9')] });
      assert.deepEqual(kinds(result), ['no sidecar event']);
      assert.match(result.mismatches[0]!.detail, /another API server recorded it: sidecar of test\/e2e\/other\.test\.ts:9/);
    });

    it('two sidecar events of one stage', function () {
      const id = nextId();
      assert.deepEqual(kinds(join([apiServer(id)], [sidecar(id), sidecar(id)])), ['more than one sidecar event']);
    });

    it('sidecar events of one auditID in two sidecar logs', function () {
      const id = nextId();
      assert.deepEqual(kinds(join([apiServer(id)], [sidecar(id, { stage: 'ResponseStarted' }, 'one'), sidecar(id, {}, 'two')])), ['more than one sidecar event']);
    });

    it('one auditID executed twice by the API server', function () {
      const id = nextId();
      assert.deepEqual(kinds(join([apiServer(id), apiServer(id)], [sidecar(id)])), ['executed more than once']);
    });

    it('another verb (what a smuggled request looks like under an innocent auditID)', function () {
      const id = nextId();
      const result = join([apiServer(id, { verb: 'delete', requestURI: '/api/v1/namespaces/team-a/secrets/x', objectRef: { resource: 'secrets', namespace: 'team-a', name: 'x', apiVersion: 'v1' } })], [sidecar(id)]);
      assert.deepEqual(kinds(result), ['verb', 'objectRef']);
      assert.match(result.mismatches[1]!.detail, /resource: API server "secrets", sidecar "pods"; name: API server "x", sidecar ""/);
    });

    for (const field of ['namespace', 'resource', 'subresource', 'name', 'apiGroup', 'apiVersion'] as const) {
      it(`another objectRef ${field}`, function () {
        const id = nextId();
        const objectRef = { ...LIST_PODS.objectRef, [field]: 'other' };
        assert.deepEqual(kinds(join([apiServer(id, { objectRef })], [sidecar(id)])), ['objectRef']);
      });
    }

    it('another impersonated user, uid, groups or extra', function () {
      const cases: JoinUser[] = [
        { username: 'root-admin' },
        { uid: '1234' },
        { groups: ['dev', 'system:authenticated', 'system:masters'] },
        { groups: ['system:authenticated'] },
        { extra: { 'chaperone.dev/original-user-info': ['{"username":"mallory"}'] } },
        { extra: {} },
      ];
      for (const change of cases) {
        const id = nextId();
        const result = join([apiServer(id, { impersonatedUser: { ...ALICE, ...change } })], [sidecar(id)]);
        assert.deepEqual(kinds(result), ['impersonated user'], JSON.stringify(change));
      }
    });

    it('a request under the scoped account without impersonation that is not its own call (no sidecar event)', function () {
      const result = join([apiServer(nextId(), { impersonatedUser: undefined, verb: 'get', requestURI: '/api/v1/namespaces/team-a/secrets/x', objectRef: { resource: 'secrets', namespace: 'team-a', name: 'x', apiVersion: 'v1' } })], []);
      assert.deepEqual(kinds(result), ['no sidecar event']);
    });

    it("a read of a Secret outside the injector's namespace, though the sidecar's own reads of its installation configuration are its own calls", function () {
      const read = (namespace: string) => ({ impersonatedUser: undefined, verb: 'get', requestURI: `/api/v1/namespaces/${namespace}/secrets/chaperone-sidecar-config`, objectRef: { resource: 'secrets', namespace, name: 'chaperone-sidecar-config', apiVersion: 'v1' } });
      assert.deepEqual(kinds(join([apiServer(nextId(), read('team-a'))], [])), ['no sidecar event']);
      assert.deepEqual(kinds(join([apiServer(nextId(), read('chaperone-system-1f2e3d4c'))], [])), []);
    });

    it('a request under the scoped account without impersonation that carries a sidecar auditID', function () {
      const id = nextId();
      assert.deepEqual(kinds(join([apiServer(id, { impersonatedUser: undefined })], [sidecar(id)])), ['not impersonated']);
    });

    it('a refusal without impersonation that the sidecar recorded without an impersonated user', function () {
      const id = nextId();
      assert.deepEqual(kinds(join([apiServer(id, { impersonatedUser: undefined, responseStatus: { code: 403 } })], [sidecar(id, { impersonatedUser: undefined })])), ['not impersonated']);
    });

    it("calls that only look like the sidecar's own", function () {
      const own = { impersonatedUser: undefined, verb: 'create', objectRef: { apiGroup: 'authorization.k8s.io', apiVersion: 'v1', resource: 'subjectaccessreviews' } };
      const result = join(
        [
          apiServer(nextId(), { ...own, requestURI: '/apis/authorization.k8s.io/v1/subjectaccessreviews?dryRun=All' }),
          apiServer(nextId(), { ...own, requestURI: '/apis/authorization.k8s.io/v1/namespaces/team-a/localsubjectaccessreviews', objectRef: { ...own.objectRef, resource: 'localsubjectaccessreviews', namespace: 'team-a' } }),
          apiServer(nextId(), { ...own, requestURI: '/apis/authorization.k8s.io/v1/subjectaccessreviews', impersonatedUser: ALICE }),
          apiServer(nextId(), { impersonatedUser: undefined, verb: 'get', requestURI: '/readyz?verbose', objectRef: undefined }),
        ],
        [],
      );
      assert.deepEqual(kinds(result), ['no sidecar event', 'no sidecar event', 'no sidecar event', 'no sidecar event']);
    });

    it('a declared auditID whose sidecar event disagrees', function () {
      const id = nextId();
      assert.deepEqual(kinds(join([apiServer(id)], [sidecar(id, { verb: 'get' })], { declared: new Map([[id, 'declared']]) })), ['verb']);
    });

    it('a sidecar event that says the request was not forwarded', function () {
      const id = nextId();
      assert.deepEqual(kinds(join([apiServer(id)], [sidecar(id, { annotations: { 'chaperone.dev/forwarded': 'false' } })])), ['not forwarded']);
    });

    it("the injector's probe of constrained impersonation is excused only as exactly that", function () {
      const injector = { username: 'system:serviceaccount:chaperone-system:chaperone-injector' };
      const probe = { verb: 'create', requestURI: '/apis/authentication.k8s.io/v1/selfsubjectreviews', objectRef: { apiGroup: 'authentication.k8s.io', apiVersion: 'v1', resource: 'selfsubjectreviews' }, impersonatedUser: { username: 'chaperone.dev:impersonation-probe', groups: ['system:authenticated'] } };
      assert.deepEqual(kinds(join([apiServer(nextId(), { ...probe, user: injector })], [])), []);
      assert.deepEqual(kinds(join([apiServer(nextId(), { ...probe, user: injector, impersonatedUser: ALICE })], [])), ['unregistered impersonator']);
      assert.deepEqual(kinds(join([apiServer(nextId(), { ...probe })], [])), ['no sidecar event'], 'a scoped account gets no excuse');
    });

    it('a service account that impersonates but is no registered sidecar\'s', function () {
      const result = join([apiServer(nextId(), { user: { username: 'system:serviceaccount:other:powerful' } }), apiServer(nextId(), { user: { username: 'system:serviceaccount:other:powerful' } })], []);
      assert.deepEqual(kinds(result), ['unregistered impersonator']);
      assert.match(result.mismatches[0]!.detail, /system:serviceaccount:other:powerful impersonated in 2 request\(s\)/);
    });
  });

  it('groups mismatches of one shape, with a few examples', function () {
    const created = Array.from({ length: 5 }, (_, n) => {
      const id = nextId();
      return [apiServer(id, { verb: 'create', objectRef: { ...LIST_PODS.objectRef, name: `cm-${n}` } }), sidecar(id, { verb: 'create' })] as const;
    });
    const mismatches = join([...created.map(([a]) => a), apiServer(nextId())], created.map(([, s]) => s)).mismatches;
    const report = formatMismatches(mismatches, 2);
    assert.match(report, /^- objectRef: 5 requests through sidecar of test\/e2e\/x\.test\.ts:1$/m);
    assert.match(report, /^ {2}… and 3 more like these$/m);
    assert.match(report, /^- no sidecar event: 1 request$/m);
    assert.equal(report.match(/^ {2}auditID /gm)?.length, 3);
  });

  it('says, without failing, how many forwarded sidecar events the API server never recorded', function () {
    const result = join([], [sidecar(nextId()), sidecar(nextId(), { annotations: { 'chaperone.dev/forwarded': 'false' } })]);
    assert.deepEqual(result.mismatches, []);
    assert.deepEqual(result.forwardedUnseen, { 'sidecar of test/e2e/x.test.ts:1': 1 });
  });

  it('reports each mismatch with the events of both sides', function () {
    const id = nextId();
    const report = formatMismatches(join([apiServer(id, { verb: 'delete' })], [sidecar(id)]).mismatches);
    assert.match(report, /^- verb: 1 request through sidecar of test\/e2e\/x\.test\.ts:1$/m);
    assert.match(report, new RegExp(`^  auditID ${id}: API server "delete", sidecar "list"`, 'm'));
    assert.match(report, /API server: ResponseComplete delete \/api\/v1\/namespaces\/team-a\/pods \| objectRef namespace=team-a,resource=pods,apiVersion=v1 \| user system:serviceaccount:team-a:chaperone-impersonator/);
    assert.match(report, /sidecar \(sidecar of test\/e2e\/x\.test\.ts:1\): ResponseComplete list .* \| impersonated alice groups=\["dev","system:authenticated"\]/);
  });

  describe('over a run: registered logs, copied before their directories go', function () {
    let saved: string | undefined;
    let dir: string;
    let cpDir: string;
    let sidecarFile: string;

    beforeEach(async function () {
      saved = process.env[JOIN_DIR_VARIABLE];
      dir = mkdtempSync(path.join(tmpdir(), 'chaperone-audit-join-test-'));
      process.env[JOIN_DIR_VARIABLE] = path.join(dir, 'join');
      cpDir = path.join(dir, 'chaperone-cp-x');
      await mkdir(cpDir);
      sidecarFile = path.join(dir, 'sidecar.jsonl');
    });

    afterEach(async function () {
      if (saved === undefined) delete process.env[JOIN_DIR_VARIABLE];
      else process.env[JOIN_DIR_VARIABLE] = saved;
      await rm(dir, { recursive: true, force: true });
    });

    const lines = (events: JoinEvent[]) => events.map((e) => `${JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...e })}\n`).join('');

    async function run(apiServerEvents: JoinEvent[], sidecarEvents: JoinEvent[], options: { checkSchema?: boolean } = { checkSchema: false }) {
      registerControlPlane({ dir: cpDir, url: 'https://127.0.0.1:1' });
      await writeFile(path.join(cpDir, 'audit.log'), lines(apiServerEvents));
      await writeFile(sidecarFile, lines(sidecarEvents));
      const handle = registerSidecarAuditLog({ controlPlane: { dir: cpDir }, serviceAccount: SCOPED, file: sidecarFile });
      await preserveSidecarAuditLog(handle);
      await preserveControlPlaneLog({ dir: cpDir });
      await rm(sidecarFile);
      await rm(cpDir, { recursive: true });
      return runAuditJoin(options);
    }

    it('passes when every request joins', async function () {
      const id = nextId();
      const result = await run([apiServer(id)], [sidecar(id).event]);
      assert.equal(result?.ok, true, result?.report);
      assert.match(result.report, /1 requests under 1 scoped accounts joined with 1 sidecar logs/);
    });

    it('fails, naming the mismatch, when one does not', async function () {
      const id = nextId();
      const result = await run([apiServer(id), apiServer(nextId())], [sidecar(id).event]);
      assert.equal(result?.ok, false);
      assert.match(result.report, /no sidecar event/);
    });

    it('takes declarations, and says which were never used', async function () {
      const id = nextId();
      declareNoSidecarEvent(id, 'a scoped token used straight');
      declareNoSidecarEvent(nextId(), 'never sent');
      const result = await run([apiServer(id, { impersonatedUser: undefined })], []);
      assert.equal(result?.ok, true, result?.report);
      assert.match(result.report, /1 declared auditIDs were not found .*never sent/);
    });

    it('decodes every sidecar event with the API server\'s Go types, and fails on one they refuse (test/fixtures/audit-checker)', async function () {
      this.timeout(5 * 60_000); // the checker is built from the Go module proxy on first use
      const complete = (id: string, more: Record<string, unknown> = {}) =>
        ({ ...sidecar(id).event, level: 'Metadata', requestReceivedTimestamp: '2026-01-02T15:04:05.123456Z', stageTimestamp: '2026-01-02T15:04:05.223456Z', ...more }) as JoinEvent;
      const id = nextId();
      const good = await run([apiServer(id)], [complete(id)], {});
      assert.equal(good?.ok, true, good?.report);
      assert.match(good.report, /1 sidecar events decoded strictly with the API server's Go types \(test\/fixtures\/audit-checker\): 0 problems/);
      await mkdir(cpDir, { recursive: true });
      const other = nextId();
      const bad = await run([apiServer(other)], [complete(other, { user: { username: 'alice', userName: 'alice' }, stage: 'Finished' })], {});
      assert.equal(bad?.ok, false);
      assert.match(bad.report, /1 problems\n- 1 × unknown field "user.userName"/);
      assert.match(bad.report, /- 1 × unknown field "user.userName"\n {2}\S+audit\.jsonl:1$/m, 'where it is');
    });

    it('decodes every EventList an audit webhook receiver got, strictly, and fails on one the Go types refuse', async function () {
      this.timeout(5 * 60_000);
      const complete = (id: string, more: Record<string, unknown> = {}) =>
        ({ ...sidecar(id).event, level: 'Metadata', requestReceivedTimestamp: '2026-01-02T15:04:05.123456Z', stageTimestamp: '2026-01-02T15:04:05.223456Z', ...more }) as JoinEvent;
      const list = (items: JoinEvent[]) => JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items: items.map((e) => ({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...e })) });
      const id = nextId();
      const received = registerAuditWebhookReceiver();
      assert.ok(received);
      await writeFile(received, `${list([complete(id), complete(nextId())])}\n`);
      const good = await run([apiServer(id)], [complete(id)], {});
      assert.equal(good?.ok, true, good?.report);
      assert.match(good.report, /1 EventLists \(2 events\) that 1 audit webhook receivers got, decoded strictly the same way: 0 problems/);
      await mkdir(cpDir, { recursive: true });
      const other = nextId();
      await writeFile(received, `${list([complete(other, { stage: 'Finished' })])}\n${JSON.stringify({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...complete(other) })}\n`);
      const bad = await run([apiServer(other)], [complete(other)], {});
      assert.equal(bad?.ok, false);
      assert.match(bad.report, /stage "Finished"/);
      assert.match(bad.report, /kind "Event" where an EventList belongs\n {2}\S+eventlists\.jsonl:2$/m, 'a receiver gets EventLists only');
    });

    it('fails when a control plane\'s log is gone', async function () {
      registerControlPlane({ dir: cpDir, url: 'https://127.0.0.1:1' });
      await rm(cpDir, { recursive: true });
      const result = await runAuditJoin({ checkSchema: false });
      assert.equal(result?.ok, false);
      assert.match(result.report, /its audit log is gone/);
    });

    it('joins nothing in a run without a control plane', async function () {
      registerSidecarAuditLog({ file: sidecarFile });
      assert.equal(await runAuditJoin(), undefined);
    });
  });
});
