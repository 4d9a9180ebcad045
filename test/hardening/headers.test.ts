// Header sets a client may send, through the sanitiser alone and through a whole sidecar to a
// stand-in API server that records what arrives: no identity header the client wrote ever reaches
// the API server, and nothing the client writes makes the sidecar fail.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isIdentityHeader, sanitiseHeaders } from '../../sidecar/sanitise.js';
import { escapeExtraKey, readImpersonationRequest } from '../../sidecar/impersonation.js';
import { StatusError } from '../../lib/status.js';
import { ORIGINAL_USER_INFO_EXTRA } from '../../sidecar/identity.js';
import type { SeenRequest } from '../support/fake-upstream.js';
import { fuzz } from './support/knobs.js';
import { STAND_IN_TOKEN, withStandIn } from './support/stand-in.js';
import { exchange } from '../support/wire.js';

const IDENTITY = ['Authorization', 'Proxy-Authorization', 'Impersonate-User', 'Impersonate-Group', 'Impersonate-Uid', 'Impersonate-Extra-Scopes', 'Impersonate-Extra-', 'X-Remote-User', 'X-Remote-Group', 'X-Remote-Extra-Foo', 'Audit-ID'];
const FORWARDING = ['X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto', 'Forwarded'];
const HOP_BY_HOP = ['Connection', 'Keep-Alive', 'TE', 'Trailer', 'Upgrade', 'Proxy-Connection'];
// Names that are also properties of every JavaScript object.
const PROTOTYPE_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'isPrototypeOf'];
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,24}$/;

function anyCase(name: string): fc.Arbitrary<string> {
  return fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) => [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c.toLowerCase())).join(''));
}

const headerName = fc.oneof(
  fc.constantFrom(...IDENTITY, ...FORWARDING, ...HOP_BY_HOP).chain(anyCase),
  fc.constantFrom(...PROTOTYPE_NAMES),
  fc.constantFrom(...PROTOTYPE_NAMES).map((name) => `Impersonate-Extra-${name}`),
  fc.stringMatching(/^(impersonate|x-remote|x-forwarded)-[!#$%&'*+\-.^_`|~0-9a-z]{0,12}$/).chain(anyCase),
  fc.stringMatching(TCHAR),
);
// What Node's parser hands on: no leading or trailing whitespace, no control characters; obs-text allowed.
const valueChar = fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff })).map((code) => String.fromCharCode(code));
const headerValue = fc
  .string({ unit: valueChar, minLength: 1, maxLength: 32 })
  .map((v) => v.replace(/^ +| +$/g, ''))
  .filter((v) => v !== '');
const headerSet = fc.array(fc.tuple(headerName, headerValue), { maxLength: 24 });

const lower = (name: string) => name.toLowerCase();
const isForwarding = (name: string) => name === 'forwarded' || name.startsWith('x-forwarded-');

