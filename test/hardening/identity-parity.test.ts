// Identity parity with the API server, credential by credential: the same bearer token goes to a real
// kube-apiserver and to a sidecar configured alike, and "who am I?" (a SelfSubjectReview) must come
// back with the same identity from both, or the sidecar must refuse. Every case also says what the API
// server does with it, so a refusal on purpose (where the API server's own reading is surprising) is
// written down as one, and a change in either reading fails here.
//
// Token webhooks: a scripted webhook answers each token with the exact bytes the case chooses, to the
// API server and to the sidecar alike, once for a control plane asking in v1 and once for v1beta1.
// JWTs: issuers whose keys the API server trusts sign exact bytes (duplicate members, claim names in
// other letter cases, odd types and numbers) that no JWT library would write.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { createCA, issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { SERVICE_ACCOUNT_ISSUER } from '../../local-cluster/control-plane.js';
import { grantClusterWide, serviceAccountSubject } from '../../local-cluster/kube.js';
import { rawRequest, type RawResponse, type TestSidecar } from '../../local-cluster/sidecar.js';
import { withControlPlane, withControlPlaneAndSidecar, withSidecar } from '../support/fixtures.js';

const SELF_SUBJECT_REVIEW = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const REVIEW_BODY = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
/** The API server's audiences: --api-audiences is unset, so its service-account issuer. */
const API_AUDIENCE = SERVICE_ACCOUNT_ISSUER;
const EXTRA = 'example.com/team';

interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[] | null>;
}

interface Outcome {
  status: number;
  user?: UserInfo;
  body: string;
}

async function whoAmI(url: string, ca: string, token: string): Promise<Outcome> {
  const response: RawResponse = await rawRequest(`${url}${SELF_SUBJECT_REVIEW}`, {
    method: 'POST',
    ca,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: REVIEW_BODY,
  });
  if (response.status !== 201) return { status: response.status, body: response.body };
  return { status: 201, user: (JSON.parse(response.body) as { status?: { userInfo?: UserInfo } }).status?.userInfo ?? {}, body: response.body };
}

/** JSON text written member by member, so that a case can repeat a name or put a raw value anywhere. */
class Json {
  constructor(readonly text: string) {}
}
const raw = (text: string) => new Json(text);
const text = (value: unknown): string => (value instanceof Json ? value.text : JSON.stringify(value));
const members = (...entries: [string, unknown][]): Json => raw(`{${entries.map(([name, value]) => `${JSON.stringify(name)}:${text(value)}`).join(',')}}`);

type Expectation = { api: 'accepts' | 'refuses'; sidecar?: 'same' | 'refuses' };

/** The API server decides as the case says; the sidecar gives the same identity or the same refusal, or refuses where the case says so. */
function assertVerdicts(straight: Outcome, proxied: Outcome, expectation: Expectation): void {
  if (expectation.api === 'accepts') assert.equal(straight.status, 201, `the API server accepts it: ${straight.body}`);
  else assert.equal(straight.status, 401, `the API server refuses it: ${straight.body}`);
  if (expectation.sidecar === 'refuses' || expectation.api === 'refuses') {
    assert.equal(proxied.status, 401, `the sidecar refuses it: ${proxied.body}`);
    return;
  }
  assert.equal(proxied.status, 201, `the sidecar accepts it as the API server does: ${proxied.body}`);
  assert.deepEqual(proxied.user, straight.user, 'the same identity');
}

// ---------------------------------------------------------------------------------------------------
// Token webhooks

interface Scripted {
  status?: number;
  /** null: no Content-Type at all. */
  contentType?: string | null;
  body: string | Buffer;
}

interface AskedReview {
  apiVersion?: unknown;
  kind?: unknown;
  spec?: { token?: string; audiences?: string[] };
}

interface ScriptedWebhook {
  /** How each token is answered; asked is the apiVersion it was asked in. */
  script(token: string, answer: (asked: string) => Scripted | Json): void;
  /** Every review asked about a token, in order. */
  asked(token: string): AskedReview[];
  kubeconfig(): string;
  stop(): Promise<void>;
}

