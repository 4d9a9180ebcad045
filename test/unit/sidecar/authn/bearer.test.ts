import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { bearerToken } from '../../../../sidecar/authn/bearer.js';

function request(headers: Record<string, string>): IncomingMessage {
  return { headers } as unknown as IncomingMessage;
}

const encoded = Buffer.from('tok-123').toString('base64url');

describe('sidecar/authn/bearer', function () {
  it('reads Authorization: Bearer first', function () {
    assert.equal(bearerToken(request({ authorization: 'Bearer abc', upgrade: 'websocket', 'sec-websocket-protocol': `base64url.bearer.authorization.k8s.io.${encoded}` })), 'abc');
  });

  it('reads the token from the WebSocket subprotocol of an upgrade, as browsers must send it', function () {
    assert.equal(bearerToken(request({ upgrade: 'websocket', 'sec-websocket-protocol': `v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.${encoded}` })), 'tok-123');
  });

  it('ignores the subprotocol on a request that is not a WebSocket upgrade, and two tokens at once', function () {
    assert.equal(bearerToken(request({ 'sec-websocket-protocol': `base64url.bearer.authorization.k8s.io.${encoded}` })), undefined);
    assert.equal(
      bearerToken(request({ upgrade: 'websocket', 'sec-websocket-protocol': `base64url.bearer.authorization.k8s.io.${encoded}, base64url.bearer.authorization.k8s.io.${encoded}` })),
      undefined,
    );
  });
});
