// People by client certificate: what the identity bundle vouches for (Go's x509 Verify with
// ExtKeyUsageClientAuth, then CN, O and uid as the API server reads them), and the authenticator on
// real TLS connections of the listeners: the certificate of the handshake, verified against the
// bundle as it is at each request.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { pino } from 'pino';
import { createCA, issueCertificate, joinPemCertificates, type CertificateAndKey } from '../../../../lib/pki.js';
import { ClientCertificateAuthenticator, pinHandshake } from '../../../../sidecar/authn/client-cert.js';
import { IdentityBundle, UnusableBundle, type Verdict } from '../../../../sidecar/authn/identity-bundle.js';
import { TlsListeners } from '../../../../lib/tls-listeners.js';
import { IdentityTrust } from '../../../../sidecar/authn/connection-trust.js';
import { waitFor } from '../../../../local-cluster/wait.js';

const UID = '1.3.6.1.4.1.57683.2';
const HOUR = 3600_000;

interface Key {
  pem: string;
  forge: forge.pki.rsa.PrivateKey;
  public: forge.pki.PublicKey;
}

function newKey(): Key {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(pem);
  return { pem, forge: key, public: forge.pki.setRsaPublicKey(key.n, key.e) };
}

// Key generation is what costs: a few keys for every certificate.
const KEYS = { ca: newKey(), other: newKey(), leaf: newKey() };

interface Built extends CertificateAndKey {
  cert: forge.pki.Certificate;
  key: Key;
}

interface Spec {
  subject: forge.pki.CertificateField[];
  /** The signer; self-signed when absent. */
  issuer?: Built;
  key?: Key;
  /** basicConstraints: cA true or false, or no extension at all. */
  ca?: boolean | 'absent';
  /** keyUsage bits, or no extension at all. */
  keyUsage?: Record<string, boolean> | 'absent';
  /** extKeyUsage: clientAuth and friends, or no extension at all. */
  eku?: Record<string, boolean> | 'absent';
  extensions?: object[];
  notBefore?: Date;
  notAfter?: Date;
  md?: 'sha1' | 'sha256';
}

const cn = (value: string): forge.pki.CertificateField => ({ shortName: 'CN', value });
const o = (value: string): forge.pki.CertificateField => ({ shortName: 'O', value });
const uid = (value: string): forge.pki.CertificateField => ({ type: UID, value, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class });

let serial = 1;

function build(spec: Spec): Built {
  const key = spec.key ?? KEYS.leaf;
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.public;
  cert.serialNumber = (serial++).toString(16).padStart(4, '0');
  cert.validity.notBefore = spec.notBefore ?? new Date(Date.now() - HOUR);
  cert.validity.notAfter = spec.notAfter ?? new Date(Date.now() + HOUR);
  cert.setSubject(spec.subject);
  cert.setIssuer(spec.issuer ? spec.issuer.cert.subject.attributes : spec.subject);
  const extensions: object[] = [];
  if (spec.ca !== 'absent') extensions.push({ name: 'basicConstraints', cA: spec.ca ?? false, critical: true });
  if (spec.keyUsage !== 'absent') extensions.push({ name: 'keyUsage', critical: true, ...(spec.keyUsage ?? (spec.ca === true ? { keyCertSign: true, cRLSign: true } : { digitalSignature: true, keyEncipherment: true })) });
  if (spec.eku !== 'absent' && (spec.eku || spec.ca !== true)) extensions.push({ name: 'extKeyUsage', ...(spec.eku ?? { clientAuth: true }) });
  cert.setExtensions([...extensions, ...(spec.extensions ?? [])]);
  const signer = spec.issuer?.key ?? key;
  cert.sign(signer.forge, spec.md === 'sha1' ? forge.md.sha1.create() : forge.md.sha256.create());
  return { cert, key, certPem: forge.pki.certificateToPem(cert), keyPem: key.pem };
}

function ca(name: string, spec: Partial<Spec> = {}): Built {
  return build({ subject: [cn(name)], ca: true, key: KEYS.ca, ...spec });
}

function person(issuer: Built, subject: forge.pki.CertificateField[], spec: Partial<Spec> = {}): Built {
  return build({ subject, issuer, ...spec });
}

