// The objectRef of a create or update, in the sidecar's event and in the API server's, for bodies
// that say which object they are in every way the API server's decoders read: JSON with members
// twice, YAML merge keys, tags and documents, protobuf, encodings the API server ignores, bodies past
// the audit body limit, and bodies the API server refuses (where it records no name). The real API
// server's audit log is the judge; the audit join at the end of the run checks every request again.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { ApiextensionsV1Api } from '@kubernetes/client-node';
import fc from 'fast-check';
import { createNamespace, readAuditEvents, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { rawRequest, type RawResponse } from '../../local-cluster/sidecar.js';
import { ANNOTATIONS } from '../../sidecar/audit/event.js';
import { fuzz } from '../hardening/support/knobs.js';
import { auditIdOf, waitForEventLines } from '../unit/sidecar/audit/support.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

type ObjectRef = Record<string, string>;
interface Logged {
  auditID: string;
  stage: string;
  verb: string;
  objectRef?: ObjectRef;
  responseStatus?: { code?: number; message?: string };
  annotations?: Record<string, string>;
}

const tag = () => randomBytes(4).toString('hex');

/** A protobuf length-delimited field; the tag may be written long-windedly (padded with continuation bytes), as Go still reads it. */
function field(number: number, payload: Buffer, tagPadding = 0): Buffer {
  const varint = (value: number, padding = 0) => {
    const bytes: number[] = [];
    for (let v = value; ; v = Math.floor(v / 128)) {
      if (v < 128 && padding === 0) {
        bytes.push(v);
        break;
      }
      bytes.push((v % 128) | 0x80);
      if (v < 128) {
        for (let p = 1; p < padding; p++) bytes.push(0x80);
        bytes.push(0);
        break;
      }
    }
    return Buffer.from(bytes);
  };
  return Buffer.concat([varint((number << 3) | 2, tagPadding), varint(payload.length), payload]);
}
const text = (number: number, value: string) => field(number, Buffer.from(value));

/** A k8s protobuf envelope ('k8s\0', runtime.Unknown) around a ConfigMap whose ObjectMeta fields are given, each as a separate field 1. */
function protobufConfigMap(metas: Buffer[], kind = 'ConfigMap'): Buffer {
  const configMap = Buffer.concat(metas.map((meta) => field(1, meta)));
  const unknown = Buffer.concat([field(1, Buffer.concat([text(1, 'v1'), text(2, kind)])), field(2, configMap)]);
  return Buffer.concat([Buffer.from('k8s\u0000', 'latin1'), unknown]);
}

describe('audit: objectRef of creates and updates, as the API server records it (real API server)', function () {
  this.timeout(240_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar();
  let ns: string;
  const writer = `writer-${tag()}`;

  before(async function () {
    ns = await createNamespace(clients, 'audit-ref');
    await clients.rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: { metadata: { name: 'writer' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' }, subjects: [userSubject(writer)] },
    });
    await waitForCanI(cp, writer, ['create', 'configmaps', '-n', ns]);
  });

  interface Send {
    method?: string;
    path?: string;
    contentType?: string;
    headers?: Record<string, string>;
    body: string | Buffer;
  }

  const send = (request: Send): Promise<RawResponse> =>
    rawRequest(`${sidecar.url}${request.path ?? `/api/v1/namespaces/${ns}/configmaps`}`, {
      method: request.method ?? 'POST',
      ca: sidecar.servingCa.certPem,
      cert: sidecar.clientCert(writer),
      headers: { ...(request.contentType !== undefined ? { 'content-type': request.contentType } : {}), ...(request.headers ?? {}) },
      body: request.body as string,
    });

  /** Both events of each request (ResponseComplete), the API server's log read once for them all. */
  async function bothLogs(responses: RawResponse[]): Promise<{ ours: Logged; theirs: Logged | undefined }[]> {
    const ids = responses.map(auditIdOf);
    const ours = (await waitForEventLines(sidecar.auditLog, ids)) as unknown as Logged[];
    const deadline = Date.now() + 10_000;
    let theirs: Logged[] = [];
    for (;;) {
      theirs = ((await readAuditEvents(cp)) as unknown as Logged[]).filter((e) => ids.includes(e.auditID) && e.stage === 'ResponseComplete');
      const forwarded = ids.filter((id) => ours.find((e) => e.auditID === id && e.stage === 'ResponseComplete')?.annotations?.[ANNOTATIONS.forwarded] === 'true');
      if (forwarded.every((id) => theirs.some((e) => e.auditID === id)) || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return ids.map((id) => ({ ours: ours.find((e) => e.auditID === id && e.stage === 'ResponseComplete')!, theirs: theirs.find((e) => e.auditID === id) }));
  }

  function assertSameObjectRef(what: string, response: RawResponse, pair: { ours: Logged; theirs: Logged | undefined }): ObjectRef {
    assert.ok(pair.ours, `${what}: the sidecar wrote an event`);
    assert.ok(pair.theirs, `${what}: the API server ran it (HTTP ${response.status}: ${response.body.slice(0, 300)})`);
    assert.deepEqual(
      pair.ours.objectRef,
      pair.theirs.objectRef,
      `${what}: HTTP ${response.status} ${response.body.slice(0, 200)}; the sidecar's annotations ${JSON.stringify(pair.ours.annotations)}`,
    );
    return pair.theirs.objectRef ?? {};
  }

  describe('the red team findings (F3-F7): the API server names the object, so must the sidecar', function () {
    const configMap = (name: string, extra: Record<string, unknown> = {}) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, ...extra });
    const cases: { what: string; request: (name: string) => Send }[] = [
      {
        what: 'F3: YAML with a merge key after the name (go-yaml v2 merges in document order, over the name)',
        request: (name) => ({ contentType: 'application/yaml', body: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: decoy-${name}\n  <<: {name: ${name}}\n` }),
      },
      {
        what: 'F3b: YAML with a !!binary name',
        request: (name) => ({ contentType: 'application/yaml', body: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: !!binary ${Buffer.from(name).toString('base64')}\n` }),
      },
      {
        what: 'F3c: YAML with a second document (the API server reads the first)',
        request: (name) => ({ contentType: 'application/yaml', body: `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n---\nkind: Decoy\n` }),
      },
      {
        what: 'F4: JSON with metadata twice (Go merges both into one ObjectMeta)',
        request: (name) => ({ contentType: 'application/json', body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"${name}"},"metadata":{"labels":{"a":"b"}}}` }),
      },
      {
        what: 'F5: a Content-Encoding the API server ignores (it never decodes request bodies)',
        request: (name) => ({ contentType: 'application/json', headers: { 'Content-Encoding': 'x-anything' }, body: configMap(name) }),
      },
      {
        what: 'F6: a body larger than --audit-body-limit (256 KiB) but within the 3 MiB the API server takes',
        request: (name) => ({ contentType: 'application/json', body: configMap(name, { data: { big: 'x'.repeat(300 * 1024) } }) }),
      },
      {
        what: 'F7: protobuf, as client-go sends when asked to',
        request: (name) => ({ contentType: 'application/vnd.kubernetes.protobuf', body: protobufConfigMap([text(1, name)]) }),
      },
    ];

    for (const c of cases) {
      it(c.what, async function () {
        const name = `real-${tag()}`;
        const response = await send(c.request(name));
        assert.equal(response.status, 201, response.body.slice(0, 300));
        const [pair] = await bothLogs([response]);
        const ref = assertSameObjectRef(c.what, response, pair!);
        assert.equal(ref.name, name, "the API server's objectRef names the object");
      });
    }
  });

  it('YAML read with libyaml\'s syntax, where YAML 1.2 parsers read another object or none', async function () {
    const cases: { what: string; body: (name: string) => string | Buffer }[] = [
      { what: 'flow continuation lines less indented than their block', body: (n) => `status:\n      - {a: {b: c} ,\n  d: e}\nmetadata:\n  name: ${n}\n` },
      { what: 'a quoted scalar continued at column 0', body: (n) => `metadata:\n  name: '${n}'\nx: 'a\n/b'\n` },
      { what: '- as a plain scalar in flow context', body: (n) => `metadata: {name: ${n}}\ndata: {a: -, b: c:d}\n` },
      { what: 'LS ends a line', body: (n) => `metadata:\n  name: decoy-${n}\nx: y\u2028metadata: {name: ${n}}\n` },
      { what: 'a root flow mapping ends the document', body: (n) => `{"metadata": {"name": "${n}"}}\nmetadata:\n  name: decoy-${n}\n` },
      { what: 'a root flow mapping, then a comma', body: (n) => `{metadata: {name: ${n}}} , metadata: {name: decoy-${n}}\n` },
      { what: 'a %TAG handle and a %-escaped tag', body: (n) => `%TAG !k! tag:yaml.org,2002:\n---\nmetadata: {name: !k!bin%61ry ${Buffer.from(n).toString('base64')}}\n` },
      { what: 'escapes in a double-quoted name', body: (n) => `metadata:\n  name: "\\x${n.charCodeAt(0).toString(16)}${n.slice(1)}"\n` },
      { what: 'an explicit key, CRLF line ends', body: (n) => `? metadata\r\n: {name: ${n}}\r\n` },
      { what: 'UTF-16 with its byte-order mark', body: (n) => Buffer.from(`\ufeffmetadata:\n  name: ${n}\n`, 'utf16le') },
    ];
    const responses: RawResponse[] = [];
    const names: string[] = [];
    for (const c of cases) {
      const name = `y-${tag()}`;
      names.push(name);
      const response = await send({ contentType: 'application/yaml', body: c.body(name) });
      assert.equal(response.status, 201, `${c.what}: ${response.body.slice(0, 300)}`);
      responses.push(response);
    }
    const pairs = await bothLogs(responses);
    for (const [i, c] of cases.entries()) assert.equal(assertSameObjectRef(c.what, responses[i]!, pairs[i]!).name, names[i], c.what);
  });

  it('protobuf as Go reads it: ObjectMeta given twice is merged, a long-winded tag is still field 1, uid and resourceVersion are taken too', async function () {
    const name = `pb-${tag()}`;
    const first = Buffer.concat([text(1, `decoy-${name}`), text(5, 'uid-1')]);
    const second = Buffer.concat([text(1, name), text(6, '')]);
    const padded = Buffer.concat([field(1, Buffer.from('long-winded'), 3)]);
    const responses = [
      await send({ contentType: 'application/vnd.kubernetes.protobuf', body: protobufConfigMap([first, second]) }),
      await send({ contentType: 'application/vnd.kubernetes.protobuf', body: protobufConfigMap([padded, text(1, `${name}-2`)].map((b) => b)) }),
    ];
    const pairs = await bothLogs(responses);
    const refs = responses.map((response, i) => assertSameObjectRef(`protobuf ${i}`, response, pairs[i]!));
    assert.equal(refs[0]!.name, name);
    assert.equal(refs[0]!.uid, 'uid-1', 'the first ObjectMeta field the second leaves out stays');
  });

  it('bodies the API server refuses before decoding them leave the name out of both logs; failures after decoding keep it in both', async function () {
    const name = () => `r-${tag()}`;
    const taken = name();
    const cases: { what: string; request: Send; code: number; named: boolean }[] = [
      { what: 'JSON that does not decode into a ConfigMap (data is a number)', request: { contentType: 'application/json', body: `{"metadata":{"name":"${name()}"},"data":5}` }, code: 400, named: false },
      { what: 'gzip with Content-Encoding: gzip (the API server reads the compressed bytes)', request: { contentType: 'application/json', headers: { 'Content-Encoding': 'gzip' }, body: gzipSync(`{"metadata":{"name":"${name()}"}}`) }, code: 400, named: false },
      { what: 'a media type the API server does not decode', request: { contentType: 'text/plain', body: `{"metadata":{"name":"${name()}"}}` }, code: 415, named: false },
      {
        what: 'a duplicate member under fieldValidation=Strict',
        request: { path: `/api/v1/namespaces/${ns}/configmaps?fieldValidation=Strict`, contentType: 'application/json', body: `{"metadata":{"name":"${name()}"},"metadata":{}}` },
        code: 400,
        named: false,
      },
      { what: 'a kind the API server does not know', request: { contentType: 'application/json', body: `{"apiVersion":"v1","kind":"Decoy","metadata":{"name":"${name()}"}}` }, code: 400, named: false },
      { what: 'YAML that go-yaml refuses (an unknown anchor)', request: { contentType: 'application/yaml', body: `metadata:\n  name: ${name()}\n  x: *nowhere\n` }, code: 400, named: false },
      { what: 'an invalid name (validation, after decoding)', request: { contentType: 'application/json', body: `{"metadata":{"name":"Bad_${name()}"}}` }, code: 422, named: true },
      {
        what: 'another namespace in the body (refused after decoding)',
        request: { contentType: 'application/json', body: `{"metadata":{"name":"${name()}","namespace":"elsewhere"}}` },
        code: 400,
        named: true,
      },
      { what: 'a name already taken', request: { contentType: 'application/json', body: `{"metadata":{"name":"${taken}"}}` }, code: 409, named: true },
      { what: 'a list kind: decoded, but no ObjectMeta to take a name from', request: { contentType: 'application/json', body: `{"apiVersion":"v1","kind":"ConfigMapList","metadata":{"name":"${name()}"}}` }, code: 0, named: false },
    ];
    assert.equal((await send({ contentType: 'application/json', body: `{"metadata":{"name":"${taken}"}}` })).status, 201);
    const responses: RawResponse[] = [];
    for (const c of cases) {
      const response = await send(c.request);
      if (c.code !== 0) assert.equal(response.status, c.code, `${c.what}: ${response.body.slice(0, 300)}`);
      else assert.ok(response.status >= 400, `${c.what}: refused (${response.status} ${response.body.slice(0, 200)})`);
      responses.push(response);
    }
    const pairs = await bothLogs(responses);
    for (const [i, c] of cases.entries()) {
      const ref = assertSameObjectRef(c.what, responses[i]!, pairs[i]!);
      assert.equal(ref.name !== undefined, c.named, `${c.what}: the API server's objectRef ${JSON.stringify(ref)}`);
    }
  });

  it('an update takes uid and resourceVersion from the body, as the API server does, whether or not it then succeeds', async function () {
    const name = `u-${tag()}`;
    const created = await clients.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name }, data: { k: 'v' } } });
    const body = (resourceVersion: string) =>
      JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, uid: created.metadata?.uid, resourceVersion }, data: { k: 'w' } });
    const responses = [
      await send({ method: 'PUT', path: `/api/v1/namespaces/${ns}/configmaps/${name}`, contentType: 'application/json', body: body(created.metadata!.resourceVersion!) }),
      await send({ method: 'PUT', path: `/api/v1/namespaces/${ns}/configmaps/${name}`, contentType: 'application/yaml', body: `metadata:\n  name: ${name}\n  resourceVersion: "1"\n  uid: !!str ${created.metadata?.uid}\n` }),
    ];
    assert.deepEqual(
      responses.map((r) => r.status),
      [200, 409],
    );
    const pairs = await bothLogs(responses);
    for (const [i, response] of responses.entries()) {
      const ref = assertSameObjectRef(`update ${i}`, response, pairs[i]!);
      assert.equal(ref.uid, created.metadata?.uid);
    }
  });

  it('refuses CBOR bodies of creates itself (415): it cannot read them, and an API server with CBOR enabled would', async function () {
    const response = await send({ contentType: 'application/cbor', body: Buffer.from([0xd9, 0xd9, 0xf7, 0xa0]) });
    assert.equal(response.status, 415, response.body);
    assert.match(response.body, /does not read application\/cbor bodies/);
    const [pair] = await bothLogs([response]);
    assert.equal(pair!.ours.annotations?.[ANNOTATIONS.forwarded], 'false');
    assert.equal(pair!.theirs, undefined, 'the API server never saw it');
  });

  describe('a custom resource: decoded into a map, so the last `metadata` wins whole', function () {
    let group: string;

    before(async function () {
      group = `audit-${tag()}.chaperone.test`;
      const extensions = clients.kubeconfig.makeApiClient(ApiextensionsV1Api);
      await extensions.createCustomResourceDefinition({
        body: {
          metadata: { name: `widgets.${group}` },
          spec: {
            group,
            scope: 'Namespaced',
            names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
            versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } }],
          },
        },
      });
      await clients.rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name: 'widgets' }, rules: [{ apiGroups: [group], resources: ['widgets'], verbs: ['create'] }] } });
      await clients.rbac.createNamespacedRoleBinding({
        namespace: ns,
        body: { metadata: { name: 'widgets' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'widgets' }, subjects: [userSubject(writer)] },
      });
      await waitForCanI(cp, writer, ['create', `widgets.${group}`, '-n', ns]);
      // The API server serves the new resource a moment after the definition is accepted.
      for (let i = 0; ; i++) {
        const probe = await send({ path: `/apis/${group}/v1/namespaces/${ns}/widgets`, contentType: 'application/json', body: `{"apiVersion":"${group}/v1","kind":"Widget","metadata":{"name":"probe"}}` });
        if (probe.status === 201) break;
        if (i > 100) throw new Error(`the custom resource is never served: ${probe.status} ${probe.body}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    });

    it('takes the name as a map does: a later metadata replaces an earlier one, a later name null empties it', async function () {
      const path = `/apis/${group}/v1/namespaces/${ns}/widgets`;
      const head = `"apiVersion":"${group}/v1","kind":"Widget"`;
      const cases: { what: string; request: Send; named: boolean }[] = [
        { what: 'metadata twice', request: { path, contentType: 'application/json', body: `{${head},"metadata":{"name":"w-${tag()}"},"metadata":{"labels":{"a":"b"}}}` }, named: false },
        { what: 'the name, then null', request: { path, contentType: 'application/json', body: `{${head},"metadata":{"name":"w-${tag()}","name":null}}` }, named: false },
        { what: 'YAML merged over the name', request: { path, contentType: 'application/yaml', body: `apiVersion: ${group}/v1\nkind: Widget\nmetadata:\n  name: decoy\n  <<: {name: w-${tag()}}\n` }, named: true },
        { what: 'plain JSON', request: { path, contentType: 'application/json', body: `{${head},"metadata":{"name":"w-${tag()}"}}` }, named: true },
      ];
      const responses: RawResponse[] = [];
      for (const c of cases) responses.push(await send(c.request));
      const pairs = await bothLogs(responses);
      for (const [i, c] of cases.entries()) {
        const ref = assertSameObjectRef(c.what, responses[i]!, pairs[i]!);
        assert.equal(ref.name !== undefined, c.named, `${c.what}: ${JSON.stringify(ref)} (HTTP ${responses[i]!.status})`);
      }
    });
  });

  describe('property: random metadata in JSON and YAML, created through the sidecar, named alike in both logs', function () {
    const dnsName = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/);
    const caseName = (name: string) => `${name}-${tag()}`;

    /** A JSON body that names `name` (or not), in one of the ways Go reads members. */
    const jsonBody = fc
      .record({
        name: dnsName,
        decoy: dnsName,
        form: fc.constantFrom('plain', 'twice-merged', 'twice-overridden', 'null-after', 'case-variants', 'escaped', 'metadata-null-after', 'kind-case'),
        space: fc.constantFrom('', ' ', '\n  '),
      })
      .map(({ name, decoy, form, space }) => {
        const n = caseName(name);
        const s = space;
        const member = (key: string, value: string) => `${s}${JSON.stringify(key)}${s}:${s}${value}`;
        const meta = (inner: string[]) => `{${inner.join(',')}}`;
        const head = [member('apiVersion', '"v1"'), member('kind', '"ConfigMap"')];
        switch (form) {
          case 'twice-merged':
            return `{${[...head, member('metadata', meta([member('name', JSON.stringify(n))])), member('metadata', meta([member('labels', '{"a":"b"}')]))].join(',')}}`;
          case 'twice-overridden':
            return `{${[...head, member('metadata', meta([member('name', JSON.stringify(caseName(decoy)))])), member('metadata', meta([member('name', JSON.stringify(n))]))].join(',')}}`;
          case 'null-after':
            return `{${[...head, member('metadata', meta([member('name', JSON.stringify(n)), member('name', 'null')]))].join(',')}}`;
          case 'case-variants':
            return `{${[...head, member('Metadata', meta([member('name', JSON.stringify(caseName(decoy)))])), member('metadata', meta([member('NAME', '"x"'), member('name', JSON.stringify(n))]))].join(',')}}`;
          case 'escaped':
            return `{${[...head, member('metadata', meta([`${s}"n\\u0061me"${s}:${s}"${[...n].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"`]))].join(',')}}`;
          case 'metadata-null-after':
            return `{${[...head, member('metadata', meta([member('name', JSON.stringify(n))])), member('metadata', 'null')].join(',')}}`;
          case 'kind-case':
            return `{${[member('KIND', '"ConfigMap"'), member('apiversion', '"v1"'), member('metadata', meta([member('name', JSON.stringify(n))]))].join(',')}}`;
          default:
            return `{${[...head, member('metadata', meta([member('name', JSON.stringify(n))]))].join(',')}}`;
        }
      });

    /** A YAML body that names `name` (or not), in one of the ways go-yaml v2 reads mappings and scalars. */
    const yamlBody = fc
      .record({
        name: dnsName,
        decoy: dnsName,
        form: fc.constantFrom('plain', 'merge-after', 'merge-before', 'merge-alias', 'merge-sequence', 'alias-value', 'binary', 'str-tag', 'twice', 'second-document', 'flow', 'flow-root-then-junk', 'explicit-key'),
        style: fc.constantFrom('plain', 'single', 'double', 'literal'),
        comment: fc.boolean(),
        start: fc.boolean(),
      })
      .map(({ name, decoy, form, style, comment, start }) => {
        const n = caseName(name);
        const d = caseName(decoy);
        const scalar = (value: string) =>
          style === 'single' ? `'${value}'` : style === 'double' ? `"${value}"` : style === 'literal' ? `|-\n    ${value}` : value;
        const c = comment ? ' # a comment' : '';
        const head = `${start ? '---\n' : ''}apiVersion: v1\nkind: ConfigMap\n`;
        switch (form) {
          case 'merge-after':
            return `${head}metadata:\n  name: ${scalar(d)}${style === 'literal' ? '' : c}\n  <<: {name: ${n}}\n`;
          case 'merge-before':
            return `${head}metadata:\n  <<: {name: ${d}}\n  name: ${scalar(n)}\n`;
          case 'merge-alias':
            return `${start ? '---\n' : ''}base: &base {name: ${n}}${c}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  <<: *base\n`;
          case 'merge-sequence':
            return `${start ? '---\n' : ''}a: &a {name: ${n}}\nb: &b {name: ${d}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  <<: [*a, *b]\n`;
          case 'alias-value':
            return `${start ? '---\n' : ''}x: &n ${scalar(n)}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: *n\n`;
          case 'binary':
            return `${head}metadata:\n  name: !!binary ${Buffer.from(n).toString('base64')}${c}\n`;
          case 'str-tag':
            return `${head}metadata:\n  name: !!str ${scalar(n)}\n`;
          case 'twice':
            return `${head}metadata:\n  name: ${d}\nmetadata:\n  name: ${scalar(n)}\n`;
          case 'second-document':
            return `${head}metadata:\n  name: ${scalar(n)}\n---\nmetadata:\n  name: ${d}\n`;
          case 'flow':
            return `${start ? '--- ' : ''}{apiVersion: v1, kind: ConfigMap, metadata: {name: ${scalar(n).replace(/^\|-\n +/, '')}}}${c}\n`;
          case 'flow-root-then-junk':
            return `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "${n}"}}\nmetadata:\n  name: ${d}\n`;
          case 'explicit-key':
            return `${head}? metadata\n: name: ${scalar(n)}\n`;
          default:
            return `${head}metadata:\n  name: ${scalar(n)}${style === 'literal' ? '' : c}\n`;
        }
      });

    for (const [label, contentType, body] of [
      ['JSON', 'application/json', jsonBody],
      ['YAML', 'application/yaml', yamlBody],
    ] as const) {
      it(`${label} bodies`, async function () {
        this.timeout(600_000);
        await fuzz(
          this,
          fc.asyncProperty(body, async (text) => {
            const response = await send({ contentType, body: text });
            const [pair] = await bothLogs([response]);
            assertSameObjectRef(`${label} ${JSON.stringify(text)}`, response, pair!);
          }),
          { short: 25, long: 300 },
        );
      });
    }
  });
});
