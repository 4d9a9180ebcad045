// The request path in-process, each stage a fake that records what it was asked: the order of the
// stages (guard and policy before any review, no forward without a decision and a token), the Status
// each failure is answered with, and the audit record each outcome leaves.
import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pino } from 'pino';
import { forbiddenBecause, serviceUnavailable, type Status } from '../../../lib/status.js';
import { AuthenticationFailed } from '../../../sidecar/authn/chain.js';
import type { Attributes, Decision } from '../../../sidecar/authz/review.js';
import type { RequestRecord } from '../../../sidecar/audit/record.js';
import { NotForwarded, UnauthorizedForward, UpstreamTimeout, type ForwardRequest } from '../../../sidecar/forward/http.js';
import type { UpgradeRequest } from '../../../sidecar/forward/upgrade.js';
import type { Identity } from '../../../sidecar/identity.js';
import { SidecarMetrics } from '../../../sidecar/metrics.js';
import { Pipeline, type PipelineOptions } from '../../../sidecar/pipeline.js';
import { waitFor } from '../../../local-cluster/wait.js';
import { writeHead } from '../../../lib/client-exchange.js';

const PEOPLE: Record<string, Identity> = {
  alice: { username: 'alice', groups: ['devs'], extra: {} },
  mallory: { username: 'mallory', groups: ['system:masters'], extra: {} },
  bob: { username: 'bob', groups: ['ops'], extra: {} },
};

/** What one request did to the stages. */
interface Trace {
  reviews: string[];
  policyChecks: string[];
  forwarded: ForwardRequest[];
  upgrades: UpgradeRequest[];
  records: RequestRecord[];
}

interface Knobs {
  /** The review's answer for "verb resource/subresource", default allowed. */
  decide: (identity: Identity, key: string) => Decision;
  /** The policy gate throws this for the person, if anything. */
  policy: (identity: Identity, verb: string) => Error | undefined;
  token: string | undefined;
  /** What the fake forwarder does with an authorized request. */
  forward: (request: ForwardRequest) => void;
}

function keyOf(attributes: Attributes): string {
  if ('nonResource' in attributes) return `${attributes.nonResource.verb} ${attributes.nonResource.path}`;
  const { verb, resource, subresource, name } = attributes.resource;
  return `${verb} ${resource}${subresource ? `/${subresource}` : ''}${name ? ` ${name}` : ''}`;
}

/** What the real forwarder says once the request's stream has left on a connected session. */
function leave(request: ForwardRequest): void {
  request.onOpened();
  request.onForwarded();
}

/** The API server's answer to an authorized request, as the real forwarder would relay it. */
function answerOk(request: ForwardRequest): void {
  leave(request);
  request.req.resume();
  request.req.once('end', () => {
    request.onBodySent();
    const body = Readable.from([Buffer.from('{"kind":"ConfigMap"}')]);
    request.onResponse({ statusCode: 200, headers: { 'content-type': 'application/json' }, body });
    writeHead(request.res, 200, { 'content-type': 'application/json' });
    body.pipe(request.res);
    request.res.once('finish', () => request.onUpstreamClosed?.());
  });
}

function defaults(): Knobs {
  return { decide: () => ({ allowed: true, reason: '' }), policy: () => undefined, token: 'scoped-token', forward: answerOk };
}