async function bundleOf(...cas: CertificateAndKey[]): Promise<IdentityBundle> {
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-bundle-'));
  const file = path.join(dir, 'ca.crt');
  await writeFile(file, joinPemCertificates(cas.map((c) => c.certPem)));
  return new IdentityBundle(file);
}

function verify(bundle: IdentityBundle, cert: CertificateAndKey, now?: number): Verdict {
  return bundle.verify(new X509Certificate(cert.certPem), now);
}

/** The CA and a person it issued. */
function withCa(issuer: Built): [Built, Built] {
  return [issuer, person(issuer, [cn('a')])];
}

function reasonOf(verdict: Verdict): string {
  assert.ok(!verdict.trusted, `trusted as ${JSON.stringify(verdict.trusted && verdict.identity)}`);
  return verdict.reason;
}

describe('sidecar/authn/identity-bundle (what vouches for a person)', function () {
  this.timeout(20_000);
  const identityCa = ca('identity');
  let bundle: IdentityBundle;

  before(async function () {
    bundle = await bundleOf(identityCa);
  });

  it('a person of the bundle: CN, every O in order, and the uid', function () {
    const verdict = verify(bundle, person(identityCa, [o('dev'), o('ops'), cn('alice'), uid('4711')]));
    assert.ok(verdict.trusted);
    assert.deepEqual(verdict.identity, { username: 'alice', groups: ['dev', 'ops'], uid: '4711', extra: {} });
    const noUid = verify(bundle, person(identityCa, [cn('bob')]));
    assert.ok(noUid.trusted);
    assert.equal('uid' in noUid.identity, false, 'no uid attribute, no uid');
  });

  it('the uid as the API server reads it: wherever it stands in the subject, at most one, never empty', function () {
    const first = verify(bundle, person(identityCa, [uid('u-1'), o('dev'), cn('carol')]));
    assert.ok(first.trusted && first.identity.uid === 'u-1');
    assert.match(reasonOf(verify(bundle, person(identityCa, [cn('dave'), uid('1'), uid('2')]))), /2 uid attributes/);
    assert.match(reasonOf(verify(bundle, person(identityCa, [uid('1'), cn('dave'), uid('1')]))), /2 uid attributes/, 'two, even when equal');
    assert.match(reasonOf(verify(bundle, person(identityCa, [cn('erin'), uid('')]))), /empty uid/);
  });

  it('refuses a certificate of another CA, and of an impostor CA with the same name but another key', function () {
    const other = ca('other', { key: KEYS.other });
    assert.match(reasonOf(verify(bundle, person(other, [cn('mallory')]))), /not issued by a CA of the identity bundle/);
    const impostor = ca('identity', { key: KEYS.other });
    assert.match(reasonOf(verify(bundle, person(impostor, [cn('mallory')]))), /signature does not verify/);
  });

  it('refuses what Go would not verify for client authentication', async function () {
    const odd = (spec: Partial<Spec>) => ca('identity', spec);
    const cases: [string, Built, Built, RegExp][] = [
      ['a CA that is not a CA', ...withCa(odd({ ca: false })), /not a CA/],
      ['a v3 CA without basic constraints', ...withCa(odd({ ca: 'absent' })), /not a CA/],
      ['a CA whose key usage leaves out keyCertSign', ...withCa(odd({ keyUsage: { digitalSignature: true } })), /keyCertSign/],
      ['a CA for server authentication only', ...withCa(odd({ eku: { serverAuth: true } })), /not for client authentication/],
      ['a CA with an unknown critical extension', ...withCa(odd({ extensions: [{ id: '1.2.3.4.5', critical: true, value: '\u0005\u0000' }] })), /critical extension/],
      ['a leaf for server authentication only', identityCa, person(identityCa, [cn('a')], { eku: { serverAuth: true } }), /clientAuth/],
      ['a leaf without extended key usage (Go would take it; the sidecar asks for clientAuth)', identityCa, person(identityCa, [cn('a')], { eku: 'absent' }), /clientAuth/],
      ['a SHA-1 signature', identityCa, person(identityCa, [cn('a')], { md: 'sha1' }), /algorithm/],
      ['an unknown critical extension', identityCa, person(identityCa, [cn('a')], { extensions: [{ id: '1.2.3.4.5', critical: true, value: '\u0005\u0000' }] }), /critical extension/],
      ['no common name', identityCa, person(identityCa, [o('dev')]), /no common name/],
      ['a PrintableString the API server would not read', identityCa, person(identityCa, [{ shortName: 'CN', value: 'a@b', valueTagClass: forge.asn1.Type.PRINTABLESTRING as unknown as forge.asn1.Class }]), /would not read/],
    ];
    for (const [what, issuer, cert, reason] of cases) {
      assert.match(reasonOf(verify(issuer === identityCa ? bundle : await bundleOf(issuer), cert)), reason, what);
    }
  });

  it('a CA or a person outside their validity: the window a verdict holds for says so', async function () {
    const expiredCa = ca('identity', { notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - 60_000) });
    const ofExpired = verify(await bundleOf(expiredCa), person(expiredCa, [cn('a')]));
    assert.ok(ofExpired.trusted && Date.now() > ofExpired.notAfter, 'the window ends with the CA');
    const notYet = verify(bundle, person(identityCa, [cn('b')], { notBefore: new Date(Date.now() + 60_000) }));
    assert.ok(notYet.trusted && Date.now() < notYet.notBefore, 'the window starts with the person');
  });

  it('the window a verdict holds for: the later start and the earlier end of the person and the CA', function () {
    const notAfter = new Date(Date.now() + 10 * 60_000);
    const verdict = verify(bundle, person(identityCa, [cn('frank')], { notAfter }));
    assert.ok(verdict.trusted);
    assert.equal(verdict.notAfter, Math.floor(notAfter.getTime() / 1000) * 1000);
  });

  it('refuses a certificate of the bundle itself, and one issued by an intermediate the bundle does not hold', function () {
    assert.match(reasonOf(verify(bundle, identityCa)), /bundle itself|clientAuth/);
    const intermediate = build({ subject: [cn('intermediate')], issuer: identityCa, ca: true, key: KEYS.other, eku: 'absent' });
    assert.match(reasonOf(verify(bundle, person(intermediate, [cn('gina')]))), /not issued by a CA of the identity bundle/);
  });

  it('two CAs of one name (a CA renewed with a new key): people of either are trusted', async function () {
    const renewed = ca('identity', { key: KEYS.other });
    const both = await bundleOf(identityCa, renewed);
    assert.ok(verify(both, person(identityCa, [cn('old')])).trusted);
    assert.ok(verify(both, person(renewed, [cn('new')])).trusted);
  });

  it('a new generation for each change; a bundle missing, empty, half-written or unreadable changes nothing', async function () {
    const other = ca('other', { key: KEYS.other });
    const b = await bundleOf(identityCa);
    const g = b.generation;
    assert.equal(b.replace(readFileSync(b.file)), false, 'the same content is no change');
    const halfWritten = `${identityCa.certPem}${other.certPem.slice(0, 200)}`;
    for (const content of [undefined, Buffer.from('-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n'), Buffer.from(halfWritten)]) {
      assert.throws(() => b.replace(content), UnusableBundle);
    }
    assert.equal(b.generation, g);
    assert.ok(verify(b, person(identityCa, [cn('alice')])).trusted);
    assert.equal(b.replace(Buffer.from(other.certPem)), true);
    assert.equal(b.generation, g + 1);
    assert.match(reasonOf(verify(b, person(identityCa, [cn('alice')]))), /not issued by a CA of the identity bundle/);
  });

  it('refuses to start from a file that holds no certificate, naming it', async function () {
    const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-bundle-'));
    await writeFile(path.join(dir, 'empty.crt'), '');
    assert.throws(() => new IdentityBundle(path.join(dir, 'empty.crt')), /empty\.crt/);
    assert.throws(() => new IdentityBundle(path.join(dir, 'missing.crt')), /missing\.crt/);
  });
});

