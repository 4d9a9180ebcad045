// HTTP/1.1 desync: whatever bytes a client writes, exactly one request reaches the API server per
// request the sidecar authorized, with the body the client's framing delimited, and nothing else.
// Methods x framings (Content-Length, chunked, both, neither, obfuscated) x bodies that are
// themselves requests x pipelining x Expect, written byte by byte over TLS.
//
// The judge is the join of what arrived upstream with the sidecar's own audit log: every request
// the stand-in API server saw carries an Audit-ID; exactly one sidecar event has it, for the same
// method and target, forwarded, as the same person. A request smuggled inside another's body would
// arrive without an event of its own (or two would share one). Then the same attack against the real
// API server, whose own audit log says what it ran and as whom.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { SeenRequest } from '../support/fake-upstream.js';
import { grantClusterWide, readAuditEvents, userSubject, waitForAuditEvents, waitForCanI } from '../../local-cluster/kube.js';
import type { CertificateAndKey } from '../../lib/pki.js';
import { withStandIn } from './support/stand-in.js';
import { converse, type Target } from '../support/wire.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

interface SidecarEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string };
  impersonatedUser?: { username: string; groups?: string[] };
  annotations?: Record<string, string>;
}

const METHODS = ['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH'];

/** A request, complete and well-formed on its own, that an attacker hides inside a body. */
function hidden(tag: string): string {
  return `DELETE /api/v1/namespaces/desync/secrets/smuggled?${tag}&smuggled=1 HTTP/1.1\r\nHost: x\r\nImpersonate-User: root-admin\r\nContent-Length: 0\r\nX-Ignore: `;
}

function chunked(body: string): string {
  return `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
}

/** How the body is framed (or not); `body` is what a correct parser reads as the body, if it takes the request. */
interface Framing {
  name: string;
  headers: string[];
  wire(body: string): string;
  body(body: string): string;
  /** Refused with 400 before anything is forwarded. */
  refused?: boolean;
}

const FRAMINGS: Framing[] = [
  { name: 'no length', headers: [], wire: (b) => b, body: () => '' },
  { name: 'Content-Length', headers: ['Content-Length: {n}'], wire: (b) => b, body: (b) => b },
  { name: 'Content-Length too short', headers: ['Content-Length: 3'], wire: (b) => b, body: (b) => b.slice(0, 3) },
  { name: 'chunked', headers: ['Transfer-Encoding: chunked'], wire: chunked, body: (b) => b },
  { name: 'chunked, mixed case', headers: ['transfer-ENCODING: ChUnKeD'], wire: chunked, body: (b) => b },
  { name: 'gzip, chunked', headers: ['Transfer-Encoding: gzip, chunked'], wire: chunked, body: (b) => b, refused: true },
  { name: 'chunked and Content-Length', headers: ['Content-Length: {n}', 'Transfer-Encoding: chunked'], wire: chunked, body: (b) => b, refused: true },
  { name: 'Content-Length and chunked', headers: ['Transfer-Encoding: chunked', 'Content-Length: 0'], wire: chunked, body: (b) => b, refused: true },
  { name: 'two Content-Lengths that differ', headers: ['Content-Length: {n}', 'Content-Length: 0'], wire: (b) => b, body: (b) => b, refused: true },
  { name: 'chunked, gzip (chunked not last)', headers: ['Transfer-Encoding: chunked, gzip'], wire: chunked, body: (b) => b, refused: true },
  { name: 'two Transfer-Encoding lines', headers: ['Transfer-Encoding: chunked', 'Transfer-Encoding: identity'], wire: chunked, body: (b) => b, refused: true },
  { name: 'xchunked', headers: ['Transfer-Encoding: xchunked'], wire: chunked, body: (b) => b },
  // Node's parser reads "chunked<TAB>" as no body at all (its headers show "chunked", trimmed): what
  // follows is then read as the next request, and refused as one (a chunk size is no method).
  { name: 'chunked with a tab', headers: ['Transfer-Encoding:\tchunked\t'], wire: chunked, body: () => '' },
  { name: 'Transfer_Encoding', headers: ['Transfer_Encoding: chunked'], wire: chunked, body: () => '' },
  { name: 'obs-fold', headers: ['Transfer-Encoding: identity', ' chunked'], wire: chunked, body: (b) => b, refused: true },
  { name: 'Content-Length: +n', headers: ['Content-Length: +{n}'], wire: (b) => b, body: (b) => b, refused: true },
  { name: 'Content-Length in hex', headers: ['Content-Length: 0x{x}'], wire: (b) => b, body: (b) => b, refused: true },
  { name: 'a space before the colon', headers: ['Transfer-Encoding : chunked'], wire: chunked, body: (b) => b, refused: true },
  { name: 'chunk size with an extension and a bare LF', headers: ['Transfer-Encoding: chunked'], wire: (b) => `${b.length.toString(16)};x=y\n${b}\r\n0\r\n\r\n`, body: (b) => b },
];

interface Case {
  tag: string;
  method: string;
  framing: Framing;
  expect: boolean;
  pipelined: boolean;
}

function cases(): Case[] {
  const all: Case[] = [];
  let n = 0;
  for (const method of METHODS) {
    for (const framing of FRAMINGS) {
      for (const expect of [false, true]) {
        for (const pipelined of [false, true]) all.push({ tag: `case=${n++}`, method, framing, expect, pipelined });
      }
    }
  }
  return all;
}

const CASE_PATH = '/api/v1/namespaces/desync/configmaps';

/** The bytes of one case: the attack request, perhaps a second ordinary one, and a last one that closes. */
function wireOf(c: Case): string {
  const body = hidden(c.tag);
  const headers = c.framing.headers.map((h) => h.replace('{n}', String(body.length)).replace('{x}', body.length.toString(16)));
  const attack = [`${c.method} ${CASE_PATH}?${c.tag}&n=1 HTTP/1.1`, 'Host: localhost', ...headers, ...(c.expect ? ['Expect: 100-continue'] : []), '', ''].join('\r\n') + c.framing.wire(body);
  const second = c.pipelined ? `GET ${CASE_PATH}?${c.tag}&n=2 HTTP/1.1\r\nHost: localhost\r\n\r\n` : '';
  return `${attack}${second}GET ${CASE_PATH}?${c.tag}&n=last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
}

