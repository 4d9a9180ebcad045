// Namespace provisioning without an API server: what the readiness check reports, the namespace's
// own binding, leader election over a Lease, and that the controller's names are the ones the
// injected pod refers to.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { V1ConfigMap, V1Secret, V1ServiceAccount } from '@kubernetes/client-node';
import { KubeApiError } from '../../../lib/kube-api/client.js';
import type { CoordinationV1, Lease } from '../../../lib/kube-api/resources.js';
import { createCA, issueCertificate } from '../../../lib/pki.js';
import { CONTROLLER_OPTION_KEYS, injectorConfigSpec, loadInjectorConfig } from '../../../injector/config.js';
import { OPERATIONS_DOC, renderOperationsDoc } from '../../../scripts/gen-config-docs.js';
import { injectedVolumes } from '../../../injector/proxy.js';
import { resolveSettings } from '../../../injector/settings.js';
import { newCaSet, trustBundle } from '../../../injector/certs/ca-set.js';
import { encodeData } from '../../../injector/provision/kube.js';
import { LeaderElection } from '../../../injector/provision/lease.js';
import { ownLabels } from '../../../injector/provision/names.js';
import {
  bindsOnly,
  caConfigMapData,
  contentDigest,
  desiredServiceAccount,
  metadataDrift,
  ownMetadataOf,
  readStamp,
  serviceAccountDrift,
  serviceAccountSubject,
  stampAnnotation,
  VERIFIED_ANNOTATION,
  type ProvisioningNames,
} from '../../../injector/provision/objects.js';
import { serialisePolicy, type AccessPolicy } from '../../../lib/access-policy.js';
import { missingPieces, notProvisionedMessage, type ObservedProvisioning } from '../../../injector/provision/readiness.js';
import { provisioningNames } from '../../../injector/controller.js';
import { silentLog, testConfig } from './helpers.js';
import { waitFor } from '../../../local-cluster/wait.js';

const names: ProvisioningNames = {
  installation: 'chaperone-system',
  serviceAccount: 'chaperone-impersonator',
  servingSecret: 'chaperone-serving',
  caConfigMap: 'chaperone-ca',
  impersonatorRole: 'chaperone-impersonator',
  sidecarConfig: 'chaperone-sidecar-config',
};
const policy: AccessPolicy = { mode: 'constrained', access: 'dashboard', rules: [], nonResourceURLs: ['*'], extras: [] };

