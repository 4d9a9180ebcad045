// Records test/fixtures/request-info-cases.json: what the real kube-apiserver derives from each
// request (the verb and objectRef of its audit event), the ground truth for sidecar/authz/request-info.ts.
//
//   npx tsx scripts/record-request-info.ts
//
// test/e2e/request-info.test.ts replays the same cases with the helpers exported here, so a stale
// fixture or a Kubernetes upgrade that changes the rules is noticed.
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { fileURLToPath } from 'node:url';
import { startControlPlane, type ControlPlane } from '../local-cluster/control-plane.js';
import { adminClients, auditEventsFor, type AuditEvent } from '../local-cluster/kube.js';
import { requestInfo, type RequestInfo } from '../sidecar/authz/request-info.js';

export const FIXTURE_FILE = fileURLToPath(new URL('../test/fixtures/request-info-cases.json', import.meta.url));

/** Fixed, so the fixture's URLs and expectations can name it; created if missing, never deleted. */
export const FIXTURE_NAMESPACE = 'request-info-fixture';
const NS = FIXTURE_NAMESPACE;

export interface CaseInput {
  method: string;
  url: string;
  /** Mutating cases send a body without a name: the audit event would otherwise take the name from it. */
  body?: string;
  why: string;
}

/** What the API server's audit event shows of its RequestInfo. */
export type Attributes = Pick<RequestInfo, 'isResourceRequest' | 'verb' | 'apiGroup' | 'apiVersion' | 'namespace' | 'resource' | 'subresource' | 'name'>;

export interface FixtureCase extends CaseInput {
  expected: Attributes;
}

export interface Fixture {
  kubernetesVersion: string;
  recordedBy: string;
  namespace: string;
  cases: FixtureCase[];
}

const cm = `/api/v1/namespaces/${NS}/configmaps`;
const pod = `/api/v1/namespaces/${NS}/pods/p1`;
const deployments = `/apis/apps/v1/namespaces/${NS}/deployments`;

