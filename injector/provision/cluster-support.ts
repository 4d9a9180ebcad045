// What the cluster offers that the access policies depend on: constrained impersonation (on by default
// since 1.36, but a feature gate), and the resources it serves (read-only access names them one by one).
//
// Support is probed, not guessed from the version: the injector asks, impersonating a user that exists
// for nothing else, to create a SelfSubjectReview, carrying an extra only its constrained permissions
// name. With constrained impersonation on, the API server allows it (impersonate:user-info and
// impersonate-on:user-info:create, both in the injector's own role); with it off only the classic
// `impersonate` verb counts, which never names that extra, and the answer is 403.
import type { ImpersonationMode } from '../../lib/access-policy.js';
import { statusOf, type KubeApi } from '../../lib/kube-api/client.js';
import type { ServedResources } from './access.js';

export const PROBE_USER = 'chaperone.dev:impersonation-probe';
export const PROBE_EXTRA = 'chaperone.dev/impersonation-probe';

export interface ModeDetection {
  mode: ImpersonationMode;
  /** Why, in words for the log and for `chaperone doctor`. */
  because: string;
}

/** Throws when the API server cannot be asked (the caller retries): a mode is never guessed. */
export async function detectImpersonationMode(api: KubeApi): Promise<ModeDetection> {
  const answer = await api.send({
    method: 'POST',
    path: '/apis/authentication.k8s.io/v1/selfsubjectreviews',
    headers: { 'Impersonate-User': PROBE_USER, [`Impersonate-Extra-${encodeURIComponent(PROBE_EXTRA)}`]: 'probe' },
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    timeoutMs: 10_000,
  });
  if (answer.status === 201 || answer.status === 200) {
    const username = (JSON.parse(answer.body) as { status?: { userInfo?: { username?: string } } }).status?.userInfo?.username;
    if (username !== PROBE_USER) throw new Error(`the impersonation probe came back as ${JSON.stringify(username)}, not ${PROBE_USER}`);
    return { mode: 'constrained', because: 'the API server honours constrained impersonation (the ConstrainedImpersonation feature, KEP-5284)' };
  }
  if (answer.status === 403) {
    return { mode: 'classic', because: `the API server refused constrained impersonation, so it is off or unknown there: ${statusOf(answer.body).message}` };
  }
  throw new Error(`the impersonation probe got HTTP ${answer.status}: ${statusOf(answer.body).message}`);
}

/** The core group's resources and every other group, from discovery. */
export async function servedResources(api: KubeApi): Promise<ServedResources> {
  const [core, apis] = await Promise.all([
    api.read<{ resources: { name: string; verbs: string[] }[] }>('/api/v1'),
    api.read<{ groups: { name: string }[] }>('/apis'),
  ]);
  return {
    core: core.resources.map((r) => ({ name: r.name, verbs: r.verbs })),
    groups: apis.groups.map((g) => g.name),
  };
}
