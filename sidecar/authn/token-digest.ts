// What the token caches key their entries by: an HMAC of the token under a key that lives only in this
// process, so that no token is kept in clear (the API server's token cache does the same). The key is
// imported once as a KeyObject: given as bytes, Node 24 imports it again on every call (3 % of the
// sidecar's busy time in the bench's profile, docs/benchmarks.md).
import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';

export class TokenDigest {
  private readonly key: KeyObject = createSecretKey(randomBytes(32));

  of(token: string): string {
    return createHmac('sha256', this.key).update(token).digest('base64url');
  }
}