export const CASES: CaseInput[] = [
  // non-resource requests
  { method: 'GET', url: '/healthz', why: 'a health endpoint' },
  { method: 'GET', url: '/version', why: 'the version endpoint' },
  { method: 'GET', url: '/', why: 'the root' },
  { method: 'GET', url: '/api', why: '/api with no version is discovery' },
  { method: 'GET', url: '/api/v1', why: '/api/{version} is discovery' },
  { method: 'GET', url: '/api/v1/', why: 'a trailing slash does not make discovery a resource' },
  { method: 'GET', url: '/apis', why: '/apis with no group is discovery' },
  { method: 'GET', url: '/apis/apps', why: '/apis/{group} is discovery' },
  { method: 'GET', url: '/apis/apps/v1', why: '/apis/{group}/{version} is discovery' },
  { method: 'GET', url: '/openapi/v2', why: 'OpenAPI' },
  { method: 'GET', url: '/.well-known/openid-configuration', why: 'service-account issuer discovery' },
  { method: 'GET', url: '/livez?verbose', why: 'a query on a non-resource path' },
  { method: 'HEAD', url: '/healthz', why: 'HEAD on a non-resource path is verb head' },
  { method: 'OPTIONS', url: '/version', why: 'OPTIONS on a non-resource path is verb options' },
  { method: 'POST', url: '/healthz', body: '{}', why: 'POST on a non-resource path is verb post' },
  { method: 'PROPFIND', url: '/version', why: 'any method on a non-resource path is the lower-cased method' },
  { method: 'GET', url: '/apix/v1/pods', why: 'an unknown prefix is non-resource' },
  { method: 'GET', url: '/healthz%2Fping', why: 'an escaped slash on a non-resource path' },

  // the namespaces resource
  { method: 'GET', url: '/api/v1/namespaces', why: 'list namespaces' },
  { method: 'GET', url: `/api/v1/namespaces/${NS}`, why: 'get a namespace: its namespace is itself' },
  { method: 'GET', url: `/api/v1/namespaces/${NS}/status`, why: 'namespace status is a subresource, not a resource in the namespace' },
  { method: 'PUT', url: `/api/v1/namespaces/${NS}/finalize`, body: '{}', why: 'namespace finalize is a subresource' },
  { method: 'POST', url: '/api/v1/namespaces', body: '{}', why: 'create a namespace' },
  { method: 'DELETE', url: '/api/v1/namespaces/request-info-does-not-exist', why: 'delete a namespace (that does not exist)' },

  // namespaced and cluster-scoped resources, core group
  { method: 'GET', url: `/api/v1/namespaces/${NS}/pods`, why: 'list in a namespace' },
  { method: 'GET', url: '/api/v1/pods', why: 'list across namespaces' },
  { method: 'GET', url: pod, why: 'get a namespaced object' },
  { method: 'GET', url: `${cm}/cm1`, why: 'get an object that exists' },
  { method: 'GET', url: '/api/v1/nodes', why: 'list a cluster-scoped resource' },
  { method: 'GET', url: '/api/v1/nodes/n1', why: 'get a cluster-scoped object' },
  { method: 'POST', url: cm, body: '{}', why: 'create' },
  { method: 'POST', url: `${cm}?dryRun=All`, body: '{}', why: 'dryRun changes nothing' },
  { method: 'PUT', url: `${cm}/cm1`, body: '{}', why: 'update' },
  { method: 'PATCH', url: `${cm}/cm1`, body: '{}', why: 'patch' },
  { method: 'DELETE', url: `${cm}/does-not-exist`, why: 'delete' },
  { method: 'DELETE', url: `${cm}/cm1?dryRun=All`, why: 'delete, dry run' },
  { method: 'DELETE', url: `${cm}?labelSelector=request-info%3Ddoomed`, why: 'DELETE on a collection is deletecollection' },
  {
    method: 'DELETE',
    url: `${cm}?fieldSelector=metadata.name%3Ddoes-not-exist`,
    why: 'deletecollection takes no name from the field selector',
  },
  { method: 'HEAD', url: `${cm}/cm1`, why: 'HEAD is get' },
  { method: 'HEAD', url: cm, why: 'HEAD on a collection is list' },
  { method: 'OPTIONS', url: cm, why: 'OPTIONS on a resource has no verb' },
  { method: 'PROPFIND', url: `${cm}/cm1`, why: 'an unknown method on a resource has no verb' },

  // subresources
  { method: 'GET', url: `${pod}/status`, why: 'status' },
  { method: 'PUT', url: `${deployments}/d1/status`, body: '{}', why: 'update status in a named group' },
  { method: 'GET', url: `${deployments}/d1/scale`, why: 'scale' },
  { method: 'GET', url: `${pod}/log?follow=true`, why: 'log' },
  { method: 'POST', url: `${pod}/exec?command=ls&stdout=true`, why: 'exec by POST (SPDY) is create' },
  { method: 'GET', url: `${pod}/exec?command=ls&stdout=true`, why: 'exec by GET (WebSocket) is get' },
  { method: 'POST', url: `${pod}/attach?stdout=true`, why: 'attach' },
  { method: 'POST', url: `${pod}/portforward?ports=8080`, why: 'portforward' },
  { method: 'GET', url: `${pod}/proxy/metrics/cadvisor`, why: 'proxy subresource: the rest is the proxied path' },
  { method: 'GET', url: `/api/v1/namespaces/${NS}/services/https:web:8443/proxy/`, why: 'service proxy, name with scheme and port' },
  { method: 'GET', url: '/api/v1/nodes/n1/proxy/stats/summary', why: 'node proxy' },
  { method: 'PATCH', url: `${pod}/ephemeralcontainers`, body: '{}', why: 'ephemeralcontainers' },
  { method: 'POST', url: `${pod}/eviction`, body: '{}', why: 'eviction' },
  { method: 'POST', url: `/api/v1/namespaces/${NS}/serviceaccounts/robot/token`, body: '{}', why: 'token on a service account' },

  // list and watch
  { method: 'GET', url: `${cm}?watch=true`, why: 'watch=true' },
  { method: 'GET', url: `${cm}?watch=1`, why: 'watch=1' },
  { method: 'GET', url: `${cm}?watch=false`, why: 'watch=false is a list' },
  { method: 'GET', url: `${cm}?watch=0`, why: 'watch=0 is a list' },
  { method: 'GET', url: `${cm}?watch=FALSE`, why: 'watch=FALSE is a list' },
  { method: 'GET', url: `${cm}?watch=`, why: 'an empty watch= is a watch' },
  { method: 'GET', url: `${cm}?watch`, why: 'a bare watch is a watch' },
  { method: 'GET', url: `${cm}?watch=yes`, why: 'anything but false or 0 is a watch' },
  { method: 'GET', url: `${cm}?%77atch=1`, why: 'query keys are unescaped' },
  { method: 'GET', url: `${cm}?watch=1;`, why: 'a pair with a semicolon is dropped' },
  { method: 'GET', url: `${cm}?watch=0&watch=1`, why: 'only the first value counts' },
  { method: 'GET', url: `${deployments}?watch=true`, why: 'watch in a named group' },
  { method: 'GET', url: `/api/v1/watch/namespaces/${NS}/configmaps`, why: 'the legacy /watch/ prefix' },
  { method: 'GET', url: `/api/v1/watch/namespaces/${NS}/configmaps/cm1`, why: 'the legacy /watch/ prefix on one object' },
  { method: 'GET', url: '/api/v1/watch/pods', why: 'the legacy /watch/ prefix across namespaces' },
  { method: 'GET', url: `/apis/apps/v1/watch/namespaces/${NS}/deployments`, why: 'the legacy /watch/ prefix in a named group' },
  { method: 'POST', url: `/api/v1/watch/namespaces/${NS}/configmaps`, body: '{}', why: 'the /watch/ prefix wins over the method' },
  {
    method: 'GET',
    url: `/api/v1/watch/namespaces/${NS}/configmaps?fieldSelector=metadata.name%3Dcm1`,
    why: 'no name from the field selector on the legacy /watch/ prefix',
  },

  // a name from fieldSelector=metadata.name=
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3Dcm1`, why: 'list by field selector on the name' },
  { method: 'GET', url: `${cm}?watch=true&fieldSelector=metadata.name%3Dcm1`, why: 'watch by field selector on the name' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3D%3Dcm1`, why: '== is = for field selectors' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name!%3Dcm1`, why: '!= names nothing' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.namespace%3D${NS},metadata.name%3Dcm1`, why: 'one term of several' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3Dzz,metadata.name%3Daa`, why: 'terms are sorted; the first wins' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3Dcm1&fieldSelector=metadata.name%3Dcm2`, why: 'only the first fieldSelector counts' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3Da%2Fb`, why: 'a name that is no path segment is ignored' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3D..`, why: '.. is no name' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3Dcm+1`, why: '+ is a space in the query' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3Da%5C%2Cb`, why: 'an escaped comma in the value' },
  { method: 'GET', url: `${cm}?fieldSelector=metadata.name%3Da%3Db`, why: 'an unescaped = in the value breaks the selector' },
  { method: 'GET', url: `${cm}?labelSelector=app%3Dweb&fieldSelector=metadata.name%3Dcm1`, why: 'with a valid label selector' },
  {
    method: 'GET',
    url: `${cm}?labelSelector=app+in+(web,),!old,tier%3E2&fieldSelector=metadata.name%3Dcm1`,
    why: 'with a set-based label selector',
  },
  { method: 'GET', url: `${cm}?labelSelector=%21%21bad&fieldSelector=metadata.name%3Dcm1`, why: 'a bad label selector loses the name' },
  { method: 'GET', url: `${cm}?limit=ten&fieldSelector=metadata.name%3Dcm1`, why: 'a bad limit loses the name' },
  { method: 'GET', url: `${cm}?limit=ten&watch=yes`, why: 'a bad limit still watches' },
  { method: 'GET', url: `${cm}?timeoutSeconds=x&watch=1`, why: 'a bad timeoutSeconds still watches' },
  { method: 'GET', url: `${cm}?watch=fal%C5%BFe`, why: 'watch is case-folded: U+017F is an s' },
  { method: 'GET', url: `${cm}?watch=fal%C5%BFe&limit=x`, why: 'but when decoding fails it is only lower-cased' },

  // legacy /proxy/ verb
  { method: 'GET', url: `/api/v1/proxy/namespaces/${NS}/pods/p1/some/path`, why: 'legacy /proxy/: verb proxy, no subresource' },
  { method: 'GET', url: '/api/v1/proxy/nodes/n1', why: 'legacy /proxy/ on a node' },
  { method: 'DELETE', url: `/api/v1/proxy/namespaces/${NS}/services/web`, why: 'legacy /proxy/ wins over the method' },

  // other groups
  { method: 'GET', url: deployments, why: 'list in a named group' },
  { method: 'GET', url: '/apis/apps/v1/deployments', why: 'list in a named group across namespaces' },
  { method: 'GET', url: '/apis/rbac.authorization.k8s.io/v1/clusterroles/admin', why: 'a cluster-scoped object in a named group' },
  { method: 'POST', url: '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', body: '{}', why: 'create a review' },
  { method: 'GET', url: '/apis/example.com/v1/widgets', why: 'a group the server does not serve' },
  { method: 'DELETE', url: `/apis/example.com/v1/namespaces/${NS}/widgets`, why: 'deletecollection in a group the server does not serve' },

  // odd paths
  { method: 'GET', url: `${cm}/`, why: 'a trailing slash on a collection' },
  { method: 'GET', url: `${cm}/cm1/`, why: 'a trailing slash on an object' },
  { method: 'GET', url: `//api/v1/namespaces/${NS}/configmaps/cm1`, why: 'leading slashes are trimmed' },
  { method: 'GET', url: '/api/v1/namespaces//pods', why: 'an empty namespace segment' },
  { method: 'GET', url: `/api//v1/namespaces/${NS}/pods`, why: 'an empty version segment' },
  { method: 'GET', url: `/api/v1/namespaces/${NS}/pods//status`, why: 'an empty name: get becomes list' },
  { method: 'GET', url: `/api/v1/namespaces/${NS}/config%6Daps/cm%31`, why: 'escaped letters' },
  { method: 'GET', url: `${cm}/a%2Fb`, why: 'an escaped slash splits the segment' },
  { method: 'GET', url: `${cm}/caf%C3%A9`, why: 'escaped UTF-8' },
  { method: 'GET', url: `${cm}/bad%FFbyte`, why: 'an escaped byte that is not UTF-8' },
  { method: 'GET', url: `${cm}/cm1#frag`, why: 'a # is part of the path' },
  { method: 'GET', url: `${cm}/a+b`, why: '+ is not a space in the path' },
  { method: 'GET', url: `${cm}/cm1?`, why: 'an empty query' },
  { method: 'GET', url: `/api/v1/namespaces/${NS}/finalize`, why: 'finalize after a namespace name is its subresource' },
];

