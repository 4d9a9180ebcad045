// A CA set kept in a Secret of the injector's namespace. Every change is a read-modify-write with the
// resourceVersion as precondition, so the controller and a rotation command never lose each other's
// writes.
//
//   ca.crt, ca.key   the CA that signs now (what `chaperone` reads to issue people's certificates)
//   bundle.crt       every CA to trust now (active, pending, retired)
//   rotation.json    the pending successor (with its key) and the retired CAs, with their times
import type { V1Secret } from '@kubernetes/client-node';
import type { CoreV1 } from '../../lib/kube-api/resources.js';
import { describeError, decodeData, encodeData, isConflict, unlessNotFound } from '../provision/kube.js';
import { trustBundle, type CaChange, type CaSet } from './ca-set.js';

export const CA_CERT_KEY = 'ca.crt';
export const CA_KEY_KEY = 'ca.key';
export const CA_BUNDLE_KEY = 'bundle.crt';
export const CA_ROTATION_KEY = 'rotation.json';

interface RotationJson {
  pending?: { certPem: string; keyPem: string; activateAt: string };
  retired: { certPem: string; trustUntil: string }[];
}

export function caSetToData(set: CaSet): Record<string, string> {
  const rotation: RotationJson = {
    ...(set.pending ? { pending: { ...set.pending.ca, activateAt: set.pending.activateAt.toISOString() } } : {}),
    retired: set.retired.map((r) => ({ certPem: r.certPem, trustUntil: r.trustUntil.toISOString() })),
  };
  return {
    [CA_CERT_KEY]: set.active.certPem,
    [CA_KEY_KEY]: set.active.keyPem,
    [CA_BUNDLE_KEY]: trustBundle(set),
    [CA_ROTATION_KEY]: `${JSON.stringify(rotation, null, 2)}\n`,
  };
}

/** Throws an error naming the Secret and what is wrong with it. */
export function caSetFromSecret(secret: V1Secret): CaSet {
  const where = `Secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
  const data = decodeData(secret.data);
  const certPem = data[CA_CERT_KEY];
  const keyPem = data[CA_KEY_KEY];
  if (!certPem || !keyPem) throw new Error(`${where} lacks ${CA_CERT_KEY} or ${CA_KEY_KEY}`);
  let rotation: RotationJson = { retired: [] };
  if (data[CA_ROTATION_KEY]) {
    try {
      rotation = JSON.parse(data[CA_ROTATION_KEY]) as RotationJson;
    } catch (err) {
      throw new Error(`${where}: ${CA_ROTATION_KEY} is not JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  const date = (text: string, what: string) => {
    const time = new Date(text);
    if (Number.isNaN(time.getTime())) throw new Error(`${where}: ${CA_ROTATION_KEY} has no valid ${what}`);
    return time;
  };
  return {
    active: { certPem, keyPem },
    ...(rotation.pending
      ? { pending: { ca: { certPem: rotation.pending.certPem, keyPem: rotation.pending.keyPem }, activateAt: date(rotation.pending.activateAt, 'pending.activateAt') } }
      : {}),
    retired: (rotation.retired ?? []).map((r) => ({ certPem: r.certPem, trustUntil: date(r.trustUntil, 'retired[].trustUntil') })),
  };
}

export interface CaSecretRef {
  core: CoreV1;
  namespace: string;
  name: string;
  labels: Record<string, string>;
}

export interface CaUpdate extends CaChange {
  /** The Secret's resourceVersion after the update. */
  resourceVersion: string;
  created: boolean;
}

const MAX_ATTEMPTS = 5;

/**
 * Reads the CA set, lets `change` decide (undefined when there is none yet: it must create one), and
 * writes the result if anything changed, retrying from a fresh read when someone else wrote first.
 */
export async function updateCaSecret(ref: CaSecretRef, change: (current: CaSet | undefined) => CaChange): Promise<CaUpdate> {
  const { core, namespace, name } = ref;
  let lastError: unknown;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const existing = await unlessNotFound(core.readNamespacedSecret({ name, namespace }));
    const result = change(existing ? caSetFromSecret(existing) : undefined);
    try {
      if (!existing) {
        const created = await core.createNamespacedSecret({
          namespace,
          body: { metadata: { name, labels: ref.labels }, type: 'Opaque', data: encodeData(caSetToData(result.set)) },
        });
        return { ...result, resourceVersion: created.metadata?.resourceVersion ?? '', created: true };
      }
      if (result.events.length === 0) return { ...result, resourceVersion: existing.metadata?.resourceVersion ?? '', created: false };
      const replaced = await core.replaceNamespacedSecret({
        name,
        namespace,
        body: { ...existing, metadata: { ...existing.metadata, labels: { ...existing.metadata?.labels, ...ref.labels } }, data: encodeData(caSetToData(result.set)) },
      });
      return { ...result, resourceVersion: replaced.metadata?.resourceVersion ?? '', created: false };
    } catch (err) {
      if (!isConflict(err)) throw err;
      lastError = err;
    }
  }
  throw new Error(`Secret ${namespace}/${name} kept changing under us: ${describeError(lastError)}`);
}
