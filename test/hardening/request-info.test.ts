// Request paths and query strings through RequestInfo (sidecar/authz/request-info.ts), beyond the
// unit properties: the attributes must never be broader than the path. Two oracles: a model of the
// API server's URL layout for generated resource requests, and the cases recorded from the real API
// server (test/fixtures/request-info-cases.json), which must not change under rewrites of the URL
// that mean the same to the API server.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { requestInfo } from '../../sidecar/authz/request-info.js';
import { attributesFromRequestInfo, FIXTURE_FILE, type Fixture } from '../../scripts/record-request-info.js';
import { fuzz } from './support/knobs.js';

const fixture = JSON.parse(readFileSync(FIXTURE_FILE, 'utf8')) as Fixture;

const UNRESERVED = /[A-Za-z0-9\-._~]/;

function escapeByte(byte: number): string {
  return `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** The segment as a client may send it: what must be escaped is, and any other character may be. */
function encodeSegment(text: string, escapeAlso: readonly boolean[]): string {
  let out = '';
  Array.from(text).forEach((char, i) => {
    if (UNRESERVED.test(char) && !escapeAlso[i % escapeAlso.length]) out += char;
    else for (const byte of Buffer.from(char, 'utf8')) out += escapeByte(byte);
  });
  return out;
}

/**
 * Escapes the chosen unreserved characters of a URL, path and query alike, but never those of an
 * escape already there: the API server decodes both, so the meaning stays the same.
 */
function reescape(url: string, chosen: readonly boolean[]): string {
  let out = '';
  let k = 0;
  for (let i = 0; i < url.length; i++) {
    const char = url[i]!;
    if (char === '%') {
      out += url.slice(i, i + 3);
      i += 2;
      continue;
    }
    out += UNRESERVED.test(char) && chosen[k++ % chosen.length] ? escapeByte(char.charCodeAt(0)) : char;
  }
  return out;
}

// Query pairs the API server ignores when it derives attributes: unknown keys, and a pair it cannot
// unescape (dropped, as Go's url.ParseQuery drops it).
const HARMLESS_PAIRS = ['pretty=true', 'x=%zz', 'resourceVersion=0', 'z'];

/** Segments with no meaning of their own in the position they are put. */
const RESERVED_WORDS = new Set(['', '.', '..', 'watch', 'proxy', 'namespaces', 'status', 'finalize']);
const segmentText = fc
  .oneof(
    fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,15}$/),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }),
    fc.constantFrom('a b', 'a+b', 'a#b', 'a?b', 'a;b', 'a%b', 'a/b', 'caf\u00e9', '\u0000', 'a\nb', 'https:web:8443'),
  )
  .filter((s) => !RESERVED_WORDS.has(s) && !s.includes('/') && s.isWellFormed());
const escapes = fc.array(fc.boolean(), { minLength: 1, maxLength: 8 });

interface Shape {
  method: string;
  group: string;
  version: string;
  namespace: string | undefined;
  resource: string;
  name: string | undefined;
  subresource: string | undefined;
}

const shape: fc.Arbitrary<Shape> = fc
  .record({
    method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'),
    group: fc.oneof(fc.constant(''), fc.constantFrom('apps', 'rbac.authorization.k8s.io', 'example.com'), segmentText),
    version: fc.oneof(fc.constantFrom('v1', 'v1beta1'), segmentText),
    namespace: fc.option(segmentText, { nil: undefined }),
    resource: fc.oneof(fc.constantFrom('pods', 'configmaps', 'deployments', 'secrets'), segmentText),
    name: fc.option(segmentText, { nil: undefined }),
    subresource: fc.option(fc.oneof(fc.constantFrom('status', 'scale', 'exec', 'log', 'eviction'), segmentText), { nil: undefined }),
  })
  .map((s) => (s.name === undefined ? { ...s, subresource: undefined } : s));

const query = fc.array(
  fc.oneof(
    fc.constantFrom('watch=true', 'watch=0', 'watch', 'limit=5', 'limit=ten', 'fieldSelector=metadata.name%3Dother', 'labelSelector=%21%21', 'pretty'),
    fc.tuple(fc.string({ maxLength: 6 }), fc.string({ maxLength: 12 })).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`),
  ),
  { maxLength: 4 },
);

