// A sidecar in front of the stand-in API server (test/support/fake-upstream.ts), which records what
// was forwarded: for the faults and hostile clients that the local control plane cannot show.
import type { CertificateAndKey } from '../../../lib/pki.js';
import { startFakeUpstream, type FakeUpstream } from '../../support/fake-upstream.js';
import { valueOf, withStarted, type WhenStarted } from '../../support/fixtures.js';
import { launchSidecar, type LaunchOptions, type LocalSidecar } from '../../../local-cluster/sidecar.js';
import { call, type Answer } from './load.js';

export const STAND_IN_TOKEN = 'scoped-token-one';

export interface StandIn {
  fake: FakeUpstream;
  sidecar: LocalSidecar;
  /** A person of the sidecar's identity CA, in group dev. */
  alice: CertificateAndKey;
  /** A GET through the sidecar, as alice unless told otherwise (cert: null for none). */
  get(path: string, init?: { cert?: CertificateAndKey | null; token?: string }): Promise<Answer>;
  /** Whether the stand-in saw this path forwarded (not a review about it). */
  forwarded(path: string): boolean;
  stop(): Promise<void>;
}

export async function startStandIn(options: Partial<LaunchOptions> = {}): Promise<StandIn> {
  const fake = await startFakeUpstream();
  const sidecar = await launchSidecar({ upstream: fake.url, upstreamCaPem: fake.ca.certPem, token: STAND_IN_TOKEN, ...options });
  const alice = sidecar.clientCert('alice', ['dev']);
  return {
    fake,
    sidecar,
    alice,
    get: (path, init = {}) =>
      call({
        port: sidecar.port,
        path,
        ca: sidecar.servingCa.certPem,
        ...(init.cert === null ? {} : { cert: init.cert ?? alice }),
        ...(init.token ? { headers: { authorization: `Bearer ${init.token}` } } : {}),
      }),
    forwarded: (path) => fake.seen.some((r) => r.method === 'GET' && r.url === path),
    stop: async () => {
      await sidecar.stop();
      await fake.close();
    },
  };
}

/** A stand-in and its sidecar for the suite, stopped after it. */
export function withStandIn(options: WhenStarted<Partial<LaunchOptions>> = {}): StandIn {
  return withStarted(async () => startStandIn(await valueOf(options)));
}
