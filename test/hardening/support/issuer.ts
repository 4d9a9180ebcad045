// An OpenID issuer reduced to what a relying party fetches (the discovery document and the JWKS),
// that a fault test can take down and bring back on the same address, and whose signing keys it can
// rotate. It speaks the real protocol; oidc-provider (local-cluster/identity) cannot rotate its keys.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import YAML from 'yaml';
import { createCA, issueCertificate, type CertificateAndKey } from '../../../lib/pki.js';

export type SigningAlgorithm = 'RS256' | 'ES256';

interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface TestIssuer {
  /** https://127.0.0.1:<port>, the same across stop and start. */
  url: string;
  ca: CertificateAndKey;
  /** The audience its tokens are for. */
  audience: string;
  /** How many times the JWKS was served. */
  jwksFetches(): number;
  /** A token with these claims (iss, aud, exp filled in), signed by the newest key or the one named. */
  sign(claims: Record<string, unknown>, kid?: string): Promise<string>;
  /** A new signing key, published from now on beside the others; returns its kid. */
  rotate(alg?: SigningAlgorithm): Promise<string>;
  /** Down: connections are refused. */
  stop(): Promise<void>;
  /** Up again, on the same port. */
  start(): Promise<void>;
  /** An AuthenticationConfiguration entry for it (username from sub, groups from groups, no prefixes). */
  jwtAuthenticator(): Record<string, unknown>;
}

let serial = 0;

async function newKey(alg: SigningAlgorithm): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `key-${++serial}-${alg.toLowerCase()}`;
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export async function startTestIssuer(alg: SigningAlgorithm = 'RS256'): Promise<TestIssuer> {
  const ca = createCA({ commonName: 'chaperone-hardening-issuer-ca' });
  const serving = issueCertificate(ca, { commonName: 'issuer', usage: 'server', ipAddresses: ['127.0.0.1'] });
  const keys = [await newKey(alg)];
  let fetches = 0;
  let url = '';
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: url, jwks_uri: `${url}/jwks`, id_token_signing_alg_values_supported: ['RS256', 'ES256'] }));
    } else if (req.url === '/jwks') {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  };
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, handler);
  let port = 0;
  const start = async () => {
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  };
  await start();
  url = `https://127.0.0.1:${port}`;
  const audience = 'chaperone-hardening';
  return {
    url,
    ca,
    audience,
    jwksFetches: () => fetches,
    sign: async (claims, kid) => {
      const key = kid ? keys.find((k) => k.kid === kid) : keys.at(-1);
      if (!key) throw new Error(`no key ${kid}`);
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: url, aud: audience, iat: now, exp: now + 3600, ...claims }).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
    },
    rotate: async (next = alg) => {
      const key = await newKey(next);
      keys.push(key);
      return key.kid;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    start,
    jwtAuthenticator: () => ({
      issuer: { url, audiences: [audience], certificateAuthority: ca.certPem },
      claimMappings: { username: { claim: 'sub', prefix: '' }, groups: { claim: 'groups', prefix: '' } },
    }),
  };
}

/** An AuthenticationConfiguration file's text naming these issuers. */
export function authenticationConfiguration(issuers: readonly TestIssuer[]): string {
  return YAML.stringify({ apiVersion: 'apiserver.config.k8s.io/v1', kind: 'AuthenticationConfiguration', jwt: issuers.map((i) => i.jwtAuthenticator()) });
}