interface Seen {
  outcome: string;
  username?: string;
  groups?: string[];
  uid?: string;
  reason?: string;
}

/** What the authenticator made of each request, as the body of the answer. */
async function seenBy(authenticator: ClientCertificateAuthenticator, req: IncomingMessage): Promise<Seen> {
  const result = await authenticator.authenticate(req);
  if (result.outcome === 'success') {
    const { username, groups, uid: id } = result.authenticated.identity;
    return { outcome: result.outcome, username, groups, ...(id !== undefined ? { uid: id } : {}) };
  }
  return { outcome: result.outcome, ...(result.outcome === 'failure' ? { reason: result.reason } : {}) };
}

function ask(port: number, agent: Agent): Promise<{ seen: Seen; socket: TLSSocket; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      const socket = res.socket as TLSSocket;
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ seen: JSON.parse(body) as Seen, socket, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function replaceFile(file: string, content: string): Promise<void> {
  await writeFile(`${file}.new`, content);
  await rename(`${file}.new`, file);
}

describe('sidecar/authn/client-cert (on the listeners’ connections)', function () {
  this.timeout(20_000);
  let dir: string;
  let caFile: string;
  let listeners: TlsListeners;
  let port: number;
  const logLines: string[] = [];
  const servingCa = createCA({ commonName: 'serving' });
  const serving = issueCertificate(servingCa, { commonName: 'chaperone', usage: 'server', ipAddresses: ['127.0.0.1'] });
  const identity1 = createCA({ commonName: 'identity-1' });
  const identity2 = createCA({ commonName: 'identity-2' });
  const alice = issueCertificate(identity1, { commonName: 'alice', organizations: ['dev'], usage: 'client' });
  const bob = issueCertificate(identity2, { commonName: 'bob', usage: 'client' });
  /** The next request waits for this before it is answered. */
  let holdNext: Promise<void> | undefined;
  let holding = false;
  const agentFor = (cert: CertificateAndKey) => new Agent({ ca: servingCa.certPem, cert: cert.certPem, key: cert.keyPem, keepAlive: true, maxSockets: 1 });

  beforeEach(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-client-cert-'));
    caFile = path.join(dir, 'ca.crt');
    await Promise.all([writeFile(path.join(dir, 'tls.crt'), serving.certPem), writeFile(path.join(dir, 'tls.key'), serving.keyPem), writeFile(caFile, identity1.certPem)]);
    const bundle = new IdentityBundle(caFile);
    const authenticator = new ClientCertificateAuthenticator(bundle);
    const log = pino({ level: 'info' }, { write: (line: string) => void logLines.push(line) });
    listeners = new TlsListeners(
      { certFile: path.join(dir, 'tls.crt'), keyFile: path.join(dir, 'tls.key'), clientTrust: new IdentityTrust(bundle, log) },
      {
        request: (req, res) => {
          const wait = holdNext;
          holdNext = undefined;
          holding = wait !== undefined;
          void seenBy(authenticator, req).then(async (seen) => {
            await wait;
            holding = false;
            res.end(JSON.stringify(seen));
          });
        },
      },
      log,
    );
    port = (await listeners.listen(['127.0.0.1:0']))[0]!.port;
    logLines.length = 0;
  });

  afterEach(async function () {
    listeners.closeAllConnections();
    await listeners.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the person of the handshake’s certificate, on every request of a kept connection', async function () {
    const agent = agentFor(alice);
    const first = await ask(port, agent);
    const second = await ask(port, agent);
    assert.deepEqual(first.seen, { outcome: 'success', username: 'alice', groups: ['dev'] });
    assert.deepEqual(second.seen, first.seen);
    assert.ok(second.reused && second.socket === first.socket);
    agent.destroy();
  });

  it('a CA taken out of the bundle: its people’s open connections are closed, with a log line naming whom', async function () {
    const agent = agentFor(alice);
    const { socket } = await ask(port, agent);
    const closed = new Promise((resolve) => socket.once('close', resolve));
    await replaceFile(caFile, identity2.certPem);
    await closed;
    await waitFor('the log line', () => logLines.some((l) => l.includes('no longer trusts') && l.includes('"user":"alice"')));
    const again = await ask(port, agent);
    assert.equal(again.reused, false);
    assert.equal(again.seen.outcome, 'failure');
    agent.destroy();
  });

  it('a CA added to the bundle: a connection it vouches for is served from the next request, without reconnecting', async function () {
    const agent = agentFor(bob);
    const before = await ask(port, agent);
    assert.equal(before.seen.outcome, 'failure');
    await replaceFile(caFile, joinPemCertificates([identity1.certPem, identity2.certPem]));
    await waitFor('the new bundle', () => logLines.some((l) => l.includes('reloaded the identity CA bundle')));
    const after = await ask(port, agent);
    assert.ok(after.reused && after.socket === before.socket, 'the same connection');
    assert.deepEqual(after.seen, { outcome: 'success', username: 'bob', groups: [] });
    agent.destroy();
  });

  for (const [what, content] of [
    ['does not parse', '-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n'],
    ['is empty (a careless tool writing it)', ''],
  ] as const) {
    it(`a bundle that ${what} changes nothing: open connections stay, the previous CAs still count`, async function () {
      const agent = agentFor(alice);
      const { socket } = await ask(port, agent);
      await replaceFile(caFile, content);
      await waitFor('the warning', () => logLines.some((l) => l.includes('keeping the previous one')));
      const again = await ask(port, agent);
      assert.ok(again.reused && again.socket === socket);
      assert.equal(again.seen.username, 'alice');
      assert.equal((await ask(port, agentFor(alice))).seen.username, 'alice', 'new connections too');
      agent.destroy();
    });
  }

  it('a request in progress when its CA is removed may finish; the connection closes after it', async function () {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const agent = agentFor(alice);
    const { socket } = await ask(port, agent);
    holdNext = held;
    const slow = ask(port, agent);
    await waitFor('the request is in progress', () => holding);
    await replaceFile(caFile, identity2.certPem);
    await waitFor('the log line', () => logLines.some((l) => l.includes('no longer trusts')));
    assert.equal(socket.destroyed, false, 'not cut while its request is in progress');
    release();
    const answer = await slow;
    assert.equal(answer.seen.username, 'alice');
    await waitFor('closed after the response', () => socket.destroyed);
    agent.destroy();
  });
});