describe('injector namespace provisioning', function () {
  this.timeout(20_000);

  describe('the readiness check', function () {
    const ca = createCA({ commonName: 'serving' });
    const clusterCa = createCA({ commonName: 'cluster' });
    const labels = ownLabels('chaperone-system');
    const leaf = issueCertificate(ca, { commonName: 'sidecar', usage: 'server', ipAddresses: ['127.0.0.1'] });
    const secret = (certPem: string): V1Secret => ({ metadata: { name: 'chaperone-serving', labels }, data: encodeData({ 'tls.crt': certPem, 'tls.key': leaf.keyPem }) });
    const configMap = {
      metadata: { name: 'chaperone-ca', labels },
      data: { 'serving-ca.crt': ca.certPem, 'identity-ca.crt': ca.certPem, 'access-policy.json': serialisePolicy(policy), 'upstream-ca.crt': clusterCa.certPem },
    };
    // What the injector recorded on the role when it wrote them.
    const verified = { [VERIFIED_ANNOTATION]: stampAnnotation({ serviceAccount: 'sa-uid', configMap: contentDigest(configMap), secret: contentDigest(secret(leaf.certPem)) }) };
    const complete: ObservedProvisioning = {
      serviceAccount: { metadata: { name: 'chaperone-impersonator', labels, uid: 'sa-uid' } },
      role: { metadata: { name: 'chaperone-impersonator:team-a', labels, annotations: verified }, rules: [] },
      binding: {
        metadata: { name: 'chaperone-impersonator:team-a', labels },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'chaperone-impersonator:team-a' },
        subjects: [serviceAccountSubject('team-a', 'chaperone-impersonator')],
      },
      configMap,
      secret: secret(leaf.certPem),
    };
    const now = new Date();

    it('finds nothing missing in a provisioned namespace', function () {
      assert.deepEqual(missingPieces(complete, names, 'team-a', now), []);
    });

    it('names every missing object', function () {
      const nothing = { serviceAccount: undefined, role: undefined, binding: undefined, configMap: undefined, secret: undefined };
      assert.deepEqual(missingPieces(nothing, names, 'team-a', now), [
        'ServiceAccount chaperone-impersonator',
        'ClusterRole chaperone-impersonator:team-a',
        'ClusterRoleBinding chaperone-impersonator:team-a',
        'ConfigMap chaperone-ca',
        'Secret chaperone-serving',
      ]);
    });

    it('sees a binding that does not name this namespace, a missing key, and an expired certificate', function () {
      const expired = issueCertificate(ca, { commonName: 'old', usage: 'server', notBefore: new Date(now.getTime() - 7200_000), notAfter: new Date(now.getTime() - 3600_000) });
      const observed: ObservedProvisioning = {
        ...complete,
        binding: { ...complete.binding!, subjects: [serviceAccountSubject('team-b', 'chaperone-impersonator')] },
        configMap: { ...complete.configMap!, data: { 'serving-ca.crt': ca.certPem } },
        secret: secret(expired.certPem),
      };
      const missing = missingPieces(observed, names, 'team-a', now);
      assert.equal(missing.length, 3);
      assert.equal(missing[0], 'ClusterRoleBinding chaperone-impersonator:team-a binding ClusterRole chaperone-impersonator:team-a to ServiceAccount chaperone-impersonator alone');
      assert.equal(missing[1], 'ConfigMap chaperone-ca key identity-ca.crt and access-policy.json and upstream-ca.crt');
      assert.match(missing[2]!, /^Secret chaperone-serving \(it holds a certificate that expired at /);
    });

    it('names the annotation that keeps a namespace from having an access policy', function () {
      const missing = missingPieces({ ...complete, annotations: { 'chaperone.dev/access': 'readonly' } }, names, 'team-a', now);
      assert.deepEqual(missing, ['a valid access policy: annotation chaperone.dev/access: "readonly" is not one of dashboard, read-only, custom']);
    });

    it('does not count objects another installation (or a person) created', function () {
      const foreign = { metadata: { name: 'chaperone-impersonator', labels: ownLabels('other-system') } };
      const missing = missingPieces({ ...complete, serviceAccount: foreign }, names, 'team-a', now);
      assert.deepEqual(missing, ['ServiceAccount chaperone-impersonator (exists, but this chaperone installation did not create it and leaves it alone)']);
    });

    it('refuses a namespace until the injector has recorded what it verified there', function () {
      const role = { ...complete.role!, metadata: { ...complete.role!.metadata, annotations: {} } };
      assert.deepEqual(missingPieces({ ...complete, role }, names, 'team-a', now), [
        'ClusterRole chaperone-impersonator:team-a recording what the injector verified in the namespace (chaperone.dev/verified): it has not verified it yet',
      ]);
    });

    it('refuses a namespace whose account, CA bundle, policy or serving key is not what the injector wrote', function () {
      const hers = createCA({ commonName: 'hers' });
      const observed: ObservedProvisioning = {
        ...complete,
        // created again by someone else: same name and labels, another uid (its tokens are not the scoped ones)
        serviceAccount: { metadata: { ...complete.serviceAccount!.metadata, uid: 'another-uid' } },
        configMap: { ...configMap, data: { ...configMap.data, 'identity-ca.crt': `${ca.certPem}${hers.certPem}` } },
        secret: { ...secret(leaf.certPem), data: encodeData({ 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem, extra: 'x' }) },
      };
      assert.deepEqual(missingPieces(observed, names, 'team-a', now), [
        'ServiceAccount chaperone-impersonator (not the account the injector created; the injector is putting it back)',
        'ConfigMap chaperone-ca (its content is not what the injector wrote; the injector is putting it back)',
        'Secret chaperone-serving (its content is not what the injector wrote; the injector is putting it back)',
      ]);
      const policyOnly = { ...configMap, data: { ...configMap.data, 'access-policy.json': serialisePolicy({ ...policy, access: 'read-only' }) } };
      assert.equal(missingPieces({ ...complete, configMap: policyOnly }, names, 'team-a', now).length, 1, 'another access policy is another content');
      const upstreamOnly = { ...configMap, data: { ...configMap.data, 'upstream-ca.crt': `${clusterCa.certPem}${hers.certPem}` } };
      assert.deepEqual(missingPieces({ ...complete, configMap: upstreamOnly }, names, 'team-a', now), ['ConfigMap chaperone-ca (its content is not what the injector wrote; the injector is putting it back)'], 'another cluster CA is another content');
    });

    it('refuses a namespace without the cluster CA the sidecar verifies the API server with', function () {
      const withoutUpstream: Record<string, string> = { ...configMap.data };
      delete withoutUpstream['upstream-ca.crt'];
      assert.deepEqual(missingPieces({ ...complete, configMap: { ...configMap, data: withoutUpstream } }, names, 'team-a', now), ['ConfigMap chaperone-ca key upstream-ca.crt']);
    });

    it('words the admission refusal with the namespace, what is missing and where to look', function () {
      const message = notProvisionedMessage('team-a', { ready: false, missing: ['ServiceAccount chaperone-impersonator', 'Secret chaperone-serving'] });
      assert.match(message, /namespace team-a is labelled for injection but not ready; missing: ServiceAccount chaperone-impersonator; Secret chaperone-serving\./);
      assert.match(message, /docs\/operations\.md#troubleshooting/);
    });
  });

  describe('what the injector records and repairs', function () {
    const labels = ownLabels('chaperone-system');

    it('digests what a pod would mount: every key and value, the type, binary data; not the order or metadata', function () {
      const base: V1Secret = { metadata: { name: 'x', labels }, data: { a: '1', b: '2' } };
      const reordered: V1Secret = { metadata: { name: 'y' }, data: { b: '2', a: '1' } };
      assert.equal(contentDigest(base), contentDigest(reordered));
      assert.match(contentDigest(base), /^sha256:[0-9a-f]{64}$/);
      const binary: V1ConfigMap = { ...base, binaryData: { z: 'AA==' } };
      const others: (V1Secret | V1ConfigMap | undefined)[] = [{ data: { a: '1', b: '3' } }, { data: { a: '1', b: '2', c: '' } }, { data: { a: '1' } }, { ...base, type: 'kubernetes.io/tls' }, binary, undefined];
      assert.equal(new Set([base, ...others].map((o) => contentDigest(o))).size, others.length + 1);
    });

    it('reads its record: none (an earlier injector), unreadable (nothing trusted), or what it wrote', function () {
      assert.equal(readStamp(undefined), undefined);
      assert.equal(readStamp({ other: 'x' }), undefined);
      assert.deepEqual(readStamp({ [VERIFIED_ANNOTATION]: 'not json' }), {});
      assert.deepEqual(readStamp({ [VERIFIED_ANNOTATION]: '{"serviceAccount":7,"configMap":"sha256:a"}' }), { configMap: 'sha256:a' });
      const stamp = { serviceAccount: 'u', configMap: 'sha256:c', secret: 'sha256:s' };
      assert.deepEqual(readStamp({ [VERIFIED_ANNOTATION]: stampAnnotation(stamp) }), stamp);
    });

    it('finds what someone changed on the ServiceAccount, and repairs it keeping its uid', function () {
      const account = desiredServiceAccount({ name: 'chaperone-impersonator', namespace: 'team-a', uid: 'u', resourceVersion: '7' }, labels);
      assert.deepEqual(serviceAccountDrift(account, labels), []);
      const changed: V1ServiceAccount = {
        metadata: { ...account.metadata, labels: { ...labels, extra: 'x' }, annotations: { 'eks.amazonaws.com/role-arn': 'arn' }, ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'c', uid: 'c' }], finalizers: ['x'] },
        automountServiceAccountToken: true,
        secrets: [{ name: 'token' }],
        imagePullSecrets: [{ name: 'pull' }],
      };
      assert.deepEqual(serviceAccountDrift(changed, labels), ['labels', 'annotations', 'owner references', 'finalizers', 'automountServiceAccountToken', 'secrets', 'imagePullSecrets']);
      assert.deepEqual(serviceAccountDrift({ metadata: { ...account.metadata, labels: {} } }, labels), ['labels', 'automountServiceAccountToken']);
      const repaired = desiredServiceAccount(changed.metadata!, labels);
      assert.deepEqual(serviceAccountDrift(repaired, labels), []);
      assert.equal(repaired.metadata?.uid, 'u');
      assert.equal(repaired.metadata?.resourceVersion, '7', 'an update, conditional on what was read');
    });

    it('finds metadata that could change what a ConfigMap or Secret does', function () {
      assert.deepEqual(metadataDrift({ labels }, labels), []);
      assert.deepEqual(metadataDrift({ labels: { ...labels, 'chaperone.dev/provisioned-by': 'other' } }, labels), ['labels']);
      assert.deepEqual(metadataDrift(undefined, labels), ['labels']);
      assert.deepEqual(ownMetadataOf({ name: 'n', namespace: 'ns', uid: 'u', resourceVersion: '1', annotations: { a: 'b' }, finalizers: ['f'] }, labels), { name: 'n', namespace: 'ns', uid: 'u', resourceVersion: '1', labels });
    });
  });

  describe("the namespace's ClusterRoleBinding", function () {
    const a = serviceAccountSubject('team-a', 'chaperone-impersonator');
    const binding = (roleName: string, subjects = [a]) => ({ roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roleName }, subjects });

    it('is right only when it binds the namespace role to the scoped account alone', function () {
      assert.ok(bindsOnly(binding('chaperone-impersonator:team-a'), 'chaperone-impersonator:team-a', a));
      assert.ok(!bindsOnly(binding('cluster-admin'), 'chaperone-impersonator:team-a', a), 'another role');
      assert.ok(!bindsOnly(binding('chaperone-impersonator:team-a', [a, serviceAccountSubject('team-b', 'x')]), 'chaperone-impersonator:team-a', a), 'one subject too many');
      assert.ok(!bindsOnly(binding('chaperone-impersonator:team-a', []), 'chaperone-impersonator:team-a', a), 'no subject');
    });
  });

  describe('the names', function () {
    it('are the ones the injected pod refers to', function () {
      const config = loadInjectorConfig([], {});
      const cas = { identity: newCaSet(new Date(), { commonName: 'i', validityMs: 3600_000, propagationMs: 0, overlapMs: 0 }), serving: newCaSet(new Date(), { commonName: 's', validityMs: 3600_000, propagationMs: 0, overlapMs: 0 }) };
      const clusterCa = createCA({ commonName: 'cluster' }).certPem;
      const data = caConfigMapData(cas, policy, clusterCa);
      assert.equal(data['serving-ca.crt'], trustBundle(cas.serving));
      assert.equal(data['upstream-ca.crt'], clusterCa);
      assert.ok(!('upstream-ca.crt' in caConfigMapData(cas, policy, undefined)), 'no key while the cluster CA is not known');
      const settings = resolveSettings(testConfig());
      assert.equal(settings.serviceAccount, config.serviceAccount);
      const volumes = injectedVolumes(settings);
      const secretNames = volumes.flatMap((v) => (v.secret ? [v.secret.secretName] : []));
      assert.deepEqual(secretNames, [config.servingSecret]);
      const configMapKeys = volumes.flatMap((v) => [
        ...(v.configMap ? [[v.configMap.name, v.configMap.items![0]!.key]] : []),
        ...(v.projected?.sources ?? []).flatMap((s) => (s.configMap ? [[s.configMap.name, s.configMap.items![0]!.key]] : [])),
      ]);
      // Every CA the pod mounts comes from the injector's ConfigMap, which nobody in the namespace may change; none from kube-root-ca.crt.
      assert.ok(configMapKeys.some(([, key]) => key === 'upstream-ca.crt'), 'the sidecar verifies the API server with upstream-ca.crt');
      for (const [name, key] of configMapKeys) {
        assert.equal(name, config.caConfigMap);
        assert.ok(key! in data, `the ConfigMap holds ${key}`);
      }
      assert.equal(provisioningNames(config).installation, 'chaperone-system');
    });

    it('are listed in docs/operations.md exactly as the spec defines them', function () {
      const doc = readFileSync(OPERATIONS_DOC, 'utf8');
      assert.ok(doc === renderOperationsDoc(doc), 'the controller options in docs/operations.md are out of date: run npx tsx scripts/gen-config-docs.ts');
      for (const key of CONTROLLER_OPTION_KEYS) assert.ok(key in injectorConfigSpec.options, key);
    });
  });

  describe('leader election', function () {
    /** A Lease store with the API server's optimistic concurrency. */
    function fakeCoordination(): CoordinationV1 {
      let stored: Lease | undefined;
      let version = 0;
      const copy = (lease: Lease) => JSON.parse(JSON.stringify(lease)) as Lease;
      const refused = (status: number, reason: string) => new KubeApiError(status, reason, reason, 'leases');
      return {
        readNamespacedLease: () => (stored ? Promise.resolve(copy(stored)) : Promise.reject(refused(404, 'NotFound'))),
        createNamespacedLease: ({ body }: { body: Lease }) => {
          if (stored) return Promise.reject(refused(409, 'AlreadyExists'));
          stored = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++version) } };
          return Promise.resolve(copy(stored));
        },
        replaceNamespacedLease: ({ body }: { body: Lease }) => {
          if (body.metadata?.resourceVersion !== stored?.metadata?.resourceVersion) return Promise.reject(refused(409, 'Conflict'));
          stored = { ...copy(body), metadata: { ...body.metadata, resourceVersion: String(++version) } };
          return Promise.resolve(copy(stored));
        },
      };
    }

    it('makes one replica the leader, and hands over at once when it stops', async function () {
      const coordination = fakeCoordination();
      const leading: string[] = [];
      const elector = (identity: string) =>
        new LeaderElection({
          coordination,
          namespace: 'chaperone-system',
          name: 'chaperone-injector',
          identity,
          leaseDurationMs: 60_000,
          retryPeriodMs: 50,
          log: silentLog,
          onStartedLeading: () => leading.push(`+${identity}`),
          onStoppedLeading: () => {
            leading.push(`-${identity}`);
            return Promise.resolve();
          },
        });
      const [a, b] = [elector('a'), elector('b')];
      a.start();
      await waitFor('a to lead', () => a.isLeader());
      b.start();
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(!b.isLeader(), 'b waits while a renews');
      await a.stop();
      // The lease lasts a minute: b takes it this soon only because a released it.
      await waitFor('b to lead', () => b.isLeader());
      assert.deepEqual(leading, ['+a', '-a', '+b']);
      await b.stop();
    });
  });
});
