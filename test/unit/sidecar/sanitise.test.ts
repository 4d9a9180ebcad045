import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isIdentityHeader, sanitiseHeaders } from '../../../sidecar/sanitise.js';

const IDENTITY_NAMES = ['Authorization', 'Proxy-Authorization', 'Impersonate-User', 'Impersonate-Group', 'Impersonate-Uid', 'Impersonate-Extra-scopes', 'X-Remote-User', 'X-Remote-Group', 'X-Remote-Extra-foo', 'Audit-ID'];
const OTHER_DROPPED = ['X-Forwarded-For', 'X-Forwarded-Host', 'Forwarded', 'X-Real-Ip', 'Connection', 'Keep-Alive', 'Transfer-Encoding', 'Upgrade', 'TE', 'Trailer', 'Host', 'Proxy-Connection'];

/** Any letter case of a header name. */
function anyCase(name: string): fc.Arbitrary<string> {
  return fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) =>
    [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c.toLowerCase())).join(''),
  );
}

const headerValue = fc.string({ maxLength: 20 }).filter((v) => !/[\r\n]/.test(v));
const headerName = fc.oneof(
  fc.constantFrom(...IDENTITY_NAMES, ...OTHER_DROPPED).chain(anyCase),
  fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/),
  fc.stringMatching(/^(impersonate|x-remote|x-forwarded)-[a-z0-9%-]{0,12}$/).chain(anyCase),
);

describe('sidecar/sanitise', function () {
  it("drops an HTTP/2 client's pseudo-headers: :path, :authority, :method and :scheme are the forwarder's", function () {
    const out = sanitiseHeaders([':path', '/api/v1/secrets', ':authority', 'attacker.example', ':method', 'DELETE', ':scheme', 'http', 'accept', 'application/json']);
    assert.deepEqual(out, { accept: 'application/json' });
  });

  it('never lets an identity header through, whatever the client sends (property)', function () {
    fc.assert(
      fc.property(fc.array(fc.tuple(headerName, headerValue), { maxLength: 30 }), (pairs) => {
        const out = sanitiseHeaders(pairs.flat());
        for (const name of Object.keys(out)) {
          assert.ok(!isIdentityHeader(name.toLowerCase()), `${name} survived`);
          assert.ok(!name.toLowerCase().startsWith('x-forwarded-'), `${name} survived`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('drops every identity, forwarding and hop-by-hop header in any letter case', function () {
    const raw = [...IDENTITY_NAMES, ...OTHER_DROPPED].flatMap((name) => [name.toUpperCase(), 'x', name, 'y']);
    assert.deepEqual(sanitiseHeaders(raw), {});
  });

  it('drops X-Real-Ip, which the API server would record as where the request came from', function () {
    assert.deepEqual(sanitiseHeaders(['X-Real-Ip', '10.9.8.7', 'x-real-IP', '1.2.3.4', 'Accept', 'application/json']), { accept: 'application/json' });
  });

  it('drops a dropped name spelt with underscores, as some servers read "_" as "-"', function () {
    const spelt = ['Impersonate_User', 'root', 'impersonate_extra_scopes', 'x', 'X_Real_Ip', '1.2.3.4', 'x_forwarded_for', '1.2.3.4', 'Audit_ID', 'a', 'Transfer_Encoding', 'chunked', 'x_remote_user', 'root'];
    assert.deepEqual(sanitiseHeaders([...spelt, 'X_Custom_Thing', 'kept']), { x_custom_thing: 'kept' });
  });

  it('drops the headers a client names in Connection', function () {
    assert.deepEqual(sanitiseHeaders(['Connection', 'keep-alive, X-Secret', 'x-secret', '1', 'Accept', 'application/json']), { accept: 'application/json' });
  });

  it('keeps everything else, repeated headers as repeated values', function () {
    assert.deepEqual(sanitiseHeaders(['Accept', 'application/json', 'X-Custom', 'a', 'x-custom', 'b', 'Content-Type', 'application/merge-patch+json']), {
      accept: 'application/json',
      'x-custom': ['a', 'b'],
      'content-type': 'application/merge-patch+json',
    });
  });
});

describe('sidecar/sanitise: bearer tokens in WebSocket subprotocols', function () {
  it('takes base64url.bearer.authorization.k8s.io.* out of Sec-WebSocket-Protocol and keeps the rest', function () {
    const token = Buffer.from('secret-token').toString('base64url');
    assert.deepEqual(sanitiseHeaders(['Sec-WebSocket-Protocol', `base64url.bearer.authorization.k8s.io.${token}, v5.channel.k8s.io`]), {
      'sec-websocket-protocol': 'v5.channel.k8s.io',
    });
    assert.deepEqual(sanitiseHeaders(['Sec-WebSocket-Protocol', `Base64url.Bearer.Authorization.K8s.Io.${token}`]), {});
  });
});