/** Writes the bytes and reads every response until the sidecar closes the connection, or a quiet second passes. */
async function send(target: Target, cert: CertificateAndKey, bytes: string): Promise<number[]> {
  const { text } = await converse(target, cert, bytes);
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])).filter((code) => code !== 100);
}

async function sidecarEvents(auditLog: string): Promise<SidecarEvent[]> {
  const text = await readFile(auditLog, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as SidecarEvent)
    .filter((event) => event.stage === 'ResponseComplete');
}

/** Every forwarded request matched to exactly one sidecar event, and every forwarded event to exactly one request. */
function joinFailures(seen: SeenRequest[], events: SidecarEvent[], person: string, ours: (url: string) => boolean): string[] {
  const failures: string[] = [];
  const forwarded = seen.filter((r) => ours(r.url));
  const byID = new Map<string, SeenRequest[]>();
  for (const request of forwarded) {
    if (request.httpVersion !== '2.0') failures.push(`${request.method} ${request.url} arrived over HTTP/${request.httpVersion}, not as an HTTP/2 stream of its own`);
    const id = String(request.headers['audit-id'] ?? '');
    byID.set(id, [...(byID.get(id) ?? []), request]);
  }
  const eventsByID = new Map(events.map((e) => [e.auditID, e]));
  for (const [id, requests] of byID) {
    if (requests.length > 1) failures.push(`${requests.length} requests upstream share Audit-ID ${id}: ${requests.map((r) => `${r.method} ${r.url}`).join(', ')}`);
    const event = eventsByID.get(id);
    for (const request of requests) {
      if (!event) {
        failures.push(`${request.method} ${request.url} reached the API server with no sidecar event (Audit-ID ${JSON.stringify(id)})`);
        continue;
      }
      if (event.requestURI !== request.url) failures.push(`Audit-ID ${id}: the sidecar recorded ${event.requestURI}, the API server got ${request.url}`);
      if (event.annotations?.['chaperone.dev/forwarded'] !== 'true') failures.push(`Audit-ID ${id}: forwarded upstream, but the sidecar says it was not`);
      if (request.headers['impersonate-user'] !== (event.impersonatedUser?.username ?? '')) failures.push(`Audit-ID ${id}: upstream as ${String(request.headers['impersonate-user'])}, the sidecar recorded ${event.impersonatedUser?.username}`);
      if (event.user.username !== person) failures.push(`Audit-ID ${id}: authenticated as ${event.user.username}, not ${person}`);
    }
  }
  for (const event of events) {
    if (event.annotations?.['chaperone.dev/forwarded'] === 'true' && ours(event.requestURI) && !byID.has(event.auditID)) {
      failures.push(`the sidecar says it forwarded ${event.requestURI} (${event.auditID}), but nothing arrived`);
    }
  }
  return failures;
}

