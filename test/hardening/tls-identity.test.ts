// A TLS identity that cannot change under you. The person behind a connection is who their client
// certificate says, verified for every request against the identity bundle as it is now: a client
// cannot renegotiate into another certificate, a CA taken out of the bundle takes its people's open
// connections with it, and a TLS session resumed from before the removal is no way back in. Each
// attack runs against the stand-in (which records exactly what was forwarded) and, where the API
// server's view matters, against the real one, with its audit log as the judge.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { Agent, request, type AgentOptions } from 'node:https';
import path from 'node:path';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { createCA, joinPemCertificates, type CertificateAndKey } from '../../lib/pki.js';
import { grantInNamespace, readAuditEvents, waitForAuditEvents, type AuditEvent } from '../../local-cluster/kube.js';
import { type LocalSidecar } from '../../local-cluster/sidecar.js';
import { figure } from './support/knobs.js';
import { renegotiate } from './support/renegotiation.js';
import { startStandIn, type StandIn } from './support/stand-in.js';
import { parseAnswer, type RawAnswer } from '../support/wire.js';
import { waitFor } from '../../local-cluster/wait.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const SELF_SUBJECT_REVIEW = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const REVIEW_BODY = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });

/** A self-signed client certificate: CN=anyone, O=any-group, for client authentication. Nobody vouches for it. */
function selfSigned(commonName: string, organization: string): CertificateAndKey {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  cert.serialNumber = randomBytes(8).toString('hex').replace(/^[89a-f]/, '1');
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3600_000);
  const name = [
    { shortName: 'O', value: organization },
    { shortName: 'CN', value: commonName },
  ];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', clientAuth: true },
  ]);
  cert.sign(forgeKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}

/** Replaces the identity bundle as the kubelet does (a rename, never half a file). */
async function writeBundle(sidecar: LocalSidecar, cas: CertificateAndKey[]): Promise<void> {
  const file = path.join(sidecar.dir, 'identity-ca.crt');
  await writeFile(`${file}.new`, joinPemCertificates(cas.map((ca) => ca.certPem)));
  await rename(`${file}.new`, file);
}

interface Answer {
  status: number;
  body: string;
  /** Whether it went over a connection kept from an earlier request. */
  reused: boolean;
  socket?: TLSSocket;
  error?: string;
}

/** A request through an agent that keeps its one connection, as client-go does. */
function viaAgent(agent: Agent, port: number, reqPath: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: reqPath, method: init.method ?? 'GET', agent, headers: init.headers ?? {} }, (res) => {
      const socket = res.socket as TLSSocket;
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket, socket }));
      res.on('error', (err) => resolve({ status: 0, body, reused: req.reusedSocket, error: err.message }));
    });
    req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ status: 0, body: '', reused: req.reusedSocket, error: err.message }));
    req.end(init.body);
  });
}

function keptAlive(sidecar: LocalSidecar, cert: CertificateAndKey, options: AgentOptions = {}): Agent {
  return new Agent({ ca: sidecar.servingCa.certPem, cert: cert.certPem, key: cert.keyPem, keepAlive: true, maxSockets: 1, maxFreeSockets: 1, ...options });
}

/** Resolves when the socket closes, or to 'open' after the time given. */
function closedWithin(socket: TLSSocket, ms: number): Promise<'closed' | 'open'> {
  if (socket.destroyed) return Promise.resolve('closed');
  return Promise.race([new Promise<'closed'>((resolve) => socket.once('close', () => resolve('closed'))), sleep(ms).then(() => 'open' as const)]);
}

