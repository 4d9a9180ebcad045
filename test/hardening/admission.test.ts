// AdmissionReview bodies through the injector (injector/review.ts and mutate.ts, and the HTTPS shell
// in injector/server.ts): the golden pods, mutated anywhere (values of other types, keys that are
// properties of every JavaScript object, removed and repeated entries), and garbage bytes. Whatever
// arrives, the answer is a well-formed AdmissionReview; any patch applies cleanly and yields a pod
// the sidecar keeps safe; and a pod the real API server accepts stays one it accepts once injected.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { answerReview, MalformedReview, type AdmissionReviewOut } from '../../injector/review.js';
import { isUnderServiceAccountDir, projectsServiceAccountToken } from '../../injector/mutate.js';
import { PROXY_ENV, SIDECAR_NAME } from '../../injector/proxy.js';
import { goldenCases } from '../support/injector-goldens.js';
import { sharedControlPlane } from '../support/shared.js';
import { adminClients, createNamespace, createServiceAccount, type AdminClients } from '../../local-cluster/kube.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { admissionReview, LABELLED_NAMESPACE, silentLog, startTestInjector, testConfig, testNamespaces, type TestInjector } from '../unit/injector/helpers.js';
import { figure, fuzz } from './support/knobs.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const SEEDS = goldenCases().map((c) => JSON.parse(JSON.stringify(c.input)) as Json);
const config = testConfig();
const context = { config, namespaceLabels: testNamespaces, log: silentLog };

/** Where to go: at each level a number picks a key or an index; the walk stops where the numbers do. */
type Walk = number[];
type Mutation =
  | { kind: 'set'; walk: Walk; value: Json }
  | { kind: 'remove'; walk: Walk }
  | { kind: 'repeat'; walk: Walk }
  | { kind: 'add-key'; walk: Walk; key: string; value: Json };

const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf'];
const tricky = fc.constantFrom<Json>(
  '',
  'chaperone',
  'chaperone-upstream',
  'chaperone-api-access',
  'kube-api-access-x',
  '/var/run/secrets/kubernetes.io/serviceaccount',
  '/var/run/secrets/kubernetes.io/serviceaccount/',
  '/var/run/secrets/kubernetes.io/serviceaccount/token',
  '/var/run/secrets/chaperone/upstream',
  'KUBERNETES_SERVICE_HOST',
  '$(KUBERNETES_SERVICE_HOST)',
  'chaperone.dev/status',
  'enabled',
  'disabled',
  'native',
  'classic',
  'Always',
  true,
  false,
  0,
  -1,
  1e308,
  null,
  [],
  {},
  { serviceAccountToken: { path: 'token' } },
  { projected: { sources: [{ serviceAccountToken: { path: 'token' } }] } },
);
const jsonValue: fc.Arbitrary<Json> = fc.oneof({ weight: 2, arbitrary: tricky }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json> });
const walk = fc.array(fc.nat(), { maxLength: 8 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), walk, value: jsonValue }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), walk }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('repeat' as const), walk }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('add-key' as const), walk, key: fc.oneof(fc.constantFrom(...PROTOTYPE_KEYS), fc.string({ maxLength: 12 })), value: jsonValue }) },
);

function isContainer(value: Json | undefined): value is Json[] | { [key: string]: Json } {
  return typeof value === 'object' && value !== null;
}

function keysOf(node: Json[] | { [key: string]: Json }): (string | number)[] {
  return Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
}

/** Applies one mutation to a deep copy; JSON.parse makes "__proto__" an own key, as the API server's JSON would. */
function mutate(document: Json, m: Mutation): Json {
  const root = JSON.parse(JSON.stringify(document)) as Json;
  let parent: Json[] | { [key: string]: Json } | undefined;
  let key: string | number | undefined;
  let node: Json = root;
  for (const step of m.walk) {
    if (!isContainer(node) || keysOf(node).length === 0) break;
    const keys = keysOf(node);
    parent = node;
    key = keys[step % keys.length]!;
    node = (node as Record<string | number, Json>)[key]!;
  }
  const put = (value: Json) => {
    if (parent === undefined) return;
    Object.defineProperty(parent, key!, { value, enumerable: true, writable: true, configurable: true });
  };
  if (m.kind === 'set') put(m.value);
  if (m.kind === 'remove' && parent !== undefined) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete (parent as Record<string, Json>)[key as string];
  }
  if (m.kind === 'repeat' && Array.isArray(parent)) parent.splice(key as number, 0, JSON.parse(JSON.stringify(node)) as Json);
  if (m.kind === 'add-key' && isContainer(node) && !Array.isArray(node)) {
    Object.defineProperty(node, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
  }
  return JSON.parse(JSON.stringify(root)) as Json;
}

