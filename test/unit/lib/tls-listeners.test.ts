// The listeners: certificates swapped under a running server without dropping connections.
import assert from 'node:assert/strict';
import { constants as cryptoConstants, X509Certificate } from 'node:crypto';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { connect, createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCA, issueCertificate, type CertificateAndKey } from '../../../lib/pki.js';
import { pino } from 'pino';
import { IdentityBundle } from '../../../sidecar/authn/identity-bundle.js';
import { IdentityTrust } from '../../../sidecar/authn/connection-trust.js';
import { TlsListeners } from '../../../lib/tls-listeners.js';
import { waitFor } from '../../../local-cluster/wait.js';

interface Answer {
  status: number;
  body: string;
  servedBy: string;
}

function get(port: number, agent: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let body = '';
      const servedBy = (res.socket as TLSSocket).getPeerCertificate().serialNumber;
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, servedBy }));
    });
    req.on('error', reject);
    req.end();
  });
}

function serialOf(cert: CertificateAndKey): string {
  return new X509Certificate(cert.certPem).serialNumber;
}

/** Writes atomically, as the kubelet does, so a reload never sees half a file. */
async function replace(file: string, content: string): Promise<void> {
  await writeFile(`${file}.new`, content);
  await rename(`${file}.new`, file);
}

/** Writes the whole request (it may be far larger than the server reads) and collects what comes back until the server closes. */
function sendRaw(port: number, ca: string, requestText: string): Promise<{ text: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ca }, () => socket.write(requestText));
    const chunks: Buffer[] = [];
    let error: string | undefined;
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: Error) => (error = err.message));
    socket.on('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1'), ...(error ? { error } : {}) }));
  });
}

/** Asks for a renegotiation: null once it completed, else the error (Node reports a failed one as the socket's error, not to the callback). */
function renegotiation(socket: TLSSocket): Promise<Error | null> {
  return new Promise((resolve) => {
    socket.once('error', resolve);
    socket.once('close', () => resolve(new Error('closed')));
    if (!socket.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err))) resolve(new Error('not even started'));
  });
}

