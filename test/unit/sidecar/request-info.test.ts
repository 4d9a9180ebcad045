import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { requestInfo } from '../../../sidecar/authz/request-info.js';
import { attributesFromRequestInfo, FIXTURE_FILE, type Fixture } from '../../../scripts/record-request-info.js';

// Recorded from the real kube-apiserver's audit events by scripts/record-request-info.ts.
const fixture = JSON.parse(readFileSync(FIXTURE_FILE, 'utf8')) as Fixture;


describe('sidecar/authz/request-info', function () {
  describe(`agrees with kube-apiserver ${fixture.kubernetesVersion} (test/fixtures/request-info-cases.json)`, function () {
    it('has a table worth the name', function () {
      assert.ok(fixture.cases.length >= 45, `only ${fixture.cases.length} cases`);
    });

    for (const c of fixture.cases) {
      it(`${c.method} ${c.url}: ${c.why}`, function () {
        assert.deepEqual(attributesFromRequestInfo(c.method, c.url), c.expected);
      });
    }
  });

  // What the audit log cannot show: the path, the prefix and the parts, and what happens to requests
  // the API server refuses before auditing. These follow requestinfo.go and Go's net/url.
  describe('beyond what the audit log shows', function () {
    it("knows no verb for a method named like one of Object's own properties", function () {
      for (const method of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
        assert.equal(requestInfo(method, '/api/v1/namespaces/ns1/pods/web').verb, '', method);
      }
    });

    it('gives the whole picture of a namespaced subresource request', function () {
      assert.deepEqual(requestInfo('GET', '/apis/apps/v1/namespaces/ns1/deployments/web/scale?x=1'), {
        isResourceRequest: true,
        path: '/apis/apps/v1/namespaces/ns1/deployments/web/scale',
        verb: 'get',
        apiPrefix: 'apis',
        apiGroup: 'apps',
        apiVersion: 'v1',
        namespace: 'ns1',
        resource: 'deployments',
        subresource: 'scale',
        name: 'web',
        parts: ['deployments', 'web', 'scale'],
      });
    });

    it('keeps everything after the subresource in parts, as the proxied path', function () {
      const info = requestInfo('GET', '/api/v1/namespaces/ns1/pods/p1/proxy/a/b/');
      assert.equal(info.apiPrefix, 'api');
      assert.deepEqual(info.parts, ['pods', 'p1', 'proxy', 'a', 'b']);
    });

    it('keeps namespaces in parts for the namespace object itself', function () {
      assert.deepEqual(requestInfo('GET', '/api/v1/namespaces/ns1/status').parts, ['namespaces', 'ns1', 'status']);
    });

    it('decodes the path of a non-resource request, %2F included', function () {
      const info = requestInfo('GET', '/healthz%2Fetcd?verbose');
      assert.equal(info.isResourceRequest, false);
      assert.equal(info.path, '/healthz/etcd');
      assert.deepEqual(info.parts, []);
      assert.equal(info.apiPrefix, '');
    });

    it('decodes escapes in the path but leaves + alone', function () {
      assert.equal(requestInfo('GET', '/a%20b+c%C3%A9').path, '/a b+cé');
    });

    it('shows each byte that is not UTF-8 as one U+FFFD, as Go writes JSON', function () {
      assert.equal(requestInfo('GET', '/x%E2%82y%FF').path, '/x\ufffd\ufffdy\ufffd');
    });

    it('keeps what it knew when /watch or /proxy has nothing after it (the API server answers 500)', function () {
      assert.deepEqual(requestInfo('GET', '/api/v1/watch'), {
        isResourceRequest: true,
        path: '/api/v1/watch',
        verb: 'get',
        apiPrefix: 'api',
        apiGroup: '',
        apiVersion: 'v1',
        namespace: '',
        resource: '',
        subresource: '',
        name: '',
        parts: [],
      });
      const proxy = requestInfo('POST', '/apis/apps/v1/proxy/');
      assert.equal(proxy.verb, 'post');
      assert.equal(proxy.apiGroup, 'apps');
      assert.equal(proxy.resource, '');
    });

    it('matches methods case-sensitively on resources, as Go does', function () {
      assert.equal(requestInfo('get', '/api/v1/pods').verb, '');
      assert.equal(requestInfo('get', '/healthz').verb, 'get');
    });

    for (const url of ['/api/v1/pods/%zz', '/api/v1/pods/%4', '/api/v1/pods%', '/api/v1/pods/a\x00b', '/api/v1/pods\x7f', 'api/v1/pods', '', '*', 'https://host/api/v1/pods']) {
      it(`treats a target Go refuses (${JSON.stringify(url)}) as a non-resource request`, function () {
        const info = requestInfo('GET', url);
        assert.equal(info.isResourceRequest, false);
        assert.equal(info.verb, 'get');
        assert.equal(info.resource, '');
      });
    }

    it('drops only the malformed query pair', function () {
      assert.equal(requestInfo('GET', '/api/v1/pods?x=%zz&watch=1').verb, 'watch');
      assert.equal(requestInfo('GET', '/api/v1/pods?watch=%zz').verb, 'list');
    });

    it('validates label selectors as the API server does before it trusts the field selector', function () {
      const name = (labelSelector: string) =>
        requestInfo('GET', `/api/v1/pods?fieldSelector=metadata.name%3Dp1&labelSelector=${encodeURIComponent(labelSelector)}`).name;
      for (const valid of ['', 'a', '!a', 'a=b', 'a==b', 'a!=b', 'a=', 'a in (b,c)', 'a notin ()', 'in in (in)', 'a in (,)', 'a>1', 'a<2', 'example.com/a=b', 'a , b', 'x \x00garbage']) {
        assert.equal(name(valid), 'p1', `label selector ${JSON.stringify(valid)} should be valid`);
      }
      for (const invalid of ['!', '!!a', 'a<-2', 'x\x00garbage', 'a=b=c', 'a in b', 'a in (b', 'a>b', 'a>', 'a,', ',a', 'a b', '-a', 'a/b/c', 'Example.com/a', `${'a'.repeat(64)}`, `a=${'b'.repeat(64)}`, '!a=b', 'a in (b c)']) {
        assert.equal(name(invalid), '', `label selector ${JSON.stringify(invalid)} should be invalid`);
      }
    });

    it('treats a query of more than 10000 parameters as no query at all (Go net/url)', function () {
      assert.equal(requestInfo('GET', `/api/v1/pods?watch=1${'&x'.repeat(10_000)}`).verb, 'list');
      assert.equal(requestInfo('GET', `/api/v1/pods?watch=1${'&x'.repeat(9_999)}`).verb, 'watch');
    });
  });

  describe('properties', function () {
    const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n));
    const anyString = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: codeUnit }));
    const method = fc.oneof(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND', 'get'), anyString);
    const segment = fc.oneof(
      fc.constantFrom('api', 'apis', 'v1', 'apps', 'namespaces', 'ns1', 'pods', 'p1', 'watch', 'proxy', 'status', 'finalize', 'scale', '', '.', '..', '%2F', 'a%2fb', '%zz', '%C3%A9', '%FF', '%00', '#', '+'),
      anyString,
    );
    const queryValue = fc.oneof(
      fc.constantFrom('', 'true', '1', '0', 'false', 'FaLsE', 'metadata.name%3Dp1', 'metadata.name%3D%3Dp2,a%3Db', 'metadata.name%3D..', 'metadata.name%3Da%5C', 'a+in+(b)', '!!', '10', 'ten', '%zz'),
      anyString,
    );
    const query = fc.array(fc.tuple(fc.constantFrom('watch', 'fieldSelector', 'labelSelector', 'limit', 'timeoutSeconds', 'x', ''), queryValue), { maxLength: 4 });
    const kubeLikeUrl = fc
      .tuple(fc.array(segment, { maxLength: 8 }), fc.boolean(), query)
      .map(([segments, slash, pairs]) => `/${segments.join('/')}${slash ? '/' : ''}${pairs.length ? '?' : ''}${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`);
    const url = fc.oneof(anyString, kubeLikeUrl, anyString.map((s) => `/${s}`));

    const STRING_FIELDS = ['path', 'verb', 'apiPrefix', 'apiGroup', 'apiVersion', 'namespace', 'resource', 'subresource', 'name'] as const;

    it('never throws, and always answers with strings', function () {
      fc.assert(
        fc.property(method, url, (m, u) => {
          const info = requestInfo(m, u);
          assert.equal(typeof info.isResourceRequest, 'boolean');
          for (const field of STRING_FIELDS) assert.equal(typeof info[field], 'string', field);
          assert.ok(Array.isArray(info.parts) && info.parts.every((p) => typeof p === 'string'));
          assert.ok(['', 'api', 'apis'].includes(info.apiPrefix));
        }),
        { numRuns: 3000 },
      );
    });

    it('takes namespace, resource and name only from segments of the path (or a name from the field selector of a list or watch)', function () {
      fc.assert(
        fc.property(method, url, (m, u) => {
          const info = requestInfo(m, u);
          if (!info.isResourceRequest) {
            assert.deepEqual([info.namespace, info.resource, info.subresource, info.name, info.apiGroup, info.apiVersion], ['', '', '', '', '', '']);
            return;
          }
          const segments = info.path.split('/');
          const rawPath = u.split('?')[0]!;
          if (rawPath.isWellFormed()) {
            try {
              assert.equal(info.path, decodeURIComponent(rawPath));
            } catch (err) {
              if (!(err instanceof URIError)) throw err; // escapes that are not UTF-8: Go keeps the bytes
            }
          }
          assert.ok(segments.includes(info.apiVersion));
          for (const field of ['namespace', 'resource', 'subresource'] as const) {
            assert.ok(info[field] === '' || segments.includes(info[field]), `${field} ${JSON.stringify(info[field])} is not in ${JSON.stringify(info.path)}`);
          }
          if (info.name !== '' && !segments.includes(info.name)) {
            assert.ok(['list', 'watch'].includes(info.verb), `name ${JSON.stringify(info.name)} from nowhere for ${info.verb}`);
            assert.ok(u.includes('fieldSelector'), `name ${JSON.stringify(info.name)} without a field selector`);
          }
        }),
        { numRuns: 3000 },
      );
    });

    it('gives non-resource requests the lower-cased method as verb', function () {
      fc.assert(
        fc.property(method, url, (m, u) => {
          const info = requestInfo(m, u);
          if (!info.isResourceRequest) assert.equal(info.verb, m.replace(/[A-Z]/g, (c) => c.toLowerCase()));
        }),
      );
    });
  });
});