/** One request on a connection of its own, optionally resuming a TLS session; says whether it resumed. */
function resumed(
  sidecar: LocalSidecar,
  cert: CertificateAndKey,
  reqPath: string,
  options: Partial<ConnectionOptions>,
): Promise<{ answer: RawAnswer; reused: boolean; session: Buffer | undefined; error?: string }> {
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    let reused = false;
    const socket = connect({ host: '127.0.0.1', port: sidecar.port, ca: sidecar.servingCa.certPem, servername: 'localhost', cert: cert.certPem, key: cert.keyPem, ...options }, () => {
      reused = socket.isSessionReused();
      socket.write(`GET ${reqPath} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    socket.on('session', (s: Buffer) => (session = s));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    let error: string | undefined;
    socket.on('error', (err: Error) => (error = err.message));
    socket.on('close', () => {
      resolve({ answer: parseAnswer(Buffer.concat(chunks).toString('latin1')), reused, session, ...(error ? { error } : {}) });
    });
  });
}

function rawGet(reqPath: string, extra = ''): string {
  return `GET ${reqPath} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`;
}

function rawReview(userAgent: string): string {
  return `POST ${SELF_SUBJECT_REVIEW} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ${userAgent}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(REVIEW_BODY)}\r\n\r\n${REVIEW_BODY}`;
}

describe('hardening: a TLS identity that cannot change under you', function () {
  this.timeout(120_000);
  const anyone = selfSigned('anyone', 'any-group');

  describe('against the stand-in', function () {
    let stand: StandIn;

    beforeEach(async function () {
      stand = await startStandIn();
    });

    afterEach(async function () {
      await stand?.stop();
    });

    const forwardedAs = (marker: string) =>
      stand.fake.seen.filter((r) => r.url.includes(marker)).map((r) => String(r.headers['impersonate-user'] ?? '(none)'));

    it('renegotiating into a self-signed certificate does not make the next request anyone’s', async function () {
      const outcome = await renegotiate(
        stand.sidecar.port,
        stand.sidecar.servingCa.certPem,
        stand.alice,
        anyone,
        rawGet('/api/v1/namespaces/team/configmaps/before-renegotiation'),
        rawGet('/api/v1/namespaces/team/configmaps/after-renegotiation'),
      );
      figure(`renegotiation (stand-in): ${JSON.stringify({ renegotiation: outcome.renegotiation, second: outcome.second?.status ?? outcome.secondFailed })}`);
      assert.equal(outcome.handshake, 'ok');
      assert.equal(outcome.first?.status, 200, 'the genuine certificate is served');
      assert.deepEqual(forwardedAs('before-renegotiation'), ['alice']);
      assert.deepEqual(forwardedAs('after-renegotiation'), [], 'nothing is forwarded after a renegotiation, as anyone or as alice');
      assert.notEqual(outcome.second?.status, 200, 'the request after the renegotiation is not served');
      assert.notEqual(outcome.renegotiation, 'ok', 'the renegotiation itself is refused');
    });

    it('renegotiating with the same certificate is refused too: the connection is closed', async function () {
      const outcome = await renegotiate(
        stand.sidecar.port,
        stand.sidecar.servingCa.certPem,
        stand.alice,
        stand.alice,
        rawGet('/api/v1/namespaces/team/configmaps/same-before'),
        rawGet('/api/v1/namespaces/team/configmaps/same-after'),
      );
      assert.equal(outcome.first?.status, 200);
      assert.notEqual(outcome.renegotiation, 'ok');
      assert.equal(outcome.second, undefined, `no answer after a refused renegotiation (${outcome.secondFailed})`);
    });

    it('removing a CA from the bundle closes the open connections of its people, and nothing more is forwarded as them', async function () {
      const ca2 = createCA({ commonName: 'identity-2' });
      const bob = stand.sidecar.clientCert('bob', ['dev'], {}, ca2);
      await writeBundle(stand.sidecar, [stand.sidecar.identityCa, ca2]);
      await waitFor('the second CA is trusted', async () => (await stand.get('/version', { cert: bob })).status === 200);

      const aliceAgent = keptAlive(stand.sidecar, stand.alice);
      const bobAgent = keptAlive(stand.sidecar, bob);
      try {
        const first = await viaAgent(aliceAgent, stand.sidecar.port, '/api/v1/namespaces/team/configmaps/kept-1');
        assert.equal(first.status, 200);
        const bobFirst = await viaAgent(bobAgent, stand.sidecar.port, '/api/v1/namespaces/team/configmaps/bob-1');
        assert.equal(bobFirst.status, 200);
        const kept = first.socket!;
        const bobKept = bobFirst.socket!;
        const removedAt = Date.now();
        await writeBundle(stand.sidecar, [ca2]);
        await waitFor('new connections of the removed CA are refused', async () => (await stand.get('/version')).status === 401);
        const closed = await closedWithin(kept, 5000);
        figure(`CA removal (stand-in): alice's kept connection ${closed} ${Date.now() - removedAt} ms after the removal`);

        const after = await viaAgent(aliceAgent, stand.sidecar.port, '/api/v1/namespaces/team/configmaps/kept-after-removal');
        assert.deepEqual(forwardedAs('kept-after-removal'), [], `forwarded after the CA was removed (status ${after.status}, on a kept connection: ${after.reused})`);
        assert.equal(closed, 'closed', 'the sidecar closed the connection of the removed CA');
        assert.equal(after.status, 401);

        // A person of the CA that stays keeps their connection.
        const bobAfter = await viaAgent(bobAgent, stand.sidecar.port, '/api/v1/namespaces/team/configmaps/bob-2');
        assert.equal(bobAfter.status, 200);
        assert.ok(bobAfter.reused && bobAfter.socket === bobKept, 'the connection of a CA still in the bundle stays open');
      } finally {
        aliceAgent.destroy();
        bobAgent.destroy();
      }
    });

    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      it(`a ${version} session from before the CA was removed does not resume into trust`, async function () {
        const ca2 = createCA({ commonName: 'identity-2' });
        const tls = { minVersion: version, maxVersion: version };
        const before = await resumed(stand.sidecar, stand.alice, '/api/v1/namespaces/team/configmaps/session-before', tls);
        assert.equal(before.answer.status, 200);
        assert.ok(before.session, 'the sidecar gave a session to resume');
        // The session resumes while the CA is still trusted (resumption itself is not refused).
        const again = await resumed(stand.sidecar, stand.alice, '/api/v1/namespaces/team/configmaps/session-again', { ...tls, session: before.session });
        assert.equal(again.answer.status, 200);
        assert.ok(again.reused, 'the session was resumed while the CA was trusted');

        await writeBundle(stand.sidecar, [ca2]);
        await waitFor('new connections of the removed CA are refused', async () => (await stand.get('/version')).status === 401);
        const after = await resumed(stand.sidecar, stand.alice, '/api/v1/namespaces/team/configmaps/session-after', { ...tls, session: again.session ?? before.session });
        figure(`session resumption (${version}): resumed while trusted ${again.reused}; after the removal: resumed ${after.reused}, status ${after.answer.status}`);
        assert.deepEqual(forwardedAs('session-after'), [], 'a resumed session of a removed CA is not served');
        assert.equal(after.answer.status, 401);
      });
    }
  });

  describe('against the real API server (its audit log as the judge)', function () {
    const { cp, clients } = withSharedControlPlane();
    const sidecar = withSidecar();

    before(async function () {
      await grantInNamespace(cp, clients, sidecar.namespace, 'view', 'alice'); // for a watch that stays open
    });

    /** Every request the API server ran for this sidecar's scoped account with this user agent. */
    async function ranWith(userAgent: string): Promise<AuditEvent[]> {
      return (await readAuditEvents(cp)).filter((e) => e.user.username === sidecar.serviceAccountUsername && e.userAgent === userAgent);
    }

    it('renegotiation: no request runs as the self-signed certificate’s person', async function () {
      const alice = sidecar.clientCert('alice', ['dev']);
      const [ua1, ua2] = [`tls-identity-${randomBytes(4).toString('hex')}-1`, `tls-identity-${randomBytes(4).toString('hex')}-2`];
      const outcome = await renegotiate(sidecar.port, sidecar.servingCa.certPem, alice, anyone, rawReview(ua1), rawReview(ua2));
      assert.equal(outcome.first?.status, 201, outcome.first?.body);
      const asAlice = await waitForAuditEvents(cp, (e) => e.userAgent === ua1 && e.user.username === sidecar.serviceAccountUsername);
      assert.deepEqual(
        asAlice.map((e) => e.impersonatedUser?.username),
        ['alice'],
        'the judge sees the first request, as alice',
      );
      await sleep(1000); // the API server writes an event once the response is complete
      const second = await ranWith(ua2);
      figure(`renegotiation (API server): ${JSON.stringify({ renegotiation: outcome.renegotiation, second: outcome.second?.status ?? outcome.secondFailed, ranAs: second.map((e) => e.impersonatedUser?.username) })}`);
      assert.deepEqual(
        second.map((e) => `${e.verb} ${e.requestURI} as ${e.impersonatedUser?.username} ${JSON.stringify(e.impersonatedUser?.groups)}`),
        [],
        'the API server ran nothing after the renegotiation',
      );
      assert.notEqual(outcome.second?.status, 201, outcome.second?.body);
    });

    it('CA removal: nothing runs as the removed CA’s person on a connection opened before, and their watch ends', async function () {
      const ca2 = createCA({ commonName: 'identity-2' });
      const bob = sidecar.clientCert('bob', ['dev'], {}, ca2);
      const alice = sidecar.clientCert('alice', ['dev']);
      await writeBundle(sidecar, [sidecar.identityCa, ca2]);
      const review = (agent: Agent, userAgent: string) =>
        viaAgent(agent, sidecar.port, SELF_SUBJECT_REVIEW, { method: 'POST', headers: { 'content-type': 'application/json', 'user-agent': userAgent }, body: REVIEW_BODY });
      const fresh = (cert: CertificateAndKey) => keptAlive(sidecar, cert, { keepAlive: false });
      await waitFor('the second CA is trusted', async () => (await review(fresh(bob), 'probe')).status === 201);

      const marker = `tls-identity-${randomBytes(4).toString('hex')}`;
      const aliceAgent = keptAlive(sidecar, alice);
      try {
        const first = await review(aliceAgent, `${marker}-before`);
        assert.equal(first.status, 201, first.body);
        const kept = first.socket!;
        // A watch of alice's, open across the removal.
        const watch = await new Promise<{ status: number; ended: Promise<string> }>((resolve, reject) => {
          const req = request(
            { host: '127.0.0.1', port: sidecar.port, path: `/api/v1/namespaces/${sidecar.namespace}/configmaps?watch=true`, ca: sidecar.servingCa.certPem, cert: alice.certPem, key: alice.keyPem, agent: false },
            (res) => {
              res.resume();
              const ended = new Promise<string>((done) => {
                res.once('end', () => done('end'));
                res.once('error', () => done('error'));
                res.once('aborted', () => done('aborted'));
                res.socket.once('close', () => done('closed'));
              });
              resolve({ status: res.statusCode ?? 0, ended });
            },
          );
          req.on('error', reject);
          req.end();
        });
        assert.equal(watch.status, 200, 'alice watches config maps');

        // Used just before, so that the sidecar's keep-alive timeout (5 s) cannot be what closes it.
        assert.equal((await review(aliceAgent, `${marker}-before`)).reused, true);
        const removedAt = Date.now();
        await writeBundle(sidecar, [ca2]);
        await waitFor('new connections of the removed CA are refused', async () => (await review(fresh(alice), 'probe')).status === 401);
        const after = await review(aliceAgent, `${marker}-after`);
        const closed = await closedWithin(kept, 1000);
        const watchEnded = await Promise.race([watch.ended, sleep(3000).then(() => 'still open')]);
        figure(
          `CA removal (API server): the request after: ${after.status} (on the kept connection: ${after.reused}); kept connection ${closed}, watch ${watchEnded}, ${Date.now() - removedAt} ms after the removal`,
        );

        await sleep(1000); // the API server writes an event once the response is complete
        const ran = await ranWith(`${marker}-after`);
        assert.deepEqual(
          ran.map((e) => `${e.verb} ${e.requestURI} as ${e.impersonatedUser?.username}`),
          [],
          `the API server ran a request of the removed CA's person (status ${after.status}, kept connection: ${after.reused})`,
        );
        assert.equal(after.status, 401);
        assert.equal(closed, 'closed', 'the connection of the removed CA was closed');
        assert.notEqual(watchEnded, 'still open', 'the watch of the removed CA ended');
        // And bob, of the CA that stays, is served.
        assert.equal((await review(fresh(bob), `${marker}-bob`)).status, 201);
      } finally {
        aliceAgent.destroy();
        await writeBundle(sidecar, [sidecar.identityCa]);
      }
    });
  });
});