/** The verb the API server gives a request on a named object, and on a collection. */
const NAMED_VERBS: Record<string, string> = { GET: 'get', HEAD: 'get', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
const COLLECTION_VERBS: Record<string, string[]> = { GET: ['list', 'watch'], HEAD: ['list', 'watch'], POST: ['create'], PUT: ['update'], PATCH: ['patch'], DELETE: ['deletecollection'] };

describe('hardening: request paths through RequestInfo', function () {
  this.timeout(0);

  it('never yields attributes broader than the path: the namespace, resource, name and subresource it names (property)', async function () {
    await fuzz(
      this,
      fc.property(shape, escapes, query, fc.boolean(), (s, escape, pairs, trailingSlash) => {
        const segments = [
          ...(s.group === '' ? ['api'] : ['apis', s.group]),
          s.version,
          ...(s.namespace !== undefined ? ['namespaces', s.namespace] : []),
          s.resource,
          ...(s.name !== undefined ? [s.name] : []),
          ...(s.subresource !== undefined ? [s.subresource] : []),
        ];
        const path = `/${segments.map((segment, i) => (i === 0 ? segment : encodeSegment(segment, escape))).join('/')}${trailingSlash ? '/' : ''}`;
        const url = pairs.length > 0 ? `${path}?${pairs.join('&')}` : path;
        const info = requestInfo(s.method, url);
        const at = `${s.method} ${url}`;
        assert.equal(info.isResourceRequest, true, at);
        assert.equal(info.apiGroup, s.group, at);
        assert.equal(info.apiVersion, s.version, at);
        assert.equal(info.namespace, s.namespace ?? '', `${at}: the namespace`);
        assert.equal(info.resource, s.resource, `${at}: the resource`);
        assert.equal(info.subresource, s.subresource ?? '', `${at}: the subresource`);
        if (s.name !== undefined) {
          assert.equal(info.name, s.name, `${at}: the name`);
          assert.equal(info.verb, NAMED_VERBS[s.method], `${at}: the verb on one object`);
        } else {
          assert.ok(COLLECTION_VERBS[s.method]!.includes(info.verb), `${at}: the verb ${info.verb} on a collection`);
        }
      }),
      { short: 3000, long: 200_000 },
    );
  });

  it('gives the namespace object itself its own name as namespace (property)', async function () {
    await fuzz(
      this,
      fc.property(segmentText, escapes, fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH'), (name, escape, method) => {
        const info = requestInfo(method, `/api/v1/namespaces/${encodeSegment(name, escape)}`);
        assert.equal(info.namespace, name);
        assert.equal(info.name, name);
        assert.equal(info.verb, NAMED_VERBS[method]);
      }),
      { short: 500, long: 20_000 },
    );
  });

  describe(`keeps the attributes kube-apiserver ${fixture.kubernetesVersion} recorded under rewrites that mean the same`, function () {
    const meaningful = fixture.cases.filter((c) => !/[\x00-\x1f\x7f]/.test(c.url));

    it('escaping unreserved characters of path and query (property)', async function () {
      await fuzz(
        this,
        fc.property(fc.constantFrom(...meaningful), escapes, (c, chosen) => {
          assert.deepEqual(attributesFromRequestInfo(c.method, reescape(c.url, chosen)), c.expected, `${c.method} ${reescape(c.url, chosen)} (${c.why})`);
        }),
        { short: 2000, long: 100_000 },
      );
    });

    it('adding query pairs the API server ignores (property)', async function () {
      await fuzz(
        this,
        fc.property(fc.constantFrom(...meaningful), fc.array(fc.constantFrom(...HARMLESS_PAIRS), { minLength: 1, maxLength: 3 }), (c, pairs) => {
          const separator = c.url.endsWith('?') ? '' : c.url.includes('?') ? '&' : '?';
          const url = `${c.url}${separator}${pairs.join('&')}`;
          assert.deepEqual(attributesFromRequestInfo(c.method, url), c.expected, `${c.method} ${url} (${c.why})`);
        }),
        { short: 1000, long: 50_000 },
      );
    });
  });
});
