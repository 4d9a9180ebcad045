// The API server's audit log as the judge of an attack suite: every attempt an attacker made is there,
// with the status the attacker saw (neither more nor less ran than the attacker was told).
import assert from 'node:assert/strict';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { readAuditEvents } from '../../local-cluster/kube.js';
import { waitFor } from '../../local-cluster/wait.js';

export interface Attempt {
  what: string;
  /** Who tried: a user name, or the attacker's name in the suite. */
  by: string;
  /** The Audit-Id header of the API server's answer. */
  auditID: string;
  status: number;
}

export async function assertAuditedAsSeen(cp: ControlPlane, attempts: readonly Attempt[], timeoutMs = 15_000): Promise<void> {
  const wanted = new Map(attempts.map((a) => [a.auditID, a]));
  const seen = new Map<string, number>();
  await waitFor('every attempt in the audit log', async () => {
    for (const event of await readAuditEvents(cp)) if (wanted.has(event.auditID) && event.stage === 'ResponseComplete') seen.set(event.auditID, event.responseStatus?.code ?? 0);
    return seen.size === wanted.size;
  }, timeoutMs);
  for (const [id, attempt] of wanted) assert.equal(seen.get(id), attempt.status, `${attempt.what} by ${attempt.by}`);
}