function harness(knobs: Knobs, maxUpgrades = 2) {
  const trace: Trace = { reviews: [], policyChecks: [], forwarded: [], upgrades: [], records: [] };
  const metrics = new SidecarMetrics();
  const options: PipelineOptions = {
    authenticators: {
      authenticate: (req) => {
        const name = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
        if (name === 'crash') throw new TypeError("Cannot read properties of undefined (reading 'claims')");
        const identity = name ? PEOPLE[name] : undefined;
        if (!identity) return Promise.reject(new AuthenticationFailed(name ? [{ method: 'oidc', reason: 'unknown token' }] : []));
        return Promise.resolve({ authenticated: { identity, method: 'oidc' }, failures: [] });
      },
    },
    reviewer: {
      review: (identity, attributes) => {
        trace.reviews.push(`${identity.username}: ${keyOf(attributes)}`);
        return Promise.resolve(knobs.decide(identity, keyOf(attributes)));
      },
    },
    guard: { allow: [], deny: ['bob'] },
    access: {
      mode: () => 'classic',
      checkNested: () => undefined,
      check: (identity, info) => {
        trace.policyChecks.push(`${identity.username}: ${info.verb}`);
        const refusal = knobs.policy(identity, info.verb);
        if (refusal) throw refusal;
      },
    },
    token: { bearerToken: () => knobs.token },
    http: {
      forward: (request) => {
        trace.forwarded.push(request);
        knobs.forward(request);
      },
    },
    upgrades: {
      forward: (upgrade) => {
        trace.upgrades.push(upgrade);
        upgrade.socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
        upgrade.onResponse(101);
        upgrade.socket.on('end', () => upgrade.socket.destroy()).resume();
        upgrade.socket.once('close', upgrade.onClose);
      },
      closeAll: () => undefined,
    },
    audit: { record: (record) => trace.records.push(record) },
    metrics,
    log: pino({ enabled: false }),
    upstreamTimeoutMs: 2000,
    maxRequestBodyBytes: 1024,
    maxUpgrades,
  };
  return { pipeline: new Pipeline(options), trace, metrics };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function send(server: Server, method: string, path: string, headers: OutgoingHttpHeaders = {}, body?: string): Promise<Answer> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { ...headers, ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** An upgrade request on a raw connection; the status line it is answered with. */
function sendUpgrade(server: Server, path: string, who: string): Promise<{ statusLine: string; close: () => void }> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${who}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    });
    socket.once('data', (chunk: Buffer) => resolve({ statusLine: chunk.toString('latin1').split('\r\n', 1)[0]!, close: () => socket.destroy() }));
    socket.on('error', reject);
  });
}