const mutatedPod = fc.tuple(fc.constantFrom(...SEEDS), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([seed, ms]) => ms.reduce(mutate, seed));

/** The parts of the review a client could get wrong, around a pod. */
const envelope = fc.record({
  uid: fc.oneof(fc.uuid(), fc.constant(''), fc.string({ maxLength: 8 })),
  operation: fc.constantFrom('CREATE', 'CREATE', 'CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'create'),
  subResource: fc.constantFrom(undefined, undefined, 'ephemeralcontainers', 'status'),
  namespace: fc.constantFrom(LABELLED_NAMESPACE, LABELLED_NAMESPACE, 'plain', 'kube-system', ''),
  dryRun: fc.boolean(),
});

/** The answer has the shape the API server requires, whatever came in. */
function assertWellFormed(out: AdmissionReviewOut, uid: string): void {
  assert.equal(out.apiVersion, 'admission.k8s.io/v1');
  assert.equal(out.kind, 'AdmissionReview');
  assert.equal(out.response.uid, uid, 'the request uid comes back');
  assert.equal(typeof out.response.allowed, 'boolean');
  if (out.response.allowed) {
    assert.equal(out.response.status, undefined);
    if (out.response.patch !== undefined) assert.equal(out.response.patchType, 'JSONPatch');
  } else {
    assert.ok(out.response.status && [400, 403, 500, 503].includes(out.response.status.code), JSON.stringify(out.response.status));
    assert.ok(out.response.status.message.length > 0 && typeof out.response.status.reason === 'string');
    assert.equal(out.response.patch, undefined, 'a denial carries no patch');
  }
}

function patchOf(out: AdmissionReviewOut): jsonpatch.Operation[] {
  if (out.response.patch === undefined) return [];
  const decoded = JSON.parse(Buffer.from(out.response.patch, 'base64').toString('utf8')) as unknown;
  assert.ok(Array.isArray(decoded), 'the patch is a JSON array');
  return decoded as jsonpatch.Operation[];
}

/** As the API server applies it: every operation valid against the pod, the input left alone. */
function applied(pod: Json, patch: jsonpatch.Operation[]): V1Pod {
  return jsonpatch.applyPatch(jsonpatch.deepClone(pod) as V1Pod, patch, true, false).newDocument;
}

/** What the sidecar's safety rests on, checked without the injector's own helpers where possible. */
function assertSafelyInjected(pod: V1Pod): void {
  const spec = pod.spec!;
  const all: V1Container[] = [...(spec.initContainers ?? []), ...spec.containers];
  assert.equal(all.filter((c) => c.name === SIDECAR_NAME).length, 1, 'exactly one sidecar');
  assert.equal(spec.automountServiceAccountToken, false, 'no automounted token');
  // Names may repeat in what came in (the API server validates after admission, and refuses that):
  // a mount must reach no token under any volume of its name.
  const volumes: V1Volume[] = spec.volumes ?? [];
  for (const c of all.filter((x) => x.name !== SIDECAR_NAME)) {
    for (const mount of c.volumeMounts ?? []) {
      const tokens = volumes.filter((v) => v.name === mount.name && projectsServiceAccountToken(v));
      assert.equal(tokens.length, 0, `${c.name} mounts ${mount.name}, which holds a token`);
    }
    assert.deepEqual(c.env?.slice(0, PROXY_ENV.length), PROXY_ENV, `${c.name} is pointed at the proxy`);
    const saMounts = (c.volumeMounts ?? []).filter((m) => isUnderServiceAccountDir(m.mountPath));
    assert.equal(saMounts.length, 1, `${c.name}: one mount of the service-account directory, the stand-in`);
  }
}

async function review(body: unknown): Promise<AdmissionReviewOut | 'malformed'> {
  try {
    return await answerReview(body, context);
  } catch (err) {
    if (err instanceof MalformedReview) return 'malformed';
    throw err;
  }
}

describe('hardening: AdmissionReview bodies through the injector', function () {
  this.timeout(0);

  it('mutated golden pods: a well-formed answer, a patch that applies, a pod kept safe, injected once (property)', async function () {
    const outcomes = { injected: 0, denied: 0, untouched: 0 };
    await fuzz(
      this,
      fc.asyncProperty(mutatedPod, envelope, async (pod, e) => {
        const body = admissionReview({ object: pod, uid: e.uid, operation: e.operation, namespace: e.namespace, dryRun: e.dryRun, ...(e.subResource ? { subResource: e.subResource } : {}) });
        const out = await review(body);
        if (out === 'malformed') {
          assert.equal(e.uid, '', 'only a review without a uid is not a review');
          return;
        }
        assertWellFormed(out, e.uid);
        const patch = patchOf(out);
        if (!out.response.allowed) outcomes.denied++;
        if (patch.length === 0) {
          if (out.response.allowed) outcomes.untouched++;
          return;
        }
        const injected = applied(pod, patch);
        assertSafelyInjected(injected);
        const again = await review(admissionReview({ object: injected, uid: e.uid || 'again' }));
        assert.notEqual(again, 'malformed');
        assert.deepEqual(patchOf(again as AdmissionReviewOut), [], 'a second pass changes nothing');
        outcomes.injected++;
      }),
      { short: 1500, long: 50_000 },
    );
    figure(`admission outcomes: ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.injected > 0 && outcomes.denied > 0, `both injections and denials were tried: ${JSON.stringify(outcomes)}`);
  });

  for (const [what, spec, field] of [
    ['a container that is a list', { containers: [[]] }, 'spec.containers[0] is not an object'],
    ['a container without a name', { containers: [{ image: 'x' }] }, 'spec.containers[0].name is not a string'],
    ['mounts that are not a list', { containers: [{ name: 'app', volumeMounts: 'x' }] }, 'spec.containers[0].volumeMounts is not a list'],
    ['an env entry that is a string', { containers: [{ name: 'app', env: ['X=1'] }] }, 'spec.containers[0].env[0] is not an object'],
    ['a volume that is null', { containers: [{ name: 'app' }], volumes: [null] }, 'spec.volumes[0] is not an object'],
  ] as const) {
    it(`refuses a pod the API server could not have sent (${what}), naming the field`, async function () {
      const out = await review(admissionReview({ object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec } }));
      assert.notEqual(out, 'malformed');
      assert.equal((out as AdmissionReviewOut).response.allowed, false);
      assert.equal((out as AdmissionReviewOut).response.status?.code, 400);
      assert.match((out as AdmissionReviewOut).response.status!.message, new RegExp(field.replace(/[[\].]/g, '\\$&')));
    });
  }

  it('any JSON at all: a well-formed answer or a refusal to read it as a review, never a crash (property)', async function () {
    await fuzz(
      this,
      fc.asyncProperty(fc.jsonValue({ maxDepth: 5 }), fc.uuid(), async (anything, uid) => {
        const out = await review(anything);
        if (out !== 'malformed') assert.fail('a value that is no review was answered');
        const inside = await review(admissionReview({ object: anything, uid }));
        assert.notEqual(inside, 'malformed');
        assertWellFormed(inside as AdmissionReviewOut, uid);
        assert.equal((inside as AdmissionReviewOut).response.patch, undefined, 'no patch for something that is no pod');
      }),
      { short: 1000, long: 50_000 },
    );
  });

  describe('over HTTPS (injector/server.ts)', function () {
    let injector: TestInjector;

    before(async function () {
      injector = await startTestInjector(testNamespaces);
    });

    after(async function () {
      await injector?.stop();
    });

    it('bytes of a review flipped, cut and repeated: a 200 review or a 400, and it keeps serving (property)', async function () {
      const valid = Buffer.from(JSON.stringify(admissionReview({ object: SEEDS[0], uid: 'bytes' })));
      const edit = fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }), how: fc.constantFrom('flip', 'cut', 'repeat', 'nest') });
      await fuzz(
        this,
        fc.asyncProperty(fc.array(edit, { minLength: 1, maxLength: 6 }), async (edits) => {
          let body = valid;
          for (const { at, byte, how } of edits) {
            const i = at % body.length;
            if (how === 'flip') body = Buffer.concat([body.subarray(0, i), Buffer.from([byte]), body.subarray(i + 1)]);
            if (how === 'cut') body = body.subarray(0, i);
            if (how === 'repeat') body = Buffer.concat([body.subarray(0, i), body.subarray(i, i + 64), body.subarray(i)]);
            if (how === 'nest') body = Buffer.concat([Buffer.from('['.repeat(byte * 40)), body, Buffer.from(']'.repeat(byte * 40))]);
            if (body.length === 0) body = Buffer.from(' ');
          }
          const response = await rawRequest(`${injector.url}/mutate`, { method: 'POST', ca: injector.caPem, headers: { 'content-type': 'application/json' }, body: body.toString('latin1') });
          assert.ok([200, 400].includes(response.status), `status ${response.status}: ${response.body.slice(0, 300)}`);
          if (response.status === 200) assert.equal((JSON.parse(response.body) as AdmissionReviewOut).kind, 'AdmissionReview');
        }),
        { short: 150, long: 5000 },
      );
      assert.equal((await rawRequest(`${injector.url}/healthz`, { ca: injector.caPem })).status, 200);
    });
  });

  describe('a pod the API server accepts stays one it accepts once injected (server-side dry run)', function () {
    let clients: AdminClients;
    let namespace: string;

    before(async function () {
      this.timeout(15 * 60_000);
      clients = adminClients(await sharedControlPlane());
      namespace = await createNamespace(clients, 'hardening-admission');
      const accounts = new Set([config.serviceAccount, 'default']);
      for (const seed of SEEDS) {
        const spec = (seed as { spec?: { serviceAccountName?: string } }).spec;
        if (spec?.serviceAccountName) accounts.add(spec.serviceAccountName);
      }
      for (const account of accounts) if (account !== 'default') await createServiceAccount(clients, namespace, account);
    });

    /** The API server's verdict on creating this pod, without storing it. */
    async function accepted(pod: V1Pod): Promise<{ ok: boolean; why: string }> {
      const body = { ...pod, metadata: { ...pod.metadata, namespace } };
      try {
        await clients.core.createNamespacedPod({ namespace, body, dryRun: 'All' });
        return { ok: true, why: '' };
      } catch (err) {
        return { ok: false, why: (err as Error).message.slice(0, 400) };
      }
    }

    // Only what the API server itself could have sent: the same types, other values.
    const sameTypeValue = (current: Json): fc.Arbitrary<Json> =>
      typeof current === 'string'
        ? fc.oneof(fc.constantFrom('chaperone', 'chaperone-upstream', 'chaperone-api-access', 'kube-api-access-x', 'app', 'x'.repeat(63), '/var/run/secrets/kubernetes.io/serviceaccount', '/data'), fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/))
        : typeof current === 'boolean'
          ? fc.boolean()
          : typeof current === 'number'
            ? fc.integer({ min: 0, max: 65535 })
            : fc.constant(current);

    it('a golden pod with a value changed, a list entry removed or repeated (property)', async function () {
      const tally = { compared: 0, rejectedBefore: 0 };
      const typed = fc
        .tuple(fc.constantFrom(...SEEDS), walk, fc.constantFrom('set', 'remove', 'repeat'))
        .chain(([seed, w, kind]) => {
          let node: Json = seed;
          for (const step of w) {
            if (!isContainer(node) || keysOf(node).length === 0) break;
            const keys = keysOf(node);
            node = (node as Record<string | number, Json>)[keys[step % keys.length]!]!;
          }
          return sameTypeValue(node).map((value) => mutate(seed, kind === 'set' ? { kind, walk: w, value } : { kind, walk: w }));
        });
      await fuzz(
        this,
        fc.asyncProperty(typed, async (pod) => {
          const before = await accepted(pod as V1Pod);
          const out = await review(admissionReview({ object: pod }));
          assert.notEqual(out, 'malformed');
          const answer = out as AdmissionReviewOut;
          if (!before.ok) {
            tally.rejectedBefore++;
            return;
          }
          tally.compared++;
          if (!answer.response.allowed) return; // a refusal keeps the cluster as it was
          const after = await accepted(applied(pod, patchOf(answer)));
          assert.ok(after.ok, `the API server accepts the pod but not the injected one: ${after.why}`);
        }),
        { short: 15, long: 400 },
      );
      figure(`admission dry runs: ${JSON.stringify(tally)}`);
    });
  });
});
