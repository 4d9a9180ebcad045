// `chaperone login`: a kubectl credential plugin (client.authentication.k8s.io/v1 ExecCredential) for
// people who sign in at an OpenID provider. It gets an ID token with the authorization-code flow and
// PKCE, in the person's browser, answered on a loopback port (RFC 8252), keeps it (and a refresh
// token, when the provider gives one) in a file only the person can read, and gives kubectl the ID
// token until shortly before it expires. kubectl sends it as a bearer token to the sidecar, which
// verifies it: this command trusts nothing it receives, and holds no secret of the cluster.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';

export interface LoginOptions {
  issuerUrl: string;
  clientId: string;
  clientSecret?: string;
  /** PEM bundle for the provider's TLS certificate; the system's roots without it. */
  certificateAuthority?: string;
  /** More scopes besides openid. */
  scope: string[];
  /** The loopback port the provider redirects the browser to (0: any free one, for providers that allow it). */
  redirectPort: number;
  /** Run with the authorization URL as its last argument; by default xdg-open or open, where there is one. */
  browserCommand?: string;
  tokenCacheDir: string;
}

interface Cached {
  idToken: string;
  refreshToken?: string;
}

/** Seconds before an ID token expires that it is no longer handed out (kubectl may hold it that long). */
const EXPIRY_MARGIN_S = 60;
const LOGIN_TIMEOUT_MS = 5 * 60_000;

export const DEFAULT_TOKEN_CACHE_DIR = path.join(homedir(), '.kube', 'cache', 'chaperone-login');

function expiryOf(idToken: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(idToken.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp : undefined;
  } catch {
    return undefined;
  }
}

const fresh = (idToken: string): boolean => (expiryOf(idToken) ?? 0) - EXPIRY_MARGIN_S > Date.now() / 1000;

function cacheFile(options: LoginOptions): string {
  const key = createHash('sha256').update(JSON.stringify([options.issuerUrl, options.clientId, [...options.scope].sort()])).digest('hex').slice(0, 32);
  return path.join(options.tokenCacheDir, `${key}.json`);
}

async function readCache(file: string): Promise<Cached | undefined> {
  try {
    const value = JSON.parse(await readFile(file, 'utf8')) as Partial<Cached>;
    return typeof value.idToken === 'string' ? { idToken: value.idToken, ...(typeof value.refreshToken === 'string' ? { refreshToken: value.refreshToken } : {}) } : undefined;
  } catch {
    return undefined;
  }
}

async function writeCache(file: string, cached: Cached): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(`${file}.tmp`, JSON.stringify(cached), { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

/** fetch over node:https, so that the provider's own CA can be trusted (the global fetch takes no CA). */
function fetchTrusting(ca: string): oidc.CustomFetch {
  return (url, options) =>
    new Promise((resolve, reject) => {
      const req = request(url, { method: options.method, headers: options.headers, ca, signal: options.signal ?? undefined }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
          resolve(new Response(res.statusCode === 204 || res.statusCode === 304 ? null : Buffer.concat(chunks), { status: res.statusCode ?? 0, headers: responseHeaders }));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      // The provider's endpoints get forms (URLSearchParams) or nothing.
      const body = options.body;
      req.end(body instanceof URLSearchParams ? body.toString() : typeof body === 'string' || body instanceof Uint8Array ? body : undefined);
    });
}

async function configuration(options: LoginOptions): Promise<oidc.Configuration> {
  const auth = options.clientSecret !== undefined ? oidc.ClientSecretBasic(options.clientSecret) : oidc.None();
  const discoveryOptions: oidc.DiscoveryRequestOptions = {};
  if (options.certificateAuthority !== undefined) discoveryOptions[oidc.customFetch] = fetchTrusting(await readFile(options.certificateAuthority, 'utf8'));
  return oidc.discovery(new URL(options.issuerUrl), options.clientId, options.clientSecret, auth, discoveryOptions);
}

function openBrowser(url: string, command: string | undefined): void {
  const [program, ...args] = command !== undefined ? command.split(' ').filter(Boolean) : [process.platform === 'darwin' ? 'open' : 'xdg-open'];
  execFile(program!, [...args, url], (err) => {
    if (err && command !== undefined) process.stderr.write(`chaperone login: the browser command failed: ${err.message}\n`);
  });
}

/** The authorization-code flow in the person's browser; resolves with the provider's tokens. */
async function signIn(config: oidc.Configuration, options: LoginOptions): Promise<Cached> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  let server: Server | undefined;
  try {
    const callback = new Promise<URL>((resolve, reject) => {
      server = createServer((req, res) => {
        const url = new URL(req.url ?? '/', `http://127.0.0.1:${(server!.address() as AddressInfo).port}`);
        if (url.pathname !== '/callback') return void res.writeHead(404).end();
        // Anything on this machine can reach the port: only the browser's answer to this sign-in counts.
        if (url.searchParams.get('state') !== state) return void res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('Not this sign-in.\n');
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('Signed in. You may close this window and go back to your terminal.\n');
        resolve(url);
      });
      server.once('error', reject);
      setTimeout(() => reject(new Error(`no answer from the browser within ${LOGIN_TIMEOUT_MS / 60_000} minutes`)), LOGIN_TIMEOUT_MS).unref();
    });
    await new Promise<void>((resolve) => server!.listen(options.redirectPort, '127.0.0.1', resolve));
    const redirectUri = `http://127.0.0.1:${(server!.address() as AddressInfo).port}/callback`;
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: ['openid', ...options.scope].join(' '),
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    // kubectl shows what a plugin writes to standard error; standard output is the credential.
    process.stderr.write(`chaperone login: sign in at ${options.issuerUrl} in your browser; if it does not open, open:\n${url.href}\n`);
    openBrowser(url.href, options.browserCommand);
    const tokens = await oidc.authorizationCodeGrant(config, await callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
    return { idToken: tokens.id_token!, ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}) };
  } finally {
    server?.close();
  }
}

/** The ID token to hand kubectl: the cached one while fresh, else refreshed, else a new sign-in. */
export async function idTokenFor(options: LoginOptions): Promise<string> {
  const file = cacheFile(options);
  const cached = await readCache(file);
  if (cached && fresh(cached.idToken)) return cached.idToken;
  const config = await configuration(options);
  let next: Cached | undefined;
  if (cached?.refreshToken) {
    try {
      const tokens = await oidc.refreshTokenGrant(config, cached.refreshToken);
      if (tokens.id_token) next = { idToken: tokens.id_token, refreshToken: tokens.refresh_token ?? cached.refreshToken };
    } catch (err) {
      process.stderr.write(`chaperone login: the refresh token was refused (${(err as Error).message}); signing in again\n`);
    }
  }
  next ??= await signIn(config, options);
  await writeCache(file, next);
  return next.idToken;
}

/** Writes the ExecCredential kubectl reads; 0 on success. */
export async function runLogin(options: LoginOptions): Promise<number> {
  const idToken = await idTokenFor(options);
  const exp = expiryOf(idToken);
  const status = { token: idToken, ...(exp !== undefined ? { expirationTimestamp: new Date((exp - EXPIRY_MARGIN_S) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') } : {}) };
  process.stdout.write(`${JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status })}\n`);
  return 0;
}
