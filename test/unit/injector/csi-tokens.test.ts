// Rule csi-claim-in-scoped-pod as pure decisions: which CSIDrivers would get a token the API server
// accepts, what the injector learns of the API server's audiences, and what an injected pod with a
// claim is told. test/e2e/containment-csi.test.ts tries the same against the real API server.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { V1CSIDriver, V1Pod, V1Volume } from '@kubernetes/client-node';
import { apiAudiencesOf, audiencesOfBearer, claimVolumes, refuseTokenClaims, tokenDrivers, type CsiTokenFacts, type CsiTokenLookup } from '../../../injector/csi-tokens.js';
import { Denial } from '../../../injector/denial.js';
import { kubeconfigConnection } from '../../../lib/kube-api/connection.js';
import { kubeconfigYaml } from '../../../lib/kubeconfig.js';
import { createCA } from '../../../lib/pki.js';
import { answerReview } from '../../../injector/review.js';
import { admissionReview, silentLog, testConfig, testNamespaces } from './helpers.js';

const API = 'https://kubernetes.default.svc.cluster.local';

function driver(name: string, spec: Partial<V1CSIDriver['spec']> = {}): V1CSIDriver {
  return { apiVersion: 'storage.k8s.io/v1', kind: 'CSIDriver', metadata: { name }, spec };
}

const claim: V1Volume = { name: 'data', persistentVolumeClaim: { claimName: 'data' } };
const ephemeral: V1Volume = { name: 'scratch', ephemeral: { volumeClaimTemplate: { spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } } };

/** The API server's audiences are [API] unless said otherwise ('unknown'). */
function facts(drivers: V1CSIDriver[], apiAudiences: string[] | 'unknown' = [API]): CsiTokenLookup {
  return () => Promise.resolve({ drivers, apiAudiences: apiAudiences === 'unknown' ? undefined : apiAudiences });
}