async function serve(pipeline: Pipeline): Promise<Server> {
  const server = createServer(pipeline.handle);
  server.on('upgrade', pipeline.handleUpgrade);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** The records are written when each response closes: after the client read it, shortly. */
async function recordsOf(trace: Trace, count: number): Promise<RequestRecord[]> {
  for (let i = 0; i < 200 && trace.records.length < count; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(trace.records.length, count, 'audit records written');
  return trace.records;
}

interface Case {
  name: string;
  method?: string;
  path?: string;
  who?: string;
  headers?: OutgoingHttpHeaders;
  body?: string;
  knobs?: Partial<Knobs>;
  status: number;
  reason?: Status['reason'];
  message?: RegExp;
  reviews: string[];
  policyChecks: string[];
  forwarded: boolean;
  record: Partial<Pick<RequestRecord, 'forwarded' | 'responseCode' | 'crashed'>> & { error?: RegExp };
}

const GET_CM = '/api/v1/namespaces/team-a/configmaps/settings';

const CASES: Case[] = [
  {
    name: 'an authorized request is forwarded, once, as the person, with the scoped token',
    who: 'alice',
    status: 200,
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: true,
    record: { forwarded: true, responseCode: 200 },
  },
  {
    name: 'no credential: 401 before anything else, the record says why',
    status: 401,
    reason: 'Unauthorized',
    message: /^Unauthorized$/,
    reviews: [],
    policyChecks: [],
    forwarded: false,
    record: { forwarded: false, responseCode: 401, error: /^authentication failed: no credentials$/ },
  },
  {
    name: 'a bad credential: the client reads only Unauthorized, the record reads why',
    who: 'stranger',
    status: 401,
    reason: 'Unauthorized',
    message: /^Unauthorized$/,
    reviews: [],
    policyChecks: [],
    forwarded: false,
    record: { responseCode: 401, error: /oidc: unknown token/ },
  },
  {
    name: 'the guard refuses system:masters before any review or policy check',
    who: 'mallory',
    status: 403,
    reason: 'Forbidden',
    message: /^the group "system:masters" from a oidc identity is reserved for the cluster itself/,
    reviews: [],
    policyChecks: [],
    forwarded: false,
    record: { forwarded: false, responseCode: 403 },
  },
  {
    name: "the guard's deny list refuses a person before any review",
    who: 'bob',
    status: 403,
    message: /never impersonates the user "bob"/,
    reviews: [],
    policyChecks: [],
    forwarded: false,
    record: { responseCode: 403 },
  },
  {
    name: 'the access policy refuses before any review',
    who: 'alice',
    knobs: { policy: () => forbiddenBecause("chaperone's access policy for this namespace does not let it act for group \"devs\"") },
    status: 403,
    message: /access policy/,
    reviews: [],
    policyChecks: ['alice: get'],
    forwarded: false,
    record: { forwarded: false, responseCode: 403 },
  },
  {
    name: 'a denied review is a 403 worded as the API server words it, and nothing is forwarded',
    who: 'alice',
    knobs: { decide: () => ({ allowed: false, reason: 'no RBAC policy matched' }) },
    status: 403,
    reason: 'Forbidden',
    message: /^configmaps "settings" is forbidden: User "alice" cannot get resource "configmaps" in API group "" in the namespace "team-a": no RBAC policy matched$/,
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: false,
    record: { forwarded: false, responseCode: 403 },
  },
  {
    name: 'a review that could not be had is a 503, never a forward',
    who: 'alice',
    knobs: {
      decide: () => {
        throw serviceUnavailable('the API server could not be asked');
      },
    },
    status: 503,
    reason: 'ServiceUnavailable',
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: false,
    record: { forwarded: false, responseCode: 503 },
  },
  {
    name: 'no service-account token: 503 after the decision, never a forward without it',
    who: 'alice',
    knobs: { token: undefined },
    status: 503,
    message: /no service-account token/,
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: false,
    record: { forwarded: false, responseCode: 503 },
  },
  {
    name: 'exec opened with GET is reviewed twice, get and create, as the API server does; a refused create stops it',
    who: 'alice',
    path: '/api/v1/namespaces/team-a/pods/web/exec?command=sh',
    knobs: { decide: (_identity, key) => ({ allowed: !key.startsWith('create'), reason: '' }) },
    status: 403,
    message: /cannot create resource "pods\/exec"/,
    reviews: ['alice: get pods/exec web', 'alice: create pods/exec web'],
    policyChecks: ['alice: get', 'alice: create'],
    forwarded: false,
    record: { forwarded: false, responseCode: 403 },
  },
  {
    name: 'a request changed on its way out is stopped: 500, and the record says it was not forwarded',
    who: 'alice',
    knobs: {
      forward: (request) => {
        leave(request);
        request.onError(new UnauthorizedForward('identity header impersonate-user is not the one chaperone set'));
        request.onUpstreamClosed?.();
      },
    },
    status: 500,
    reason: 'InternalError',
    message: /^chaperone stopped a request on its way out that was not the one it authorized$/,
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: true,
    record: { forwarded: false, responseCode: 500, error: /impersonate-user is not the one chaperone set/ },
  },
  {
    name: 'an API server that does not answer in time: 504',
    who: 'alice',
    knobs: {
      forward: (request) => {
        leave(request);
        request.onError(new UpstreamTimeout('the API server did not answer within 2000ms'));
        request.onUpstreamClosed?.();
      },
    },
    status: 504,
    reason: 'Timeout',
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: true,
    record: { forwarded: true, responseCode: 504 },
  },
  {
    name: 'a connection to the API server that fails once the request left (it may have run): 503, forwarded',
    who: 'alice',
    knobs: {
      forward: (request) => {
        leave(request);
        request.onError(new Error('read ECONNRESET'));
        request.onUpstreamClosed?.();
      },
    },
    status: 503,
    message: /^chaperone could not reach the API server: read ECONNRESET$/,
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: true,
    record: { forwarded: true, responseCode: 503 },
  },
  {
    name: 'an API server that cannot be reached: 503, and the record says it was not forwarded',
    who: 'alice',
    knobs: {
      forward: (request) => {
        request.onOpened();
        request.onError(new NotForwarded(new Error('connect ECONNREFUSED 127.0.0.1:6443')));
        request.onUpstreamClosed?.();
      },
    },
    status: 503,
    reason: 'ServiceUnavailable',
    message: /^chaperone could not reach the API server: connect ECONNREFUSED 127.0.0.1:6443$/,
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: true,
    record: { forwarded: false, responseCode: 503, crashed: undefined },
  },
  {
    name: 'a stream the API server refused after it left (REFUSED_STREAM: nothing of it ran): 503, not forwarded',
    who: 'alice',
    knobs: {
      forward: (request) => {
        leave(request);
        request.onError(new NotForwarded(new Error('stream reset: REFUSED_STREAM')));
        request.onUpstreamClosed?.();
      },
    },
    status: 503,
    message: /^chaperone could not reach the API server: stream reset: REFUSED_STREAM$/,
    reviews: ['alice: get configmaps settings'],
    policyChecks: ['alice: get'],
    forwarded: true,
    record: { forwarded: false, responseCode: 503 },
  },
  {
    name: 'a failure nobody planned for: a 500 that says nothing of its cause, recorded as a crash',
    who: 'crash',
    status: 500,
    reason: 'InternalError',
    message: /^chaperone failed to handle the request$/,
    reviews: [],
    policyChecks: [],
    forwarded: false,
    record: { forwarded: false, responseCode: 500, crashed: true, error: /reading 'claims'/ },
  },
  {
    name: 'kubectl --as: the person may impersonate, then the one impersonated is reviewed and forwarded',
    who: 'alice',
    headers: { 'impersonate-user': 'carol' },
    knobs: { decide: (identity) => ({ allowed: identity.username !== 'mallory', reason: '' }) },
    status: 200,
    reviews: ['alice: impersonate users carol', 'carol: get configmaps settings'],
    policyChecks: ['carol: get'],
    forwarded: true,
    record: { forwarded: true, responseCode: 200 },
  },
  {
    name: 'kubectl --as someone the guard refuses: refused after the impersonation review, before the request is reviewed',
    who: 'alice',
    headers: { 'impersonate-user': 'bob' },
    status: 403,
    message: /never impersonates the user "bob"/,
    reviews: ['alice: impersonate users bob'],
    policyChecks: [],
    forwarded: false,
    record: { forwarded: false, responseCode: 403 },
  },
  {
    name: 'kubectl --as without the right to impersonate: 403, nothing else reviewed',
    who: 'alice',
    headers: { 'impersonate-user': 'carol' },
    knobs: { decide: (_identity, key) => ({ allowed: !key.startsWith('impersonate'), reason: '' }) },
    status: 403,
    message: /cannot impersonate/,
    reviews: ['alice: impersonate users carol'],
    policyChecks: [],
    forwarded: false,
    record: { forwarded: false, responseCode: 403 },
  },
  {
    name: 'a full URL as the request target is refused before authentication',
    who: 'alice',
    path: 'https://elsewhere.example/api/v1/namespaces/team-a/configmaps/settings',
    status: 400,
    reason: 'BadRequest',
    reviews: [],
    policyChecks: [],
    forwarded: false,
    record: { forwarded: false, responseCode: 400 },
  },
];

describe('sidecar/pipeline: the stages in order, with fakes', function () {
  for (const c of CASES) {
    it(c.name, async function () {
      const { pipeline, trace } = harness({ ...defaults(), ...c.knobs });
      const server = await serve(pipeline);
      try {
        const answer = await send(server, c.method ?? 'GET', c.path ?? GET_CM, { ...c.headers, ...(c.who ? { authorization: `Bearer ${c.who}` } : {}) }, c.body);
        assert.equal(answer.status, c.status, answer.body);
        if (c.status >= 400) {
          const status = JSON.parse(answer.body) as Status;
          assert.equal(status.kind, 'Status');
          assert.equal(status.code, c.status);
          if (c.reason) assert.equal(status.reason, c.reason);
          if (c.message) assert.match(status.message, c.message);
        }
        assert.deepEqual(trace.reviews, c.reviews, 'reviews made');
        assert.deepEqual(trace.policyChecks, c.policyChecks, 'policy checks made');
        assert.equal(trace.forwarded.length, c.forwarded ? 1 : 0, 'forwarded');
        const [record] = await recordsOf(trace, 1);
        assert.equal(answer.headers['audit-id'] ?? record!.auditID, record!.auditID, 'the client reads the Audit-Id of the record');
        const { error, ...fields } = c.record;
        for (const [field, value] of Object.entries(fields)) assert.equal(record![field as keyof RequestRecord], value, field);
        if (error) assert.match(record!.error ?? '', error);
      } finally {
        server.close();
      }
    });
  }

  it('keeps every review in the record, in order: the impersonation checks, the request, a compound create; the last settles it', async function () {
    const { pipeline, trace } = harness({ ...defaults(), decide: (identity, key) => ({ allowed: !(identity.username === 'carol' && key.startsWith('create')), reason: `said for ${key}` }) });
    const server = await serve(pipeline);
    try {
      const exec = '/api/v1/namespaces/team-a/pods/web/exec?command=ls';
      const answer = await send(server, 'GET', exec, { authorization: 'Bearer alice', 'impersonate-user': 'carol' });
      assert.equal(answer.status, 403, answer.body);
      const [record] = await recordsOf(trace, 1);
      assert.deepEqual(
        record!.reviews.map((r) => `${r.user}: ${keyOf(r.attributes)} ${r.decision.allowed ? 'allow' : 'forbid'}`),
        ['alice: impersonate users carol allow', 'carol: get pods/exec web allow', 'carol: create pods/exec web forbid'],
      );
      assert.deepEqual(record!.decision, { allowed: false, reason: 'said for create pods/exec web' });
    } finally {
      server.close();
    }
  });

  it('forwards with exactly the identity it decided on, the scoped token and its own Audit-Id, never the client’s headers for them', async function () {
    const { pipeline, trace } = harness(defaults());
    const server = await serve(pipeline);
    try {
      await send(server, 'GET', GET_CM, { authorization: 'Bearer alice', 'audit-id': 'chosen-by-client', 'x-remote-user': 'root' });
      const [forwarded] = trace.forwarded;
      const [record] = await recordsOf(trace, 1);
      const chosen = { 'impersonate-user': 'alice', 'impersonate-group': ['devs'], authorization: 'Bearer scoped-token', 'audit-id': record!.auditID };
      assert.deepEqual(forwarded!.identityHeaders, chosen);
      for (const [name, value] of Object.entries(chosen)) assert.deepEqual(forwarded!.headers[name], value, name);
      assert.notEqual(record!.auditID, 'chosen-by-client');
      assert.equal(forwarded!.headers['x-remote-user'], undefined);
      assert.deepEqual(record!.impersonated, { username: 'alice', groups: ['devs'], extra: {} });
    } finally {
      server.close();
    }
  });

  it('counts a request whose client went away before any answer as the API server does, a 500, not as 200', async function () {
    const { pipeline, trace, metrics } = harness({ ...defaults(), forward: leave });
    const server = await serve(pipeline);
    const { port } = server.address() as AddressInfo;
    try {
      const gone = request({ host: '127.0.0.1', port, path: GET_CM, headers: { authorization: 'Bearer alice' }, agent: false });
      gone.on('error', () => undefined);
      gone.end();
      for (let i = 0; i < 200 && trace.forwarded.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      gone.destroy();
      const [record] = await recordsOf(trace, 1);
      assert.equal(record!.responseCode, 500);
      const counted = await metrics.requests.get();
      assert.deepEqual(counted.values.map((v) => [v.labels.code, v.value]), [['500', 1]]);
    } finally {
      server.close();
    }
  });

  it('a new audit recorder takes the requests that arrive after it; those under way finish with the one they began with', async function () {
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const { pipeline, trace } = harness({
      ...defaults(),
      forward: (request) => {
        if (request.req.url?.endsWith('/slow')) void held.then(() => answerOk(request));
        else answerOk(request);
      },
    });
    const server = await serve(pipeline);
    const second: RequestRecord[] = [];
    try {
      const slow = send(server, 'GET', `${GET_CM}/slow`, { authorization: 'Bearer alice' });
      await waitFor('the slow request to be forwarded', () => trace.forwarded.length === 1);
      let drained = false;
      const drainedPromise = pipeline.useAudit({ record: (record) => second.push(record) }).then(() => (drained = true));
      await send(server, 'GET', GET_CM, { authorization: 'Bearer alice' });
      await waitFor('the new recorder to record the new request', () => second.length === 1);
      assert.equal(trace.records.length, 0, 'the first recorder has recorded nothing yet');
      assert.equal(drained, false, 'the first recorder still has a request under way');
      release();
      await slow;
      await drainedPromise;
      assert.deepEqual(trace.records.map((r) => r.requestURI), [`${GET_CM}/slow`]);
      assert.deepEqual(second.map((r) => r.requestURI), [GET_CM]);
    } finally {
      server.close();
    }
  });

  it('refuses an upgrade past --max-upgrades with 429 before deciding, and relays the others once authorized', async function () {
    const { pipeline, trace } = harness(defaults(), 1);
    const server = await serve(pipeline);
    const path = '/api/v1/namespaces/team-a/pods/web/exec?command=sh';
    try {
      const first = await sendUpgrade(server, path, 'alice');
      assert.equal(first.statusLine, 'HTTP/1.1 101 Switching Protocols');
      const second = await sendUpgrade(server, path, 'alice');
      assert.match(second.statusLine, /^HTTP\/1\.1 429 /);
      assert.equal(trace.upgrades.length, 1);
      assert.deepEqual(trace.reviews, ['alice: get pods/exec web', 'alice: create pods/exec web'], 'the refused one was never reviewed');
      assert.equal(trace.upgrades[0]!.headers.authorization, 'Bearer scoped-token');
      first.close();
      second.close();
      const records = await recordsOf(trace, 2);
      assert.deepEqual(records.map((r) => [r.responseCode, r.forwarded]).sort(), [[101, true], [429, false]]);
    } finally {
      server.close();
    }
  });
});