async function startScriptedWebhook(): Promise<ScriptedWebhook> {
  const ca = createCA({ commonName: 'parity-webhook-ca' });
  const serving = issueCertificate(ca, { commonName: 'parity-webhook', usage: 'server', ipAddresses: ['127.0.0.1'] });
  const scripts = new Map<string, (asked: string) => Scripted | Json>();
  const asked = new Map<string, AskedReview[]>();
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const review = JSON.parse(body) as AskedReview;
      const token = review.spec?.token ?? '';
      asked.set(token, [...(asked.get(token) ?? []), review]);
      const script = scripts.get(token);
      const answer = script ? script(String(review.apiVersion)) : members(['apiVersion', review.apiVersion], ['kind', 'TokenReview'], ['status', { authenticated: false }]);
      const scripted: Scripted = answer instanceof Json ? { body: answer.text } : answer;
      const headers: Record<string, string> = {};
      if (scripted.contentType !== null) headers['content-type'] = scripted.contentType ?? 'application/json';
      res.writeHead(scripted.status ?? 200, headers).end(scripted.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/authenticate`;
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return {
    script: (token, answer) => scripts.set(token, answer),
    asked: (token) => asked.get(token) ?? [],
    kubeconfig: () =>
      YAML.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'parity', cluster: { server: url, 'certificate-authority-data': b64(ca.certPem) } }],
        users: [{ name: 'parity', user: { token: 'webhook-caller' } }],
        contexts: [{ name: 'parity', context: { cluster: 'parity', user: 'parity' } }],
        'current-context': 'parity',
      }),
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const USER = { username: 'parity-user', uid: 'parity-uid', groups: ['parity-group'], extra: { [EXTRA]: ['blue'] } };
const review = (apiVersion: unknown, status: unknown = { authenticated: true, user: USER }) => members(['apiVersion', apiVersion], ['kind', 'TokenReview'], ['status', status]);
const otherVersion = (asked: string) => (asked.endsWith('/v1') ? 'authentication.k8s.io/v1beta1' : 'authentication.k8s.io/v1');
const withUser = (user: Json | Record<string, unknown>) => (asked: string) => review(asked, members(['authenticated', true], ['user', user]));

interface WebhookCase extends Expectation {
  name: string;
  answer: (asked: string) => Scripted | Json;
}

const WEBHOOK_CASES: WebhookCase[] = [
  { name: 'a TokenReview in the version asked', answer: (asked) => review(asked), api: 'accepts' },
  { name: 'a TokenReview in the other version', answer: (asked) => review(otherVersion(asked)), api: 'refuses' },
  { name: 'no apiVersion (the version asked is assumed)', answer: () => members(['kind', 'TokenReview'], ['status', { authenticated: true, user: USER }]), api: 'accepts' },
  { name: 'no kind (TokenReview is assumed)', answer: (asked) => members(['apiVersion', asked], ['status', { authenticated: true, user: USER }]), api: 'accepts' },
  { name: 'neither apiVersion nor kind', answer: () => members(['status', { authenticated: true, user: USER }]), api: 'accepts' },
  { name: 'apiVersion and kind null', answer: () => review(null), api: 'accepts' },
  { name: 'apiVersion naming the group only', answer: () => review('authentication.k8s.io/'), api: 'accepts' },
  { name: 'apiVersion "/"', answer: () => review('/'), api: 'accepts' },
  { name: 'apiVersion naming the version only', answer: (asked) => review(asked.split('/')[1]), api: 'refuses' },
  { name: 'apiVersion with two slashes', answer: (asked) => review(`${asked}/x`), api: 'refuses' },
  { name: 'apiVersion not a string', answer: () => review(1), api: 'refuses' },
  { name: 'kind in other letters', answer: (asked) => members(['apiVersion', asked], ['kind', 'tokenreview'], ['status', { authenticated: true, user: USER }]), api: 'refuses' },
  { name: 'kind Status', answer: (asked) => members(['apiVersion', asked], ['kind', 'Status'], ['status', { authenticated: true, user: USER }]), api: 'refuses' },
  {
    name: 'no apiVersion, but ApiVersion naming the other version (read without regard to case)',
    answer: (asked) => members(['ApiVersion', otherVersion(asked)], ['kind', 'TokenReview'], ['status', { authenticated: true, user: USER }]),
    api: 'refuses',
  },
  {
    name: 'apiVersion naming the other version, then APIVERSION the one asked (the last wins)',
    answer: (asked) => members(['apiVersion', otherVersion(asked)], ['APIVERSION', asked], ['kind', 'TokenReview'], ['status', { authenticated: true, user: USER }]),
    api: 'accepts',
  },
  {
    name: 'apiVersion the one asked, then apiverſion (long s) the other',
    answer: (asked) => members(['apiVersion', asked], ['apiver\u017fion', otherVersion(asked)], ['kind', 'TokenReview'], ['status', { authenticated: true, user: USER }]),
    api: 'refuses',
  },
  {
    name: 'kind TokenReview, then \u212aind (Kelvin sign) Status',
    answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['\u212aind', 'Status'], ['status', { authenticated: true, user: USER }]),
    api: 'refuses',
  },
  { name: 'a Kind that is not a string', answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['Kind', 7], ['status', { authenticated: true, user: USER }]), api: 'refuses' },
  { name: 'fields nobody knows, at every level', answer: (asked) => review(asked, { authenticated: true, user: { ...USER, shoeSize: 44 }, mood: 'fine' }), api: 'accepts' },
  { name: 'Status (another letter case) instead of status', answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['Status', { authenticated: true, user: USER }]), api: 'refuses' },
  { name: 'Authenticated instead of authenticated', answer: (asked) => review(asked, { Authenticated: true, user: USER }), api: 'refuses' },
  { name: 'authenticated with an error', answer: (asked) => review(asked, { authenticated: true, error: 'but something went wrong', user: USER }), api: 'accepts' },
  { name: 'not authenticated, with an error', answer: (asked) => review(asked, { authenticated: false, error: 'no such token', user: USER }), api: 'refuses' },
  { name: 'authenticated "true" (a string)', answer: (asked) => review(asked, { authenticated: 'true', user: USER }), api: 'refuses' },
  { name: 'status null', answer: (asked) => review(asked, null), api: 'refuses' },
  { name: 'status a string', answer: (asked) => review(asked, 'authenticated'), api: 'refuses' },
  { name: 'status.audiences naming another audience', answer: (asked) => review(asked, { authenticated: true, user: USER, audiences: ['someone-else'] }), api: 'refuses' },
  { name: "status.audiences naming the API server's audience", answer: (asked) => review(asked, { authenticated: true, user: USER, audiences: [API_AUDIENCE, 'another'] }), api: 'accepts' },
  { name: 'status.audiences a string', answer: (asked) => review(asked, { authenticated: true, user: USER, audiences: API_AUDIENCE }), api: 'refuses' },
  { name: 'groups null', answer: withUser({ ...USER, groups: null }), api: 'accepts' },
  { name: 'groups a string', answer: withUser({ ...USER, groups: 'parity-group' }), api: 'refuses' },
  { name: 'groups with a null among them', answer: withUser({ ...USER, groups: ['parity-group', null] }), api: 'accepts', sidecar: 'refuses' },
  { name: 'a username outside ASCII', answer: withUser({ ...USER, username: 'jürgen-日本' }), api: 'accepts' },
  { name: 'groups with an empty name among them', answer: withUser({ ...USER, groups: ['parity-group', ''] }), api: 'accepts', sidecar: 'refuses' },
  { name: 'uid null', answer: withUser({ ...USER, uid: null }), api: 'accepts' },
  { name: 'uid a number', answer: withUser({ ...USER, uid: 1000 }), api: 'refuses' },
  { name: 'extra null', answer: withUser({ ...USER, extra: null }), api: 'accepts' },
  { name: 'an extra whose values are null', answer: withUser({ ...USER, extra: { [EXTRA]: null } }), api: 'accepts', sidecar: 'refuses' },
  { name: 'an extra with no values', answer: withUser({ ...USER, extra: { [EXTRA]: [] } }), api: 'accepts', sidecar: 'refuses' },
  { name: 'an extra whose value is a string', answer: withUser({ ...USER, extra: { [EXTRA]: 'blue' } }), api: 'refuses' },
  { name: 'no username', answer: withUser({ uid: 'parity-uid', groups: ['parity-group'] }), api: 'accepts', sidecar: 'refuses' },
  { name: 'a username that is a number', answer: withUser({ ...USER, username: 1000 }), api: 'refuses' },
  { name: 'Username instead of username', answer: withUser({ Username: 'root-admin', groups: ['parity-group'] }), api: 'accepts', sidecar: 'refuses' },
  {
    name: 'status twice: Go merges the two, JSON.parse keeps the last',
    answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['status', { authenticated: true, user: USER }], ['status', { user: { username: 'parity-user' } }]),
    api: 'accepts',
    sidecar: 'refuses',
  },
  {
    name: 'user twice: Go keeps the groups of the first',
    answer: (asked) => review(asked, members(['authenticated', true], ['user', { username: 'parity-user', groups: ['parity-group'] }], ['user', { username: 'parity-user' }])),
    api: 'accepts',
    sidecar: 'refuses',
  },
  { name: 'uid, then uid null: Go keeps the first', answer: withUser(raw('{"username":"parity-user","uid":"parity-uid","uid":null}')), api: 'accepts', sidecar: 'refuses' },
  { name: 'a username with a lone surrogate escape', answer: withUser({ ...USER, username: 'parity-\ud800' }), api: 'accepts', sidecar: 'refuses' },
  {
    name: 'a username with bytes that are not UTF-8',
    answer: (asked) => {
      const [before, after] = review(asked, { authenticated: true, user: { ...USER, username: 'parity-@' } }).text.split('@');
      return { body: Buffer.concat([Buffer.from(before!), Buffer.from([0xe2, 0x82]), Buffer.from(after!)]) };
    },
    api: 'accepts',
    sidecar: 'refuses',
  },
  { name: 'a number beyond float64 in a field nobody knows', answer: (asked) => review(asked, members(['authenticated', true], ['user', USER], ['weight', raw('1e400')])), api: 'accepts', sidecar: 'refuses' },
  { name: 'metadata as Go writes it', answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['metadata', { creationTimestamp: null }], ['status', { authenticated: true, user: USER }]), api: 'accepts' },
  { name: 'metadata with a name and labels', answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['metadata', { name: 'x', labels: { a: 'b' } }], ['status', { authenticated: true, user: USER }]), api: 'accepts' },
  { name: 'metadata whose labels are a string', answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['metadata', { labels: 'a=b' }], ['status', { authenticated: true, user: USER }]), api: 'refuses' },
  { name: 'metadata a string', answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['metadata', 'x'], ['status', { authenticated: true, user: USER }]), api: 'refuses' },
  { name: 'spec.token a number', answer: (asked) => members(['apiVersion', asked], ['kind', 'TokenReview'], ['spec', { token: 5 }], ['status', { authenticated: true, user: USER }]), api: 'refuses' },
  { name: 'HTTP 203', answer: (asked) => ({ status: 203, body: review(asked).text }), api: 'accepts' },
  { name: 'HTTP 206', answer: (asked) => ({ status: 206, body: review(asked).text }), api: 'accepts' },
  { name: 'HTTP 207', answer: (asked) => ({ status: 207, body: review(asked).text }), api: 'refuses' },
  { name: 'HTTP 299', answer: (asked) => ({ status: 299, body: review(asked).text }), api: 'refuses' },
  { name: 'Content-Type text/plain', answer: (asked) => ({ contentType: 'text/plain; charset=utf-8', body: review(asked).text }), api: 'accepts' },
  { name: 'no Content-Type', answer: (asked) => ({ contentType: null, body: review(asked).text }), api: 'accepts' },
  { name: 'a Content-Type that does not parse', answer: (asked) => ({ contentType: 'application/json; charset', body: review(asked).text }), api: 'refuses' },
  { name: 'a Content-Type with a parameter twice', answer: (asked) => ({ contentType: 'application/json; a=1; a=2', body: review(asked).text }), api: 'refuses' },
  {
    name: 'YAML',
    answer: (asked) => ({ contentType: 'application/yaml', body: YAML.stringify({ apiVersion: asked, kind: 'TokenReview', status: { authenticated: true, user: USER } }) }),
    api: 'accepts',
    sidecar: 'refuses',
  },
  { name: 'JSON behind a byte-order mark', answer: (asked) => ({ body: `\ufeff${review(asked).text}` }), api: 'accepts', sidecar: 'refuses' },
];

for (const version of ['v1', 'v1beta1'] as const) {
  describe(`identity parity: a token webhook asked in ${version}, the API server as the oracle`, function () {
    this.timeout(180_000);
    let dir: string;
    let webhook: ScriptedWebhook;
    let kubeconfig: string;

    before(async function () {
      dir = await mkdtemp(path.join(tmpdir(), 'chaperone-parity-'));
      webhook = await startScriptedWebhook();
      kubeconfig = path.join(dir, 'webhook.kubeconfig');
      await writeFile(kubeconfig, webhook.kubeconfig());
    });

    const flags = () => [`--authentication-token-webhook-config-file=${kubeconfig}`, `--authentication-token-webhook-version=${version}`];
    const { cp, clients } = withControlPlane(() => ({ extraApiserverFlags: [...flags(), '--authentication-token-webhook-cache-ttl=0s'] }));
    const sidecar = withSidecar(() => ({ flags: [...flags(), `--authentication-token-webhook-audiences=${API_AUDIENCE}`] }), { cp, clients });
    const bare = withSidecar(() => ({ flags: flags() }), { cp, clients });

    before(async function () {
      await grantClusterWide(clients, 'parity-extras', [{ apiGroups: ['authentication.k8s.io'], resources: [`userextras/${EXTRA}`], verbs: ['impersonate'] }], [
        serviceAccountSubject(sidecar.namespace, sidecar.serviceAccount),
        serviceAccountSubject(bare.namespace, bare.serviceAccount),
      ]);
    });

    after(async function () {
      await webhook?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    async function both(answer: WebhookCase['answer'], via: () => TestSidecar = () => sidecar): Promise<[Outcome, Outcome, string]> {
      const token = `parity-${randomUUID()}`;
      webhook.script(token, answer);
      const straight = await whoAmI(cp.url, cp.ca.certPem, token);
      const proxied = await whoAmI(via().url, via().servingCa.certPem, token);
      return [straight, proxied, token];
    }

    it('asks the webhook what the API server asks it: the same version, token and audiences', async function () {
      const [straight, proxied, token] = await both((asked) => review(asked));
      assertVerdicts(straight, proxied, { api: 'accepts' });
      const [fromApi, fromSidecar] = webhook.asked(token);
      assert.ok(fromApi && fromSidecar, 'both asked');
      assert.equal(fromApi.apiVersion, `authentication.k8s.io/${version}`);
      assert.deepEqual([fromSidecar.apiVersion, fromSidecar.kind, fromSidecar.spec], [fromApi.apiVersion, fromApi.kind, fromApi.spec]);
    });

    for (const { name, answer, ...expectation } of WEBHOOK_CASES) {
      it(`${name}: ${expectation.api === 'accepts' ? 'accepted' : 'refused'} by the API server, ${expectation.sidecar === 'refuses' && expectation.api === 'accepts' ? 'refused by the sidecar on purpose' : 'and the same by the sidecar'}`, async function () {
        const [straight, proxied] = await both(answer);
        assertVerdicts(straight, proxied, expectation);
      });
    }

    it('without --authentication-token-webhook-audiences, refuses an answer that names audiences: the API server would judge them against its own', async function () {
      const [straight, proxied] = await both((asked) => review(asked, { authenticated: true, user: USER, audiences: [API_AUDIENCE] }), () => bare);
      assertVerdicts(straight, proxied, { api: 'accepts', sidecar: 'refuses' });
      const [other, otherProxied] = await both((asked) => review(asked, { authenticated: true, user: USER, audiences: ['someone-else'] }), () => bare);
      assertVerdicts(other, otherProxied, { api: 'refuses' });
      const [plain, plainProxied] = await both((asked) => review(asked), () => bare);
      assertVerdicts(plain, plainProxied, { api: 'accepts' });
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// JWTs

interface RawIssuer {
  url: string;
  /** A compact JWS over exactly these header and payload bytes, signed RS256 by the issuer's key. */
  sign(payload: Json | Buffer, header?: Json): string;
  stop(): Promise<void>;
}

async function startRawIssuer(ca: CertificateAndKey): Promise<RawIssuer> {
  const serving = issueCertificate(ca, { commonName: 'parity-issuer', usage: 'server', ipAddresses: ['127.0.0.1'] });
  // 3072 bits: a signature of 384 bytes, 512 base64url characters, so that one more is a length no base64 has.
  const { privateKey, publicKey }: { privateKey: KeyObject; publicKey: KeyObject } = generateKeyPairSync('rsa', { modulusLength: 3072 });
  const kid = 'parity-key';
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  let url = '';
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/.well-known/openid-configuration') json({ issuer: url, jwks_uri: `${url}/jwks`, id_token_signing_alg_values_supported: ['RS256'] });
    else if (req.url === '/jwks') json({ keys: [jwk] });
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    sign: (payload, header = members(['alg', 'RS256'], ['kid', kid], ['typ', 'JWT'])) => {
      const input = `${Buffer.from(header.text).toString('base64url')}.${(payload instanceof Json ? Buffer.from(payload.text) : payload).toString('base64url')}`;
      return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
    },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const AUDIENCE = 'parity';
const seconds = () => Math.floor(Date.now() / 1000);

interface JwtCase extends Expectation {
  name: string;
  issuer: 'sub' | 'email' | 'cel';
  /** The payload's members after iss, aud; exp and iat come first unless the case gives its own. */
  token: (iss: string) => Json | Buffer;
  header?: (kid: string) => Json;
  /** A change to the signed token. */
  tamper?: (jwt: string) => string;
}

/** iss, aud, exp, iat, then the case's members. */
const claims = (iss: string, ...rest: [string, unknown][]) => members(['iss', iss], ['aud', AUDIENCE], ['exp', seconds() + 600], ['iat', seconds()], ...rest);
/** iss and aud only, then the case's members (it sets the times itself). */
const untimed = (iss: string, ...rest: [string, unknown][]) => members(['iss', iss], ['aud', AUDIENCE], ...rest);

const JWT_CASES: JwtCase[] = [
  { name: 'a plain token', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['groups', ['dev']]), api: 'accepts' },
  // Claim names the API server reads from a map, by their exact names: the same reading here.
  { name: 'groups and Groups', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['groups', ['dev']], ['Groups', ['admins']]), api: 'accepts' },
  { name: 'Groups only', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['Groups', ['admins']]), api: 'accepts' },
  { name: 'email and EMAIL', issuer: 'email', token: (iss) => claims(iss, ['email', 'erin@example.com'], ['EMAIL', 'root@example.com'], ['email_verified', true]), api: 'accepts' },
  { name: 'email_verified false, Email_Verified true', issuer: 'email', token: (iss) => claims(iss, ['email', 'erin@example.com'], ['email_verified', false], ['Email_Verified', true]), api: 'refuses' },
  { name: 'email_verified true, EMAIL_VERIFIED false', issuer: 'email', token: (iss) => claims(iss, ['email', 'erin@example.com'], ['email_verified', true], ['EMAIL_VERIFIED', false]), api: 'accepts' },
  { name: 'Email_Verified false only', issuer: 'email', token: (iss) => claims(iss, ['email', 'erin@example.com'], ['Email_Verified', false]), api: 'accepts' },
  { name: 'an email that is a number', issuer: 'email', token: (iss) => claims(iss, ['email', 42]), api: 'refuses' },
  { name: 'a groups claim that is a string', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['groups', 'dev']), api: 'accepts' },
  { name: 'a groups claim that is an object', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['groups', { dev: true }]), api: 'refuses' },
  { name: 'aud as a list', issuer: 'sub', token: (iss) => members(['iss', iss], ['aud', ['other', AUDIENCE]], ['exp', seconds() + 600], ['sub', 'alice']), api: 'accepts' },
  { name: 'email_verified null', issuer: 'email', token: (iss) => claims(iss, ['email', 'erin@example.com'], ['email_verified', null]), api: 'refuses' },
  { name: 'name and Name, read by CEL', issuer: 'cel', token: (iss) => claims(iss, ['sub', 'x'], ['name', 'erin'], ['Name', 'root'], ['team', 'blue'], ['Team', 'red']), api: 'accepts' },
  // Registered claims the API server also reads into Go structs, whose field names match any letter case.
  { name: 'sub and Sub', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['Sub', 'mallory']), api: 'accepts', sidecar: 'refuses' },
  { name: 'a Sub that is not a string', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['Sub', 7]), api: 'refuses' },
  { name: 'exp past, then EXP future: the API server takes EXP', issuer: 'sub', token: (iss) => untimed(iss, ['exp', seconds() - 3600], ['EXP', seconds() + 600], ['sub', 'alice']), api: 'accepts', sidecar: 'refuses' },
  { name: 'exp future, then Exp past: the API server takes Exp', issuer: 'sub', token: (iss) => untimed(iss, ['exp', seconds() + 600], ['Exp', seconds() - 3600], ['sub', 'alice']), api: 'refuses' },
  { name: 'Nbf in the future and no nbf', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['Nbf', seconds() + 3600]), api: 'refuses' },
  { name: 'iss, then ISS naming another issuer', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['ISS', 'https://elsewhere.example']), api: 'refuses' },
  { name: 'ISS instead of iss', issuer: 'sub', token: (iss) => members(['ISS', iss], ['aud', AUDIENCE], ['exp', seconds() + 600], ['sub', 'alice']), api: 'accepts', sidecar: 'refuses' },
  { name: 'iſſ (long s) instead of iss', issuer: 'sub', token: (iss) => members(['i\u017f\u017f', iss], ['aud', AUDIENCE], ['exp', seconds() + 600], ['sub', 'alice']), api: 'accepts', sidecar: 'refuses' },
  { name: 'aud, then AUD naming another audience', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['AUD', 'someone-else']), api: 'refuses' },
  // Duplicate members: the last wins for both readings of most claims, but RFC 7519 lets a parser refuse them, and chaperone does.
  { name: 'sub twice', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['sub', 'mallory']), api: 'accepts', sidecar: 'refuses' },
  { name: 'groups twice', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['groups', ['dev']], ['groups', ['ops']]), api: 'accepts', sidecar: 'refuses' },
  // Strings and numbers the two readings would not read alike.
  { name: 'a sub with a lone surrogate escape', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice\ud800']), api: 'accepts', sidecar: 'refuses' },
  {
    name: 'a sub with bytes that are not UTF-8',
    issuer: 'sub',
    token: (iss) => {
      const [before, after] = claims(iss, ['sub', 'alice@']).text.split('@');
      return Buffer.concat([Buffer.from(before!), Buffer.from([0xe2, 0x82]), Buffer.from(after!)]);
    },
    api: 'accepts',
    sidecar: 'refuses',
  },
  { name: 'a number beyond float64 in a claim nobody reads', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['weight', raw('1e400')]), api: 'accepts', sidecar: 'refuses' },
  { name: 'sub null', issuer: 'sub', token: (iss) => claims(iss, ['sub', null]), api: 'accepts' },
  { name: 'a groups claim with a null', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['groups', ['dev', null]]), api: 'accepts' },
  { name: 'a jti that is a number', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['jti', 42]), api: 'accepts' },
  { name: 'exp as a string', issuer: 'sub', token: (iss) => untimed(iss, ['exp', String(seconds() + 600)], ['sub', 'alice']), api: 'accepts' },
  { name: 'exp as a string with a leading zero', issuer: 'sub', token: (iss) => untimed(iss, ['exp', `0${seconds() + 600}`], ['sub', 'alice']), api: 'refuses' },
  { name: 'exp with a fraction', issuer: 'sub', token: (iss) => untimed(iss, ['exp', seconds() + 600.75], ['sub', 'alice']), api: 'accepts' },
  { name: 'exp in exponent notation', issuer: 'sub', token: (iss) => untimed(iss, ['exp', raw(`${(seconds() + 600) / 100}e2`)], ['sub', 'alice']), api: 'accepts' },
  { name: 'exp the largest int64 (Go wraps it into the past)', issuer: 'sub', token: (iss) => untimed(iss, ['exp', raw('9223372036854775807')], ['sub', 'alice']), api: 'refuses' },
  { name: 'exp 1e300', issuer: 'sub', token: (iss) => untimed(iss, ['exp', raw('1e300')], ['sub', 'alice']), api: 'refuses' },
  { name: 'exp null', issuer: 'sub', token: (iss) => untimed(iss, ['exp', null], ['sub', 'alice']), api: 'refuses' },
  { name: 'nbf 1e300 (Go makes it the distant past)', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['nbf', raw('1e300')]), api: 'accepts', sidecar: 'refuses' },
  { name: 'nbf null', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['nbf', null]), api: 'accepts' },
  { name: 'iat null', issuer: 'sub', token: (iss) => untimed(iss, ['exp', seconds() + 600], ['iat', null], ['sub', 'alice']), api: 'refuses' },
  { name: 'iat as a string', issuer: 'sub', token: (iss) => untimed(iss, ['exp', seconds() + 600], ['iat', '12345'], ['sub', 'alice']), api: 'accepts' },
  { name: 'iat true', issuer: 'sub', token: (iss) => untimed(iss, ['exp', seconds() + 600], ['iat', true], ['sub', 'alice']), api: 'refuses' },
  { name: 'aud with a null beside the audience', issuer: 'sub', token: (iss) => members(['iss', iss], ['aud', [AUDIENCE, null]], ['exp', seconds() + 600], ['sub', 'alice']), api: 'accepts', sidecar: 'refuses' },
  { name: 'a nonce that is not a string', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['nonce', 5]), api: 'refuses' },
  // OpenID distributed claims, which go-oidc checks for every claim, configured or not.
  { name: '_claim_names without _claim_sources', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['_claim_names', { roles: 'src1' }]), api: 'refuses' },
  { name: '_claim_names naming a source that is not there', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['_claim_names', { roles: 'src1' }], ['_claim_sources', { src2: {} }]), api: 'refuses' },
  { name: '_claim_names with a null source', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice'], ['_claim_names', { roles: null }], ['_claim_sources', {}]), api: 'refuses' },
  {
    name: 'a claim source whose Endpoint is a number',
    issuer: 'sub',
    token: (iss) => claims(iss, ['sub', 'alice'], ['_claim_names', { roles: 'src1' }], ['_claim_sources', { src1: { Endpoint: 5 } }]),
    api: 'refuses',
  },
  {
    name: 'a distributed claim nobody maps',
    issuer: 'sub',
    token: (iss) => claims(iss, ['sub', 'alice'], ['_claim_names', { roles: 'src1' }], ['_claim_sources', { src1: { endpoint: 'https://127.0.0.1:1/roles' } }]),
    api: 'accepts',
  },
  // The JOSE header, which go-jose reads strictly: duplicate members refused, kid and alg strings.
  { name: 'alg twice in the header', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice']), header: (kid) => members(['alg', 'HS256'], ['alg', 'RS256'], ['kid', kid]), api: 'refuses' },
  { name: 'a kid that is a number', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice']), header: () => members(['alg', 'RS256'], ['kid', 7]), api: 'refuses' },
  { name: 'no kid', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice']), header: () => members(['alg', 'RS256']), api: 'accepts' },
  { name: 'a typ that is a number', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice']), header: (kid) => members(['alg', 'RS256'], ['kid', kid], ['typ', 7]), api: 'accepts' },
  { name: 'a signature segment one character longer, a length base64 cannot have', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice']), api: 'refuses', tamper: (jwt) => `${jwt}A` },
  { name: 'crit naming a header nobody understands', issuer: 'sub', token: (iss) => claims(iss, ['sub', 'alice']), header: (kid) => members(['alg', 'RS256'], ['kid', kid], ['crit', ['exp']], ['exp', 1]), api: 'refuses' },
];

describe('identity parity: JWTs with odd bytes, the API server as the oracle', function () {
  this.timeout(180_000);
  const ca = createCA({ commonName: 'parity-issuer-ca' });
  let dir: string;
  let issuers: Record<JwtCase['issuer'], RawIssuer>;
  let config: string;

  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-parity-jwt-'));
    const [sub, email, cel] = await Promise.all([startRawIssuer(ca), startRawIssuer(ca), startRawIssuer(ca)]);
    issuers = { sub, email, cel };
    const issuer = (url: string) => ({ url, audiences: [AUDIENCE], certificateAuthority: ca.certPem });
    config = path.join(dir, 'authentication-config.yaml');
    await writeFile(
      config,
      YAML.stringify({
        apiVersion: 'apiserver.config.k8s.io/v1',
        kind: 'AuthenticationConfiguration',
        jwt: [
          { issuer: issuer(issuers.sub.url), claimMappings: { username: { claim: 'sub', prefix: 'raw:' }, groups: { claim: 'groups', prefix: 'raw:' } } },
          { issuer: issuer(issuers.email.url), claimMappings: { username: { claim: 'email', prefix: '' }, groups: { claim: 'groups', prefix: '' } } },
          {
            issuer: issuer(issuers.cel.url),
            claimMappings: {
              username: { expression: "'cel:' + claims.name" },
              extra: [{ key: EXTRA, valueExpression: "claims.?team.orValue('')" }],
            },
          },
        ],
      }),
    );
  });

  const { cp, clients, sidecar } = withControlPlaneAndSidecar(() => [`--authentication-config=${config}`]);

  before(async function () {
    await grantClusterWide(clients, 'parity-extras', [{ apiGroups: ['authentication.k8s.io'], resources: [`userextras/${EXTRA}`], verbs: ['impersonate'] }], [
      serviceAccountSubject(sidecar.namespace, sidecar.serviceAccount),
    ]);
    // The API server starts its JWT authenticators in the background: wait until each takes a token.
    for (const [name, raw] of Object.entries(issuers)) {
      const token = raw.sign(claims(raw.url, ['sub', 'alice'], ['email', 'a@example.com'], ['name', 'a']));
      for (let i = 0; (await whoAmI(cp.url, cp.ca.certPem, token)).status !== 201; i++) {
        if (i > 150) throw new Error(`the API server never accepted a token of the ${name} issuer`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  });

  after(async function () {
    await Promise.all(Object.values(issuers ?? {}).map((i) => i.stop()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const { name, issuer, token, header, tamper = (jwt: string) => jwt, ...expectation } of JWT_CASES) {
    it(`${name}: ${expectation.api === 'accepts' ? 'accepted' : 'refused'} by the API server, ${expectation.sidecar === 'refuses' && expectation.api === 'accepts' ? 'refused by the sidecar on purpose' : 'and the same by the sidecar'}`, async function () {
      const raw = issuers[issuer];
      const jwt = tamper(raw.sign(token(raw.url), header?.('parity-key')));
      const straight = await whoAmI(cp.url, cp.ca.certPem, jwt);
      const proxied = await whoAmI(sidecar.url, sidecar.servingCa.certPem, jwt);
      assertVerdicts(straight, proxied, expectation);
    });
  }
});