function jwt(payload: unknown): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part(payload)}.c2ln`;
}

async function denialOf(promise: Promise<unknown>): Promise<Denial> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof Denial, `expected a Denial, got ${String(err)}`);
  return err;
}

describe('injector: claims in pods that run as the scoped account (csi-claim-in-scoped-pod)', function () {
  describe('claimVolumes', function () {
    it('is the persistentVolumeClaim and generic ephemeral volumes, and in-tree types migrated to CSI; nothing else', function () {
      const volumes: V1Volume[] = [
        claim,
        ephemeral,
        { name: 'ebs', awsElasticBlockStore: { volumeID: 'vol-1' } },
        { name: 'share', azureFile: { secretName: 's', shareName: 'x' } },
        { name: 'tmp', emptyDir: {} },
        { name: 'cfg', configMap: { name: 'x' } },
        { name: 'nfs', nfs: { server: 'n', path: '/' } },
        { name: 'inline', csi: { driver: 'x' } },
      ];
      assert.deepEqual(claimVolumes({ containers: [], volumes }).map((v) => v.name), ['data', 'scratch', 'ebs', 'share']);
      assert.deepEqual(claimVolumes({ containers: [] }), []);
    });
  });

  describe('tokenDrivers', function () {
    const judge = (drivers: V1CSIDriver[], apiAudiences: string[] | 'unknown' = [API], trusted: string[] = []) =>
      tokenDrivers({ drivers, apiAudiences: apiAudiences === 'unknown' ? undefined : apiAudiences } satisfies CsiTokenFacts, trusted);

    it('counts audience "" (the API server\'s own) and the API server\'s audiences, not others', function () {
      const drivers = [
        driver('own', { tokenRequests: [{ audience: '' }] }),
        driver('api', { tokenRequests: [{ audience: 'vault' }, { audience: API }] }),
        driver('cloud', { tokenRequests: [{ audience: 'sts.example.com' }] }),
        driver('none'),
      ];
      assert.deepEqual(judge(drivers), [
        { name: 'own', audiences: [''] },
        { name: 'api', audiences: [API] },
      ]);
    });

    it('counts every audience while the API server\'s are unknown (fails closed)', function () {
      assert.deepEqual(judge([driver('cloud', { tokenRequests: [{ audience: 'sts.example.com' }] })], 'unknown'), [{ name: 'cloud', audiences: ['sts.example.com'] }]);
    });

    it('leaves out drivers that cannot serve a claim (volumeLifecycleModes without Persistent) and those the operator trusts', function () {
      const drivers = [
        driver('inline-only', { volumeLifecycleModes: ['Ephemeral'], tokenRequests: [{ audience: '' }] }),
        driver('both', { volumeLifecycleModes: ['Ephemeral', 'Persistent'], tokenRequests: [{ audience: '' }] }),
        driver('trusted', { tokenRequests: [{ audience: '' }] }),
      ];
      assert.deepEqual(judge(drivers, [API], ['trusted']).map((d) => d.name), ['both']);
    });

    it('takes a missing audience as "", as the API server stores it', function () {
      assert.deepEqual(judge([driver('odd', { tokenRequests: [{} as { audience: string }] })]), [{ name: 'odd', audiences: [''] }]);
    });
  });

  describe('audiencesOfBearer', function () {
    it("reads the aud claim of the injector's own service-account token", function () {
      assert.deepEqual(audiencesOfBearer(`Bearer ${jwt({ aud: [API, 'https://other'] })}`), [API, 'https://other']);
      assert.deepEqual(audiencesOfBearer(`Bearer ${jwt({ aud: API })}`), [API]);
    });

    it('is unknown for no token, a token that is no JWT, or one without aud', function () {
      for (const header of [undefined, '', 'Basic dXNlcjpwdw==', 'Bearer opaque-token', `Bearer ${jwt({ sub: 'x' })}`, `Bearer ${jwt({ aud: [] })}`, `Bearer ${jwt({ aud: [1] })}`, 'Bearer a.%%%.c']) {
        assert.equal(audiencesOfBearer(header), undefined, String(header));
      }
    });
  });

  describe('apiAudiencesOf', function () {
    it('reads the audiences of the bearer token its kubeconfig sends', async function () {
      const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-csi-tokens-'));
      try {
        const file = path.join(dir, 'kubeconfig');
        await writeFile(file, kubeconfigYaml('https://127.0.0.1:1', createCA({ commonName: 'c' }).certPem, 'u', { token: jwt({ aud: [API] }) }));
        assert.deepEqual(await apiAudiencesOf(kubeconfigConnection(file)), [API]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('refuseTokenClaims', function () {
    const spec = (...volumes: V1Volume[]) => ({ containers: [{ name: 'app', image: 'app:1' }], volumes });
    const dangerous = facts([driver('tokens.csi.example.com', { tokenRequests: [{ audience: '' }] })]);

    it('asks nothing for a pod without claims', async function () {
      await refuseTokenClaims(spec({ name: 'tmp', emptyDir: {} }), () => Promise.reject(new Error('asked')), []);
    });

    it('refuses every claim while a token driver exists, whatever the claim names, naming the rule, the volumes and the driver', async function () {
      const denial = await denialOf(refuseTokenClaims(spec(claim, ephemeral, { name: 'ebs', awsElasticBlockStore: { volumeID: 'vol-1' } }), dangerous, []));
      assert.equal(denial.code, 403);
      assert.match(
        denial.message,
        /^chaperone refuses this pod: chaperone rule csi-claim-in-scoped-pod: the pod runs as the scoped service account and has volume data \(claim data\), volume scratch \(a generic ephemeral volume\), volume ebs \(awsElasticBlockStore, which the kubelet publishes through its CSI driver\): the CSIDriver tokens\.csi\.example\.com \(audience "", the API server's own\) requests tokens/,
      );
      assert.match(denial.message, /--trusted-csi-drivers/);
    });

    it('names every driver that counts', async function () {
      const two = facts([driver('a.example.com', { tokenRequests: [{ audience: '' }] }), driver('b.example.com', { tokenRequests: [{ audience: API }] })]);
      const denial = await denialOf(refuseTokenClaims(spec(claim), two, []));
      assert.match(denial.message, new RegExp(`: the CSIDrivers a\\.example\\.com \\(audience "", the API server's own\\), b\\.example\\.com \\(audience "${API.replaceAll('.', '\\.')}"\\) request tokens of the pods whose volumes they publish`));
      assert.match(denial.message, /name the drivers in the injector's --trusted-csi-drivers$/);
    });

    it('allows claims when no driver counts, or the one that does is trusted', async function () {
      await refuseTokenClaims(spec(claim), facts([driver('plain'), driver('cloud', { tokenRequests: [{ audience: 'sts.example.com' }] })]), []);
      await refuseTokenClaims(spec(claim), dangerous, ['tokens.csi.example.com']);
    });

    it('fails closed when it cannot read the CSIDrivers, or has no way to', async function () {
      for (const lookup of [() => Promise.reject(new Error('HTTP 403: forbidden')), undefined]) {
        const denial = await denialOf(refuseTokenClaims(spec(ephemeral), lookup, []));
        assert.equal(denial.code, 500);
        assert.match(denial.message, /chaperone rule csi-claim-in-scoped-pod: .*, and chaperone cannot tell which CSI drivers would get its token: /);
      }
    });

    it('says so when the API server\'s audiences are unknown', async function () {
      const denial = await denialOf(refuseTokenClaims(spec(claim), facts([driver('cloud', { tokenRequests: [{ audience: 'sts.example.com' }] })], 'unknown'), []));
      assert.match(denial.message, /chaperone cannot tell which audiences the API server accepts, so it counts every one/);
    });
  });

  describe('in the review of a pod the injector injects', function () {
    const pod: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] }], volumes: [claim] } };
    const reviewWith = (csiTokens: CsiTokenLookup, argv: string[] = [], namespace?: string) =>
      answerReview(admissionReview({ object: pod, ...(namespace ? { namespace } : {}) }), { config: testConfig(argv), namespaceLabels: testNamespaces, csiTokens, log: silentLog });

    it('refuses it while a token driver exists, allows it with the driver trusted', async function () {
      const dangerous = facts([driver('tokens.csi.example.com', { tokenRequests: [{ audience: '' }] })]);
      const refused = await reviewWith(dangerous);
      assert.equal(refused.response.allowed, false);
      assert.match(refused.response.status?.message ?? '', /chaperone rule csi-claim-in-scoped-pod/);
      assert.equal((await reviewWith(dangerous, ['--trusted-csi-drivers=tokens.csi.example.com'])).response.allowed, true);
    });

    it('does not judge pods it does not inject (they do not run as the scoped account)', async function () {
      const out = await reviewWith(() => Promise.reject(new Error('asked')), [], 'plain');
      assert.equal(out.response.allowed, true);
    });
  });
});