async function inBatches<T, R>(items: T[], width: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(work))));
  return out;
}

describe('hardening: HTTP/1.1 desync against a stand-in API server', function () {
  this.timeout(0);
  const standIn = withStandIn();

  it('forwards exactly the requests it authorized, each its own HTTP/2 stream, with the body the framing delimited', async function () {
    const chosen = cases();
    const target = { port: standIn.sidecar.port, ca: standIn.sidecar.servingCa.certPem };
    const answers = await inBatches(chosen, 12, async (c) => ({ c, codes: await send(target, standIn.alice, wireOf(c)) }));
    await new Promise((resolve) => setTimeout(resolve, 500)); // the last events reach the file sink

    const failures = joinFailures(standIn.fake.seen, await sidecarEvents(standIn.sidecar.auditLog), 'alice', (url) => url.startsWith(CASE_PATH) || url.includes('smuggled'));
    for (const { c, codes } of answers) {
      const upstream = standIn.fake.seen.filter((r) => r.url.includes(`${c.tag}&`));
      const label = `${c.method} with ${c.framing.name}${c.expect ? ', Expect: 100-continue' : ''}${c.pipelined ? ', pipelined' : ''}`;
      const smuggled = upstream.filter((r) => r.url.includes('smuggled=1'));
      // Only where the framing left the hidden bytes outside any body may they be read as a request
      // at all, and then as the client's own next request on its own connection: as alice, never as
      // root-admin, and never without the sidecar's decision.
      for (const r of smuggled) {
        if (r.headers['impersonate-user'] === 'root-admin' && !String(r.headers['impersonate-extra-chaperone.dev%2foriginal-user-info'] ?? '').includes('alice')) {
          failures.push(`${label}: the hidden request ran as root-admin without alice's nested impersonation`);
        }
      }
      // A request whose body broke half-way, or grew too big, reaches the API server at most as a
      // stream the sidecar reset, never as a complete request with a shorter body.
      const attack = upstream.find((r) => r.url.endsWith(`${c.tag}&n=1`));
      if (attack && !attack.aborted) {
        const expected = c.framing.body(hidden(c.tag));
        if ((attack.body ?? Buffer.alloc(0)).toString('latin1') !== expected) {
          failures.push(`${label}: the body upstream was ${JSON.stringify(attack.body?.toString('latin1'))}, the framing delimited ${JSON.stringify(expected)}`);
        }
      }
      // GET and HEAD carry no body through chaperone; the framings it refuses are refused for every method.
      const refused = c.framing.refused || (['GET', 'HEAD'].includes(c.method) && c.framing.body(hidden(c.tag)) !== '');
      if (refused && attack) failures.push(`${label}: forwarded, though chaperone refuses it (answers ${codes.join(',')})`);
      if (refused && codes[0] !== 400) failures.push(`${label}: answered ${codes.join(',')}, not 400`);
    }
    assert.deepEqual(failures, []);
  });
});

