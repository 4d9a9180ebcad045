// JWTs mutated byte by byte never authenticate (sidecar/authn/jwt, with its real key fetching): a
// token from a real OpenID provider (oidc-provider, RS256) and one from an issuer signing ES256,
// each changed by a few edits. The one change that may still verify is a signature segment written
// with other unused bits of its last base64url character, which decodes to the same signature: the
// same claims, the same person (JWS allows no more).
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pino } from 'pino';
import YAML from 'yaml';
import { createCA } from '../../lib/pki.js';
import { JwtAuthenticator } from '../../sidecar/authn/jwt/authenticator.js';
import { parseAuthenticationConfiguration } from '../../lib/sidecar-config/jwt.js';
import type { Identity } from '../../sidecar/identity.js';
import { startTestProvider, TEST_CLIENT, type TestProvider } from '../../local-cluster/identity/oidc-provider.js';
import { figure, fuzz } from './support/knobs.js';
import { authenticationConfiguration, startTestIssuer, type TestIssuer } from './support/issuer.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const ODD = '.=+/ \t%{}"\\\u0000\u00e9';

type Edit =
  | { kind: 'replace' | 'insert'; at: number; char: string }
  | { kind: 'delete'; at: number }
  | { kind: 'swap'; at: number; with: number }
  | { kind: 'segment'; how: 'drop' | 'repeat' | 'empty' | 'swap' | 'graft'; index: number; from: number };

const char = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...ALPHABET) }, { weight: 1, arbitrary: fc.constantFrom(...ODD) });
const edit: fc.Arbitrary<Edit> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), char }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), char }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('swap' as const), at: fc.nat(), with: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('segment' as const), how: fc.constantFrom('drop', 'repeat', 'empty', 'swap', 'graft'), index: fc.nat({ max: 2 }), from: fc.nat() }) },
);

function applyEdit(token: string, e: Edit, others: readonly string[]): string {
  if (e.kind === 'segment') {
    const parts = token.split('.');
    const i = e.index % parts.length;
    if (e.how === 'drop') parts.splice(i, 1);
    if (e.how === 'repeat') parts.splice(i, 0, parts[i]!);
    if (e.how === 'empty') parts[i] = '';
    if (e.how === 'swap') [parts[i], parts[(i + 1) % parts.length]] = [parts[(i + 1) % parts.length]!, parts[i]!];
    if (e.how === 'graft') parts[i] = others[e.from % others.length]!.split('.')[i] ?? '';
    return parts.join('.');
  }
  if (token.length === 0) return e.kind === 'insert' ? e.char : token;
  const at = e.at % token.length;
  if (e.kind === 'replace') return token.slice(0, at) + e.char + token.slice(at + 1);
  if (e.kind === 'insert') return token.slice(0, at) + e.char + token.slice(at);
  if (e.kind === 'delete') return token.slice(0, at) + token.slice(at + 1);
  if (e.kind !== 'swap') return token;
  const other = e.with % token.length;
  const chars = [...token];
  [chars[at], chars[other]] = [chars[other]!, chars[at]!];
  return chars.join('');
}

/** The same signed content, and a signature segment that decodes to the same bytes. */
function sameSignedToken(a: string, b: string): boolean {
  const [ah, ap, as] = a.split('.');
  const parts = b.split('.');
  if (parts.length !== 3 || ah !== parts[0] || ap !== parts[1] || !/^[A-Za-z0-9_-]*$/.test(parts[2]!)) return false;
  return Buffer.from(as!, 'base64url').equals(Buffer.from(parts[2]!, 'base64url'));
}

describe('hardening: JWTs mutated byte by byte', function () {
  this.timeout(0);
  const ca = createCA({ commonName: 'chaperone-hardening-oidc-ca' });
  let provider: TestProvider;
  let issuer: TestIssuer;
  let authenticator: JwtAuthenticator;
  let tokens: string[];
  const people: Identity[] = [];

  before(async function () {
    this.timeout(60_000);
    provider = await startTestProvider(ca, { alice: { claims: { groups: ['dev'] } } });
    issuer = await startTestIssuer('ES256');
    const config = YAML.parse(authenticationConfiguration([issuer])) as { jwt: unknown[] };
    config.jwt.push({
      issuer: { url: provider.issuer, audiences: [TEST_CLIENT], certificateAuthority: ca.certPem },
      claimMappings: { username: { claim: 'sub', prefix: '' }, groups: { claim: 'groups', prefix: '' } },
    });
    authenticator = new JwtAuthenticator(parseAuthenticationConfiguration(YAML.stringify(config), 'hardening'), { log: pino({ enabled: false }) });
    await authenticator.start();
    tokens = [await provider.idToken('alice'), await issuer.sign({ sub: 'bob', groups: ['ops'] })];
    for (const token of tokens) {
      const result = await authenticator.authenticateToken(token);
      assert.equal(result.outcome, 'success', 'the unchanged tokens authenticate');
      if (result.outcome === 'success') people.push(result.authenticated.identity);
    }
  });

  after(async function () {
    authenticator?.close();
    await Promise.all([provider?.stop(), issuer?.stop()]);
  });

  it('refuses a genuine token with whitespace inside a segment, as the API server does', async function () {
    for (const token of tokens) {
      const [header, payload, signature] = token.split('.');
      for (const edited of [`${header}.${payload}. ${signature}`, `${header}.${payload}.${signature!.slice(0, 10)}\t${signature!.slice(10)}`, `${header}.${payload}.${signature}\n`]) {
        assert.equal((await authenticator.authenticateToken(edited)).outcome, 'failure', JSON.stringify(edited.slice(-20)));
      }
    }
  });

  it('no edit of a genuine token authenticates anyone, and none makes the authenticator throw (property)', async function () {
    let stillValid = 0;
    await fuzz(
      this,
      fc.asyncProperty(fc.nat({ max: 1 }), fc.array(edit, { minLength: 1, maxLength: 3 }), async (which, edits) => {
        const original = tokens[which]!;
        const mutated = edits.reduce((token, e) => applyEdit(token, e, tokens), original);
        const result = await authenticator.authenticateToken(mutated);
        if (result.outcome !== 'success') return;
        assert.ok(sameSignedToken(original, mutated), `an edited token authenticated as ${result.authenticated.identity.username}: ${mutated}`);
        assert.deepEqual(result.authenticated.identity, people[which]);
        stillValid++;
      }),
      { short: 2000, long: 100_000 },
    );
    figure(`JWT edits that decoded to the very same signed token: ${stillValid}`);
  });
});
