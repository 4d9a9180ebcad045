// A client that renegotiates with another certificate on one connection (renegotiating-client.c),
// built once with the system's C compiler and OpenSSL, and driven from the tests.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CertificateAndKey } from '../../../lib/pki.js';
import { parseAnswer, type RawAnswer } from '../../support/wire.js';

const run = promisify(execFile);
const SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'renegotiating-client.c');

let built: Promise<string> | undefined;

/** The compiled client, rebuilt when its source changes. */
function client(): Promise<string> {
  built ??= (async () => {
    const source = await readFile(SOURCE);
    const dir = path.join(tmpdir(), 'chaperone-test-tools');
    const binary = path.join(dir, `renegotiating-client-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`);
    if (existsSync(binary)) return binary;
    await mkdir(dir, { recursive: true });
    try {
      await run('cc', ['-O1', '-o', `${binary}.tmp`, SOURCE, '-lssl', '-lcrypto']);
      await run('mv', [`${binary}.tmp`, binary]);
    } catch (err) {
      throw new Error(
        `could not build the renegotiating test client (${(err as Error).message.split('\n', 1)[0]}): the TLS hardening tests need a C compiler (cc) and the OpenSSL headers (libssl-dev)`,
        { cause: err },
      );
    }
    return binary;
  })();
  return built;
}

export interface Renegotiated {
  handshake: string;
  first?: RawAnswer;
  /** 'ok', or why it failed. */
  renegotiation?: string;
  second?: RawAnswer;
  /** Why the second request got no answer. */
  secondFailed?: string;
}

/**
 * One connection: request1 presenting `first`, a renegotiation presenting `second`, request2.
 * The requests are whole HTTP/1.1 requests (keep the connection open after the first).
 */
export async function renegotiate(port: number, serverCa: string, first: CertificateAndKey, second: CertificateAndKey, request1: string, request2: string): Promise<Renegotiated> {
  const binary = await client();
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-reneg-'));
  try {
    const file = (name: string) => path.join(dir, name);
    await Promise.all([
      writeFile(file('ca.pem'), serverCa),
      writeFile(file('1.crt'), first.certPem),
      writeFile(file('1.key'), first.keyPem),
      writeFile(file('2.crt'), second.certPem),
      writeFile(file('2.key'), second.keyPem),
    ]);
    const { stdout } = await run(binary, [String(port), file('ca.pem'), file('1.crt'), file('1.key'), file('2.crt'), file('2.key'), request1, request2], { timeout: 60_000 });
    const out: Renegotiated = { handshake: '' };
    for (const line of stdout.split('\n')) {
      const [word = '', ...rest] = line.split(' ');
      const value = rest.join(' ');
      const answer = () => parseAnswer(Buffer.from(value, 'base64').toString('latin1'));
      if (word === 'HANDSHAKE') out.handshake = value;
      else if (word === 'ANSWER1') out.first = answer();
      else if (word === 'RENEGOTIATION') out.renegotiation = value;
      else if (word === 'ANSWER2') out.second = answer();
      else if (word === 'ANSWER2-FAILED') out.secondFailed = value;
    }
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