describe('sidecar/authn/client-cert (connections it did not see begin)', function () {
  const identity = createCA({ commonName: 'identity' });
  const alice = issueCertificate(identity, { commonName: 'alice', usage: 'client' });
  const mallory = issueCertificate(identity, { commonName: 'mallory', usage: 'client' });

  /** Just enough of a TLSSocket: its peer certificate can be changed by the test. */
  class FakeSocket extends EventEmitter {
    peer: X509Certificate | undefined;
    destroyed = false;
    constructor(cert?: CertificateAndKey) {
      super();
      this.peer = cert ? new X509Certificate(cert.certPem) : undefined;
    }
    getPeerX509Certificate(): X509Certificate | undefined {
      return this.peer;
    }
    destroy(): void {
      this.destroyed = true;
    }
  }

  const requestOn = (socket: FakeSocket) => ({ socket }) as unknown as IncomingMessage;
  let authenticator: ClientCertificateAuthenticator;

  before(async function () {
    authenticator = new ClientCertificateAuthenticator(await bundleOf(identity));
  });

  it('a certificate on a connection whose handshake was not pinned is refused', async function () {
    const result = await authenticator.authenticate(requestOn(new FakeSocket(alice)));
    assert.equal(result.outcome, 'failure');
    assert.equal((await authenticator.authenticate(requestOn(new FakeSocket()))).outcome, 'no-credential');
  });

  it('a peer certificate that is not the handshake’s is refused, and the connection closed', async function () {
    const socket = new FakeSocket(alice);
    pinHandshake(socket as unknown as TLSSocket, () => undefined);
    assert.equal((await authenticator.authenticate(requestOn(socket))).outcome, 'success');
    socket.peer = new X509Certificate(mallory.certPem);
    const result = await authenticator.authenticate(requestOn(socket));
    assert.equal(result.outcome, 'failure');
    assert.match(result.outcome === 'failure' ? result.reason : '', /changed after the handshake/);
    assert.ok(socket.destroyed);
  });

  it('a second handshake on the connection: nothing on it is trusted any more', async function () {
    const socket = new FakeSocket(alice);
    let told = 0;
    pinHandshake(socket as unknown as TLSSocket, () => told++);
    socket.emit('secure');
    assert.equal(told, 1);
    assert.equal((await authenticator.authenticate(requestOn(socket))).outcome, 'failure');
    assert.ok(socket.destroyed);
  });

  it('a certificate presented only after a handshake without one is refused', async function () {
    const socket = new FakeSocket();
    pinHandshake(socket as unknown as TLSSocket, () => undefined);
    assert.equal((await authenticator.authenticate(requestOn(socket))).outcome, 'no-credential');
    socket.peer = new X509Certificate(alice.certPem);
    assert.equal((await authenticator.authenticate(requestOn(socket))).outcome, 'failure');
    assert.ok(socket.destroyed);
  });
});
