// Claims in pods that run as the scoped account (rule csi-claim-in-scoped-pod). When the kubelet
// publishes a volume through a CSI driver whose CSIDriver object lists tokenRequests, it hands the
// driver a token of the pod's service account, here chaperone-impersonator, for each audience listed;
// audience "" means the API server's own. A persistentVolumeClaim or a generic ephemeral volume is
// published by whatever driver serves the volume bound to the claim when the pod starts, and
// admission cannot know that driver: a claim that does not exist yet, or is not bound, binds later
// (its storage class, the default class, a static PV it names); and until the pod is scheduled
// nothing protects a bound claim (the PVC protection controller counts only scheduled pods), so
// someone who may write claims in the namespace deletes it and creates another of the same name. So
// the claim is not what is judged, the cluster is: while any CSIDriver that can serve persistent
// volumes requests a token the API server accepts and the operator has not named it trusted, a pod
// that runs as the scoped account may have no claim at all. Judged at every such admission from the
// CSIDrivers as the injector's watch has them (admission-cache.ts): a CSIDriver's tokenRequests can
// change at any time (only attachRequired and volumeLifecycleModes of its spec are immutable).
import type { V1CSIDriver, V1PodSpec, V1Volume } from '@kubernetes/client-node';
import type { KubeConnection } from '../lib/kube-api/connection.js';
import { Denial } from './denial.js';

export const CSI_CLAIM_RULE = 'csi-claim-in-scoped-pod';

/** What the cluster says right now: its CSIDrivers, and the audiences its API server accepts (undefined: unknown). */
export interface CsiTokenFacts {
  drivers: V1CSIDriver[];
  apiAudiences: readonly string[] | undefined;
}

export type CsiTokenLookup = () => Promise<CsiTokenFacts>;

/** A driver that would get a token the API server accepts, and the audiences of its tokenRequests that count. */
export interface TokenDriver {
  name: string;
  audiences: string[];
}

/**
 * In-tree volume types the kubelet publishes through a CSI driver (CSI migration, k8s.io/csi-translation-lib),
 * as it publishes a claim's volume: with the tokens its CSIDriver requests. Inline in a pod, too.
 */
const MIGRATED_TO_CSI = ['awsElasticBlockStore', 'azureDisk', 'azureFile', 'cinder', 'gcePersistentDisk', 'portworxVolume', 'rbd', 'vsphereVolume'] as const;

function migratedType(volume: V1Volume): string | undefined {
  return MIGRATED_TO_CSI.find((type) => volume[type] !== undefined);
}

/**
 * The pod's volumes a CSI driver publishes as it publishes a claim: a persistentVolumeClaim, a generic
 * ephemeral volume (a claim made from its template), and an in-tree type migrated to CSI.
 */
export function claimVolumes(spec: V1PodSpec): V1Volume[] {
  return (spec.volumes ?? []).filter((volume) => volume.persistentVolumeClaim !== undefined || volume.ephemeral !== undefined || migratedType(volume) !== undefined);
}

/**
 * The CSIDrivers a claim could end up served by that would get a token the API server accepts: those
 * that serve persistent volumes (the kubelet refuses to publish a claim through a driver whose
 * volumeLifecycleModes, immutable, lack Persistent) and request a token for audience "" or for one of
 * the API server's audiences (for any audience while those are unknown), and are not trusted.
 */
export function tokenDrivers(facts: CsiTokenFacts, trusted: readonly string[]): TokenDriver[] {
  const counts = (audience: string) => audience === '' || facts.apiAudiences === undefined || facts.apiAudiences.includes(audience);
  return facts.drivers.flatMap((driver) => {
    const name = driver.metadata?.name ?? '';
    if (trusted.includes(name)) return [];
    if (!(driver.spec.volumeLifecycleModes ?? ['Persistent']).includes('Persistent')) return [];
    const audiences = [...new Set((driver.spec.tokenRequests ?? []).map((request) => request.audience ?? '').filter(counts))];
    return audiences.length > 0 ? [{ name, audiences }] : [];
  });
}

