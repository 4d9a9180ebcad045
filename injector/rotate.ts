// Rotates one of the injector's CAs, with an overlap in which the old and the new one are both trusted
// (the command: `chaperone rotate identity|serving|webhook`, cli/rotate.ts).
//
// It writes the successor into the CA's Secret as pending: trusted at once (the running injector puts
// it into every namespace's CA ConfigMap, or the webhook's caBundle), signing after the propagation
// delay. The injector then re-issues what the old CA signed and keeps the old CA trusted for its
// --ca-overlap before dropping it (docs/operations.md, "Rotating a CA").
import type { CoreV1 } from '../lib/kube-api/resources.js';
import { certificateInfo } from '../lib/pki.js';
import { beginRotation } from './certs/ca-set.js';
import { updateCaSecret } from './certs/ca-secret.js';
import { caPolicy } from './certs/reconciler.js';
import { CA_SECRET, ownLabels, type CaKind } from './provision/names.js';

export interface RotationRequest {
  core: CoreV1;
  namespace: string;
  kind: CaKind;
  propagationMs: number;
  validityMs: number;
  now?: Date;
}

export interface RotationResult {
  /** False when a rotation was already under way: it is left as it was. */
  started: boolean;
  /** The successor's SHA-256 fingerprint. */
  successor: string;
  activateAt: Date;
  message: string;
}

/** Starts a rotation; throws when the CA does not exist yet (the injector creates it on its first start). */
export async function rotateCa(request: RotationRequest): Promise<RotationResult> {
  const { core, namespace, kind } = request;
  const now = request.now ?? new Date();
  const secret = `${namespace}/${CA_SECRET[kind]}`;
  // Overlap is the controller's to apply when the successor takes over; it plays no part here.
  const policy = caPolicy(kind, { caValidityMs: request.validityMs, caPropagationMs: request.propagationMs, caOverlapMs: 0 });
  const update = await updateCaSecret({ core, namespace, name: CA_SECRET[kind], labels: ownLabels(namespace) }, (current) => {
    if (!current) throw new Error(`the ${kind} CA does not exist yet (Secret ${secret}): the injector creates it when it first starts`);
    return beginRotation(current, now, policy);
  });
  const pending = update.set.pending!;
  const successor = certificateInfo(pending.ca.certPem).sha256;
  const started = update.events.length > 0;
  const message = started
    ? `${kind} CA rotation started (Secret ${secret}): the new CA ${successor.slice(0, 16)} is trusted now and signs from ${pending.activateAt.toISOString()}; ` +
      "the injector then re-issues what the old CA signed and keeps the old CA trusted for its --ca-overlap"
    : `a ${kind} CA rotation is already under way (Secret ${secret}): the new CA ${successor.slice(0, 16)} signs from ${pending.activateAt.toISOString()}`;
  return { started, successor, activateAt: pending.activateAt, message };
}