/** A bare TLS server (not the listeners), to see what each of Node's and OpenSSL's refusals does alone. */
async function renegotiateAgainst(serverOptions: TlsOptions, onConnection: (socket: TLSSocket) => void): Promise<{ error: string | undefined; handshakes: number }> {
  const servingCa = createCA({ commonName: 'serving' });
  const serving = issueCertificate(servingCa, { commonName: 'x', usage: 'server', ipAddresses: ['127.0.0.1'] });
  let handshakes = 0;
  const server = createTlsServer({ cert: serving.certPem, key: serving.keyPem, minVersion: 'TLSv1.2', ...serverOptions }, (socket) => {
    handshakes = 1;
    socket.on('secure', () => handshakes++);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    const socket = connect({ host: '127.0.0.1', port, ca: servingCa.certPem, maxVersion: 'TLSv1.2' });
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    const error = await renegotiation(socket);
    socket.destroy();
    return { error: error?.message, handshakes };
  } finally {
    server.close();
  }
}

describe('renegotiation: what each of the two refusals does alone (Node 24, OpenSSL 3)', function () {
  it('SSL_OP_NO_RENEGOTIATION: OpenSSL refuses it, answering the client with a no_renegotiation alert', async function () {
    const outcome = await renegotiateAgainst({ secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION }, () => undefined);
    assert.match(outcome.error ?? '', /no renegotiation/);
  });

  it('disableRenegotiation() only reports it: a server that does not close the socket on that error renegotiates anyway', async function () {
    let reported = '';
    const outcome = await renegotiateAgainst({}, (socket) => {
      socket.disableRenegotiation();
      socket.on('error', (err: Error) => (reported = err.message));
    });
    assert.match(reported, /renegotiation disabled/);
    assert.equal(outcome.error, undefined, 'the renegotiation completed');
    assert.equal(outcome.handshakes, 2);
  });
});

describe('lib/tls-listeners, with the identity CA as client trust', function () {
  this.timeout(20_000);
  let dir: string;
  let listeners: TlsListeners;
  let ports: number[];
  const logLines: string[] = [];
  const servingCa1 = createCA({ commonName: 'serving-1' });
  const servingCa2 = createCA({ commonName: 'serving-2' });
  const identityCa1 = createCA({ commonName: 'identity-1' });
  const identityCa2 = createCA({ commonName: 'identity-2' });
  const serving1 = issueCertificate(servingCa1, { commonName: 'chaperone', usage: 'server', ipAddresses: ['127.0.0.1'] });
  const serving2 = issueCertificate(servingCa2, { commonName: 'chaperone', usage: 'server', ipAddresses: ['127.0.0.1'] });

  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-server-'));
    await writeFile(path.join(dir, 'tls.crt'), serving1.certPem);
    await writeFile(path.join(dir, 'tls.key'), serving1.keyPem);
    await writeFile(path.join(dir, 'ca.crt'), identityCa1.certPem);
    const log = pino({ level: 'warn' }, { write: (line: string) => void logLines.push(line) });
    listeners = new TlsListeners(
      { certFile: path.join(dir, 'tls.crt'), keyFile: path.join(dir, 'tls.key'), clientTrust: new IdentityTrust(new IdentityBundle(path.join(dir, 'ca.crt')), log) },
      {
        request: (req, res) => {
          const socket = req.socket as TLSSocket;
          res.end(socket.authorized ? `client ${String(socket.getPeerCertificate().subject.CN)}` : 'anonymous');
        },
      },
      log,
    );
    ports = (await listeners.listen(['127.0.0.1:0', '127.0.0.1:0'])).map((l) => l.port);
  });

  after(async function () {
    await listeners.close();
  });

  it('serves on the main and the extra listener, asking for a client certificate without requiring one', async function () {
    for (const port of ports) {
      const anonymous = await get(port, new Agent({ ca: servingCa1.certPem }));
      assert.equal(anonymous.body, 'anonymous');
      const alice = issueCertificate(identityCa1, { commonName: 'alice', usage: 'client' });
      const withCert = await get(port, new Agent({ ca: servingCa1.certPem, cert: alice.certPem, key: alice.keyPem }));
      assert.equal(withCert.body, 'client alice');
    }
  });

  it('swaps in a new serving certificate and identity CA without dropping open connections', async function () {
    const keepAlive = new Agent({ ca: servingCa1.certPem, keepAlive: true, maxSockets: 1 });
    const before = await get(ports[0]!, keepAlive);
    assert.equal(before.servedBy, serialOf(serving1));

    await replace(path.join(dir, 'tls.key'), serving2.keyPem);
    await replace(path.join(dir, 'tls.crt'), serving2.certPem);
    await replace(path.join(dir, 'ca.crt'), identityCa2.certPem);

    await waitFor('the new serving certificate', async () => (await get(ports[0]!, new Agent({ ca: servingCa2.certPem }))).servedBy === serialOf(serving2));
    const stillOpen = await get(ports[0]!, keepAlive);
    assert.equal(stillOpen.status, 200, 'the connection opened before the rotation still works');
    assert.equal(stillOpen.servedBy, serialOf(serving1));
    await assert.rejects(get(ports[1]!, new Agent({ ca: servingCa1.certPem })), /self-signed|unable to verify|certificate/i);

    // The identity CA file is replaced after the serving certificate, and reloaded on its own: wait for it too.
    const bob = issueCertificate(identityCa2, { commonName: 'bob', usage: 'client' });
    await waitFor('the new identity CA', async () => (await get(ports[1]!, new Agent({ ca: servingCa2.certPem, cert: bob.certPem, key: bob.keyPem }))).body === 'client bob');
    const oldAlice = issueCertificate(identityCa1, { commonName: 'alice', usage: 'client' });
    assert.equal((await get(ports[1]!, new Agent({ ca: servingCa2.certPem, cert: oldAlice.certPem, key: oldAlice.keyPem }))).body, 'anonymous');
    keepAlive.destroy();
  });

  for (const kib of [80, 256, 1024]) {
    it(`answers ${kib} KiB of headers with a 431 Status the client gets to read, not a reset`, async function () {
      const answer = await sendRaw(ports[0]!, servingCa1.certPem + servingCa2.certPem, `GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'b'.repeat(kib * 1024)}\r\n\r\n`);
      assert.match(answer.text, /^HTTP\/1\.1 431 /, `got ${JSON.stringify(answer.text.slice(0, 80))} ${answer.error ?? ''}`);
      const body = JSON.parse(answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4)) as { kind: string; code: number };
      assert.deepEqual([body.kind, body.code], ['Status', 431]);
    });
  }

  it('refuses a TLS renegotiation: the connection is closed and serves nothing after it', async function () {
    const alice = issueCertificate(identityCa2, { commonName: 'alice', usage: 'client' });
    const socket = connect({ host: '127.0.0.1', port: ports[0]!, ca: [servingCa1.certPem, servingCa2.certPem], cert: alice.certPem, key: alice.keyPem, maxVersion: 'TLSv1.2' });
    await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    const received: string[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk.toString('latin1')));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await waitFor('the answer to alice', () => received.join('').includes('client alice'));
    const renegotiated = await renegotiation(socket);
    if (!socket.destroyed) socket.write('GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await closed;
    assert.ok(renegotiated, 'the renegotiation failed');
    assert.equal(received.join('').match(/HTTP\/1\.1 200/g)?.length, 1, 'nothing was served after the renegotiation');
    await waitFor('the renegotiation log line', () => logLines.some((line) => line.includes('refused a TLS renegotiation')));
  });

  it('keeps serving with the old certificate when a new one does not match its key', async function () {
    await replace(path.join(dir, 'tls.crt'), serving1.certPem); // key is still serving2's
    await waitFor('the warning', () => logLines.some((line) => line.includes('keeping the previous ones')));
    assert.equal((await get(ports[0]!, new Agent({ ca: servingCa2.certPem }))).servedBy, serialOf(serving2));
  });
});