describe('hardening: request smuggling against the real API server', function () {
  this.timeout(0);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar();
  let grant: string;
  let namespace: string;

  before(async function () {
    namespace = sidecar.namespace;
    await clients.core.createNamespacedSecret({ namespace, body: { metadata: { name: 'target' }, stringData: { k: 'v' } } });
    await clients.core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'target' }, data: { k: 'v' } } });
    // mallory may only read configmaps; root-admin may do anything.
    grant = await grantClusterWide(clients, 'desync-mallory', [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }], [userSubject('mallory')]);
    await waitForCanI(cp, 'mallory', ['list', 'configmaps', '-n', namespace]);
  });

  after(async function () {
    if (grant) await clients.rbac.deleteClusterRole({ name: grant }).catch(() => undefined);
  });

  it('runs nothing hidden in a body: no secret read or deleted as root-admin, whatever the method and framing', async function () {
    const mallory = sidecar.clientCert('mallory');
    const target = { port: sidecar.port, ca: sidecar.servingCa.certPem };
    const list = `/api/v1/namespaces/${namespace}/configmaps`;
    const inner = (verb: string) =>
      `${verb} /api/v1/namespaces/${namespace}/secrets/target HTTP/1.1\r\nImpersonate-User: root-admin\r\nImpersonate-Group: system:masters\r\nX-Ignore: `;
    const attempts: string[] = [];
    for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST']) {
      for (const verb of ['GET', 'DELETE']) {
        const body = inner(verb);
        for (const framing of [`Transfer-Encoding: chunked\r\n\r\n${chunked(body)}`, `Content-Length: ${body.length}\r\n\r\n${body}`]) {
          attempts.push(`${method} ${list} HTTP/1.1\r\nHost: localhost\r\n${framing}`);
        }
      }
    }
    // Each attack, then anyone's ordinary request on the sidecar (which, on a shared upstream
    // connection, would complete the hidden one).
    for (const attack of attempts) {
      await send(target, mallory, `${attack}GET ${list} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      await send(target, mallory, `GET ${list} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    }
    await waitForAuditEvents(cp, (e) => e.user.username === sidecar.serviceAccountUsername && e.requestURI === list, 10_000);

    // This sidecar's account only: other suites on the shared control plane impersonate root-admin on purpose.
    const events = (await readAuditEvents(cp)).filter((e) => e.user.username === sidecar.serviceAccountUsername);
    const asRoot = events.filter((e) => e.impersonatedUser?.username === 'root-admin' || (e.impersonatedUser?.groups ?? []).includes('system:masters'));
    assert.deepEqual(asRoot.map((e) => `${e.verb} ${e.requestURI}`), [], 'nothing ran as root-admin or system:masters');
    const onSecrets = events.filter((e) => e.objectRef?.resource === 'secrets' && e.objectRef.namespace === namespace);
    assert.deepEqual(onSecrets.map((e) => `${e.verb} ${e.requestURI}`), [], 'the scoped account touched no secret in the namespace');
    const secret = await clients.core.readNamespacedSecret({ namespace, name: 'target' });
    assert.equal(secret.metadata?.name, 'target', 'the secret is still there');

    const ours = events.filter((e) => e.impersonatedUser && e.stage === 'ResponseComplete');
    // Every attack's follow-up list, and each one sent alone, ran as mallory: the attacks were really
    // carried to the API server, and the join below has something to judge.
    const lists = ours.filter((e) => e.requestURI === list && e.impersonatedUser?.username === 'mallory' && e.responseStatus?.code === 200);
    assert.ok(lists.length >= attempts.length, `${lists.length} lists ran as mallory, for ${attempts.length} attacks`);
    const failures = joinFailures(
      ours.map((e) => ({ method: e.verb, url: e.requestURI, httpVersion: '2.0', headers: { 'audit-id': e.auditID, 'impersonate-user': e.impersonatedUser?.username }, rawHeaders: [] })),
      await sidecarEvents(sidecar.auditLog),
      'mallory',
      (url) => url.startsWith(`/api/v1/namespaces/${namespace}/`),
    );
    assert.deepEqual(failures, []);
  });

  it('lets no client choose the source address the API server records (X-Real-Ip, X-Forwarded-For, in any spelling)', async function () {
    const mallory = sidecar.clientCert('mallory');
    const list = `/api/v1/namespaces/${namespace}/configmaps`;
    const headers = ['X-Real-Ip: 203.0.113.9', 'X-Forwarded-For: 203.0.113.10', 'x_real_ip: 203.0.113.11', 'Forwarded: for=203.0.113.12'];
    const codes = await send({ port: sidecar.port, ca: sidecar.servingCa.certPem }, mallory, `GET ${list}?origin=1 HTTP/1.1\r\nHost: localhost\r\n${headers.join('\r\n')}\r\nConnection: close\r\n\r\n`);
    assert.deepEqual(codes, [200]);
    const [event] = await waitForAuditEvents(cp, (e) => e.requestURI === `${list}?origin=1` && e.stage === 'ResponseComplete', 10_000);
    assert.ok(event, 'the API server recorded the request');
    assert.ok(!(event.sourceIPs ?? []).some((ip) => ip.startsWith('203.0.113.')), `sourceIPs ${JSON.stringify(event.sourceIPs)}`);
  });

  it('refuses two Impersonate-User headers with 400, where the API server would take the first', async function () {
    const mallory = sidecar.clientCert('mallory');
    const list = `/api/v1/namespaces/${namespace}/configmaps`;
    const codes = await send(
      { port: sidecar.port, ca: sidecar.servingCa.certPem },
      mallory,
      `GET ${list}?twice=1 HTTP/1.1\r\nHost: localhost\r\nImpersonate-User: root-admin\r\nimpersonate-user: mallory\r\nConnection: close\r\n\r\n`,
    );
    assert.deepEqual(codes, [400]);
    assert.deepEqual((await readAuditEvents(cp)).filter((e) => e.requestURI === `${list}?twice=1`), [], 'nothing reached the API server');
  });
});