/** Requests the API server refuses before it audits (it cannot derive a resource); requestInfo keeps what it knew. */
export const UNAUDITED_CASES: CaseInput[] = [
  { method: 'GET', url: '/api/v1/watch', why: 'the /watch/ prefix with nothing after it' },
  { method: 'GET', url: '/apis/apps/v1/proxy', why: 'the /proxy/ prefix with nothing after it' },
];

export interface Observation {
  status: number;
  events: AuditEvent[];
}

/** Sends one case as the admin under a fresh Audit-ID and returns the audit events recorded for it. */
export async function observe(cp: ControlPlane, input: CaseInput, auditTimeoutMs = 5000): Promise<Observation> {
  const auditID = randomUUID();
  const body = input.body === undefined ? undefined : Buffer.from(input.body);
  const headers: Record<string, string> = { 'Audit-ID': auditID, Accept: 'application/json' };
  if (body) {
    headers['Content-Type'] = input.method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    headers['Content-Length'] = String(body.length);
  }
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      {
        host: cp.host,
        port: cp.port,
        method: input.method,
        path: input.url,
        ca: cp.ca.certPem,
        cert: cp.admin.certPem,
        key: cp.admin.keyPem,
        agent: false,
        headers,
        timeout: 10_000,
      },
      (res) => {
        // Watches never end by themselves; the attributes are in the audit event either way.
        resolve(res.statusCode ?? 0);
        res.destroy();
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${input.method} ${input.url}: no response in 10s`)));
    req.on('error', reject);
    req.end(body);
  });
  return { status, events: await auditEventsFor(cp, auditID, auditTimeoutMs) };
}

/** The attributes an audit event carries: verb and objectRef (none for a non-resource request). */
export function attributesOf(event: AuditEvent): Attributes {
  const ref = event.objectRef;
  return {
    isResourceRequest: ref !== undefined,
    verb: event.verb,
    apiGroup: ref?.apiGroup ?? '',
    apiVersion: ref?.apiVersion ?? '',
    namespace: ref?.namespace ?? '',
    resource: ref?.resource ?? '',
    subresource: ref?.subresource ?? '',
    name: ref?.name ?? '',
  };
}

export function attributesFromRequestInfo(method: string, url: string): Attributes {
  const info = requestInfo(method, url);
  return {
    isResourceRequest: info.isResourceRequest,
    verb: info.verb,
    apiGroup: info.apiGroup,
    apiVersion: info.apiVersion,
    namespace: info.namespace,
    resource: info.resource,
    subresource: info.subresource,
    name: info.name,
  };
}

/** The namespace, a config map and a service account some cases touch. Idempotent. */
export async function prepareFixtureObjects(cp: ControlPlane): Promise<void> {
  const { core } = adminClients(cp);
  const ignoreConflict = (err: unknown) => {
    if ((err as { code?: number }).code !== 409) throw err;
  };
  await core.createNamespace({ body: { metadata: { name: NS } } }).catch(ignoreConflict);
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'cm1' }, data: { a: 'b' } } }).catch(ignoreConflict);
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'robot' } } }).catch(ignoreConflict);
}

async function main(): Promise<void> {
  const cp = await startControlPlane();
  try {
    await prepareFixtureObjects(cp);
    const cases: FixtureCase[] = [];
    const disagreements: string[] = [];
    for (const input of CASES) {
      const { status, events } = await observe(cp, input);
      const [event] = events;
      if (!event) throw new Error(`${input.method} ${input.url}: the API server (HTTP ${status}) wrote no audit event`);
      const expected = attributesOf(event);
      for (const other of events.slice(1)) {
        if (JSON.stringify(attributesOf(other)) !== JSON.stringify(expected)) {
          throw new Error(`${input.method} ${input.url}: the ${event.stage} and ${other.stage} audit events disagree`);
        }
      }
      const derived = attributesFromRequestInfo(input.method, input.url);
      if (JSON.stringify(derived) !== JSON.stringify(expected)) {
        disagreements.push(`${input.method} ${input.url}\n  API server:  ${JSON.stringify(expected)}\n  requestInfo: ${JSON.stringify(derived)}`);
      }
      process.stderr.write(`${String(status).padEnd(4)}${input.method} ${input.url}\n`);
      cases.push({ ...input, expected });
    }
    for (const input of UNAUDITED_CASES) {
      const { status, events } = await observe(cp, input, 1000);
      if (events.length > 0 || status < 500) {
        throw new Error(`${input.method} ${input.url}: expected an unaudited 5xx, got HTTP ${status} and ${events.length} audit events`);
      }
    }
    const fixture: Fixture = {
      kubernetesVersion: cp.version,
      recordedBy: 'scripts/record-request-info.ts',
      namespace: NS,
      cases,
    };
    await writeFile(FIXTURE_FILE, `${JSON.stringify(fixture, null, 2)}\n`);
    process.stderr.write(`wrote ${cases.length} cases from kube-apiserver ${cp.version} to ${FIXTURE_FILE}\n`);
    if (disagreements.length > 0) {
      process.stderr.write(`requestInfo() disagrees with the API server on ${disagreements.length} cases:\n${disagreements.join('\n')}\n`);
      process.exitCode = 1;
    }
  } finally {
    await cp.stop();
  }
}

// No top-level await: mocha require()s the e2e suite that imports this module, and require() cannot
// load a module with top-level await (it falls back to import(), a second copy of the shared control plane).
if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