function describe(driver: TokenDriver): string {
  return `${driver.name} (audience ${driver.audiences.map((audience) => (audience === '' ? '"", the API server\'s own' : `"${audience}"`)).join(', ')})`;
}

function claimOf(volume: V1Volume): string {
  if (volume.persistentVolumeClaim) return `volume ${volume.name} (claim ${volume.persistentVolumeClaim.claimName})`;
  if (volume.ephemeral) return `volume ${volume.name} (a generic ephemeral volume)`;
  return `volume ${volume.name} (${migratedType(volume)!}, which the kubelet publishes through its CSI driver)`;
}

/**
 * Throws a Denial naming rule csi-claim-in-scoped-pod for a pod spec, which runs as the scoped
 * account, with a claim while the cluster has a token driver; fails closed when it cannot tell.
 */
export async function refuseTokenClaims(spec: V1PodSpec, lookup: CsiTokenLookup | undefined, trusted: readonly string[]): Promise<void> {
  const claims = claimVolumes(spec);
  if (claims.length === 0) return;
  const rule = `chaperone rule ${CSI_CLAIM_RULE}: the pod runs as the scoped service account and has ${claims.map(claimOf).join(', ')}`;
  let facts: CsiTokenFacts;
  try {
    if (!lookup) throw new Error('the injector reads no CSIDrivers');
    facts = await lookup();
  } catch (err) {
    throw new Denial('InternalError', `chaperone refuses this pod: ${rule}, and chaperone cannot tell which CSI drivers would get its token: ${(err as Error).message}`);
  }
  const drivers = tokenDrivers(facts, trusted);
  if (drivers.length === 0) return;
  const audiences = facts.apiAudiences === undefined ? ' (chaperone cannot tell which audiences the API server accepts, so it counts every one)' : '';
  throw new Denial(
    'Forbidden',
    `chaperone refuses this pod: ${rule}: ${drivers.length === 1 ? 'the CSIDriver' : 'the CSIDrivers'} ${drivers.map(describe).join(', ')} ` +
      `${drivers.length === 1 ? 'requests' : 'request'} tokens of the pods whose volumes ${drivers.length === 1 ? 'it publishes' : 'they publish'}${audiences}, ` +
      `and a claim can end up served by ${drivers.length === 1 ? 'it' : 'any of them'} (one not bound yet binds later; until the pod is scheduled, a claim can be deleted and made again), so the kubelet would hand it ` +
      `a token of chaperone-impersonator, which can impersonate people; use no claim in this pod (an emptyDir, a configMap or a secret volume), ` +
      `or have a cluster administrator name the ${drivers.length === 1 ? 'driver' : 'drivers'} in the injector's --trusted-csi-drivers`,
  );
}

/**
 * The audiences of the injector's own bearer token, as its kubeconfig sends it: a service-account
 * token the kubelet requested with no audience, like the shipped Deployment's, carries every audience
 * the API server accepts. undefined when the kubeconfig sends no JWT with an aud claim.
 */
export function audiencesOfBearer(authorization: string | undefined): string[] | undefined {
  const token = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1];
  const payload = token?.split('.')[1];
  if (token?.split('.').length !== 3 || !payload) return undefined;
  let aud: unknown;
  try {
    aud = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { aud?: unknown }).aud;
  } catch {
    return undefined;
  }
  if (typeof aud === 'string' && aud !== '') return [aud];
  if (Array.isArray(aud) && aud.length > 0 && aud.every((item) => typeof item === 'string')) return aud;
  return undefined;
}

/** The audiences of the injector's own token as its connection sends it now (a rotated token is read again). */
export async function apiAudiencesOf(connection: Pick<KubeConnection, 'credentials'>): Promise<string[] | undefined> {
  const { headers } = await connection.credentials();
  return audiencesOfBearer(headers.authorization);
}