describe('hardening: header sets', function () {
  this.timeout(0);

  it('the sanitiser never throws, lets no identity or forwarding header through, and keeps every other header whole (property)', async function () {
    await fuzz(
      this,
      fc.property(headerSet, (pairs) => {
        const out = sanitiseHeaders(pairs.flat());
        const named = new Set(pairs.filter(([n]) => lower(n) === 'connection').flatMap(([, v]) => v.split(',').map((t) => lower(t.trim()))));
        for (const name of Object.keys(out)) {
          assert.ok(!isIdentityHeader(lower(name)) && !isForwarding(lower(name)), `${name} survived`);
        }
        for (const [name] of pairs) {
          const key = lower(name);
          if (isIdentityHeader(key) || isForwarding(key) || HOP_BY_HOP.map(lower).includes(key) || named.has(key) || key === 'host' || key === 'transfer-encoding') continue;
          if (key === 'sec-websocket-protocol') continue;
          const sent = pairs.filter(([n]) => lower(n) === key).map(([, v]) => v);
          const kept = out[key];
          assert.deepEqual(Array.isArray(kept) ? kept : [kept], sent, `${name} arrives whole`);
        }
      }),
      { short: 5000, long: 300_000 },
    );
  });

  it('reading nested impersonation never fails other than with a Status (property)', async function () {
    await fuzz(
      this,
      fc.property(headerSet, (pairs) => {
        try {
          readImpersonationRequest(pairs.flat());
        } catch (err) {
          assert.ok(err instanceof StatusError && [400, 403].includes(err.code), `threw ${(err as Error).stack}`);
        }
      }),
      { short: 5000, long: 300_000 },
    );
  });

  describe('through a sidecar to a stand-in API server', function () {
    const standIn = withStandIn();
    let serial = 0;

    function arrived(path: string): SeenRequest | undefined {
      return standIn.fake.seen.find((r) => r.method === 'GET' && r.url === path);
    }

    /** Every occurrence of a header on the wire, names lower-cased. */
    function valuesOf(seen: SeenRequest, name: string): string[] {
      return seen.rawHeaders.flatMap((n, i) => (i % 2 === 0 && lower(n) === lower(name) ? [seen.rawHeaders[i + 1]!] : []));
    }

    it('forwards headers named like properties of every JavaScript object, and honours such extra keys', async function () {
      const path = '/api/v1/namespaces/team/configmaps/prototype-names';
      const request = [`GET ${path} HTTP/1.1`, 'Host: localhost', 'Constructor: c', 'ToString: t', 'Impersonate-User: bob', 'Impersonate-Extra-Constructor: x', 'Connection: close', '', ''].join('\r\n');
      const answer = await exchange({ port: standIn.sidecar.port, ca: standIn.sidecar.servingCa.certPem }, request, standIn.alice);
      assert.equal(answer.status, 200, answer.body);
      const seen = arrived(path)!;
      assert.deepEqual(valuesOf(seen, 'constructor'), ['c']);
      assert.deepEqual(valuesOf(seen, 'tostring'), ['t']);
      assert.deepEqual(valuesOf(seen, 'impersonate-extra-constructor'), ['x']);
    });

    it('only the identity chaperone chose arrives, and no header set makes it fail (property)', async function () {
      await fuzz(
        this,
        fc.asyncProperty(headerSet, async (pairs) => {
          const path = `/api/v1/namespaces/team/configmaps/h-${serial++}`;
          const lines = pairs.map(([n, v]) => `${n}: ${v}`);
          const request = Buffer.from([`GET ${path} HTTP/1.1`, 'Host: localhost', ...lines, 'Connection: close', '', ''].join('\r\n'), 'latin1');
          const answer = await exchange({ port: standIn.sidecar.port, ca: standIn.sidecar.servingCa.certPem }, request, standIn.alice);
          assert.ok([200, 400, 403].includes(answer.status), `status ${answer.status}: ${answer.body}`);
          const seen = arrived(path);
          if (answer.status !== 200) {
            assert.equal(seen, undefined, `a ${answer.status} went upstream`);
            return;
          }
          assert.ok(seen, 'a 200 came from the API server');
          assert.deepEqual(valuesOf(seen, 'authorization'), [`Bearer ${STAND_IN_TOKEN}`]);
          const auditIds = valuesOf(seen, 'audit-id');
          assert.equal(auditIds.length, 1, 'one Audit-ID');
          assert.match(auditIds[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'the Audit-ID chaperone chose');
          assert.ok(!pairs.some(([, v]) => v === auditIds[0]), 'not one the client sent');
          for (const [name] of seen.rawHeaders.flatMap((n, i) => (i % 2 === 0 ? [[lower(n)]] : []))) {
            assert.ok(!name!.startsWith('x-remote-') && !isForwarding(name!) && name !== 'proxy-authorization', `${name} arrived`);
          }
          const impersonating = pairs.some(([n]) => ['impersonate-user', 'impersonate-group', 'impersonate-uid'].includes(lower(n)) || lower(n).startsWith('impersonate-extra-'));
          if (!impersonating) {
            assert.deepEqual(valuesOf(seen, 'impersonate-user'), ['alice']);
            assert.deepEqual(valuesOf(seen, 'impersonate-group'), ['dev', 'system:authenticated']);
            assert.ok(!seen.rawHeaders.some((n, i) => i % 2 === 0 && lower(n).startsWith('impersonate-') && !['impersonate-user', 'impersonate-group'].includes(lower(n))));
            return;
          }
          // The stand-in allows every review, so the client's impersonation was honoured: the person
          // who asked must travel with it.
          const original = valuesOf(seen, `impersonate-extra-${escapeExtraKey(ORIGINAL_USER_INFO_EXTRA)}`);
          assert.equal(original.length, 1, 'the original person travels in the extra');
          assert.equal((JSON.parse(original[0]!) as { username: string }).username, 'alice');
        }),
        { short: 150, long: 5000 },
      );
    });
  });
});
