// What the cluster offers that the access policies depend on: constrained impersonation (on by default
// since 1.36, but a feature gate), and the resources it serves (read-only access names them one by one).
//
// Support is probed, not guessed from the version: the injector asks, impersonating a user that exists
// for nothing else, to create a SelfSubjectReview, carrying an extra only its constrained permissions
// name. With constrained impersonation on, the API server allows it (impersonate:user-info and
// impersonate-on:user-info:create, both in the injector's own role); with it off only the classic
// `impersonate` verb counts, which never names that extra, and the answer is 403.
import { request } from 'node:https';
import { ApisApi, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { ImpersonationMode } from '../../lib/access-policy.js';
import type { ServedResources } from './access.js';

export const PROBE_USER = 'chaperone.dev:impersonation-probe';
export const PROBE_EXTRA = 'chaperone.dev/impersonation-probe';

export interface ModeDetection {
  mode: ImpersonationMode;
  /** Why, in words for the log and for `chaperone doctor`. */
  because: string;
}

function post(kubeconfig: KubeConfig, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  const cluster = kubeconfig.getCurrentCluster();
  if (!cluster) return Promise.reject(new Error('the kubeconfig names no cluster'));
  const url = new URL(path, cluster.server);
  return (async () => {
    const options: Parameters<typeof request>[1] = { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'application/json' }, timeout: 10_000 };
    await kubeconfig.applyToHTTPSOptions(options);
    return new Promise((resolve, reject) => {
      const req = request(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within 10s`)));
      req.on('error', reject);
      req.end(body);
    });
  })();
}

function messageOf(body: string): string {
  try {
    const message = (JSON.parse(body) as { message?: unknown }).message;
    return typeof message === 'string' ? message : body.slice(0, 200);
  } catch {
    return body.slice(0, 200);
  }
}

/** Throws when the API server cannot be asked (the caller retries): a mode is never guessed. */
export async function detectImpersonationMode(kubeconfig: KubeConfig): Promise<ModeDetection> {
  const answer = await post(
    kubeconfig,
    '/apis/authentication.k8s.io/v1/selfsubjectreviews',
    { 'Impersonate-User': PROBE_USER, [`Impersonate-Extra-${encodeURIComponent(PROBE_EXTRA)}`]: 'probe' },
    JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }),
  );
  if (answer.status === 201 || answer.status === 200) {
    const username = (JSON.parse(answer.body) as { status?: { userInfo?: { username?: string } } }).status?.userInfo?.username;
    if (username !== PROBE_USER) throw new Error(`the impersonation probe came back as ${JSON.stringify(username)}, not ${PROBE_USER}`);
    return { mode: 'constrained', because: 'the API server honours constrained impersonation (the ConstrainedImpersonation feature, KEP-5284)' };
  }
  if (answer.status === 403) {
    return { mode: 'classic', because: `the API server refused constrained impersonation, so it is off or unknown there: ${messageOf(answer.body)}` };
  }
  throw new Error(`the impersonation probe got HTTP ${answer.status}: ${messageOf(answer.body)}`);
}

/** The core group's resources and every other group, from discovery. */
export async function servedResources(kubeconfig: KubeConfig): Promise<ServedResources> {
  const [core, apis] = await Promise.all([kubeconfig.makeApiClient(CoreV1Api).getAPIResources(), kubeconfig.makeApiClient(ApisApi).getAPIVersions()]);
  return {
    core: core.resources.map((r) => ({ name: r.name, verbs: r.verbs })),
    groups: apis.groups.map((g) => g.name),
  };
}
