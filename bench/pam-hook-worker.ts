// The pam_hook look-alike token webhook (test/fixtures/authn) in a worker thread: with caches off,
// the sidecar asks it on every request, and its event loop must not be the load generator's.
import { parentPort, workerData } from 'node:worker_threads';
import { startPamHook, type PamUser } from '../local-cluster/identity/pam-hook.js';

export interface PamHookWorkerData {
  users: Record<string, PamUser>;
  /** Whose token to fetch for the parent. */
  person: string;
}

export interface PamHookReady {
  kubeconfig: string;
  token: string;
}

const { users, person } = workerData as PamHookWorkerData;
const hook = await startPamHook(users, { tokenMinutes: 120 });
const token = await hook.token(person, users[person]!.password);
if (!token) throw new Error(`the webhook refused ${person}'s own password`);
parentPort!.postMessage({ kubeconfig: hook.kubeconfig(), token } satisfies PamHookReady);
parentPort!.once('message', () => void hook.stop().then(() => parentPort!.close()));
