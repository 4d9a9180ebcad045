// The chaperone command run as a person runs it (a process, their kubeconfig), against the real API
// server with the injector installed as the shipped manifests install it: `chaperone doctor` on a
// healthy namespace and on broken ones, and `chaperone kubeconfig` reading the CAs from the cluster
// for a kubeconfig that kubectl then uses through an injected pod's sidecar.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import type { V1Pod } from '@kubernetes/client-node';
import { kubeconfigYaml } from '../../lib/kubeconfig.js';
import type { Finding, Report } from '../../cli/doctor/findings.js';
import {
  bindClusterRoleInNamespace,
  createNamespace,
  createServiceAccount,
  grantInNamespace,
  kubectl,
  mintServiceAccountToken,
  serviceAccountSubject,
  waitForCanI,
} from '../../local-cluster/kube.js';
import { startPodSidecar, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { runMain } from '../support/run-main.js';
import { withReplicatedInjector, withSharedControlPlane } from '../support/fixtures.js';

describe('the chaperone command (a process, against the real API server)', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const { installation, replica, injector } = withReplicatedInjector({ cp, clients }, ['--webhook-hosts=127.0.0.1', '--resync-interval=2s']);
  let sidecar: PodSidecar | undefined;
  let dir: string;
  /** The injector's config file, as an operator who renamed things would pass it. */
  let injectorConfig: string;
  let team: string;
  let pod: V1Pod;

  const chaperone = (args: string[], env: NodeJS.ProcessEnv = {}) => runMain('cli/main.ts', args, env);

  async function doctor(args: string[]): Promise<{ code: number; report: Report; stderr: string }> {
    const result = await chaperone(['doctor', `--kubeconfig=${cp.adminKubeconfig}`, `--injector-config=${injectorConfig}`, '-o', 'json', ...args]);
    assert.equal(result.stderr, '');
    return { code: result.code, report: JSON.parse(result.stdout) as Report, stderr: result.stderr };
  }

  const finding = (report: Report, check: string): Finding => {
    const found = report.findings.find((f) => f.check === check);
    assert.ok(found, `no finding ${check} in ${JSON.stringify(report.findings.map((f) => f.check))}`);
    return found;
  };
  const failures = (report: Report) => report.findings.filter((f) => f.status === 'fail');

  /** A pod created through the webhook, as a Deployment would create it. */
  async function createPod(namespace: string, name: string, labels: Record<string, string> = {}): Promise<V1Pod> {
    await clients.core.createNamespacedPod({ namespace, body: { metadata: { name, labels }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } } });
    return clients.core.readNamespacedPod({ name, namespace });
  }

  before(async function () {
    this.timeout(15 * 60_000);
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-cli-e2e-'));
    // The names this installation gives things, in the injector's own config-file format.
    const names = Object.fromEntries(Object.entries(installation.config()).filter(([key, value]) => typeof value === 'string' && key !== 'kubeconfig'));
    injectorConfig = path.join(dir, 'injector.yaml');
    await writeFile(injectorConfig, YAML.stringify(names));

    team = await installation.createLabelledNamespace('cli');
    await waitFor('the namespace to be provisioned', async () => (await replica.provisioningStatus(team)).ready);
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: team }).then(() => true));
    // The API server learns of a new webhook configuration a moment after it is written.
    pod = await waitFor('the webhook to inject a pod', async () => {
      const created = await createPod(team, `probe-${Date.now().toString(36)}`);
      const injected = created.spec?.serviceAccountName === 'chaperone-impersonator';
      if (!injected) await clients.core.deleteNamespacedPod({ name: created.metadata!.name!, namespace: team });
      return injected ? created : undefined;
    }, 30_000);
  });

  after(async function () {
    await sidecar?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('chaperone doctor', function () {
    it('finds nothing failing in a healthy namespace and its injected pod (exit code 0)', async function () {
      const { code, report } = await doctor(['-n', team, '--pod', pod.metadata!.name!]);
      assert.deepEqual(failures(report), []);
      assert.equal(code, 0);
      for (const check of ['namespace/label', 'namespace/provision-selector', 'provisioning/service-account', 'provisioning/serving-ca', 'provisioning/identity-ca',
        'provisioning/serving-secret', 'provisioning/injector-readiness', 'webhook/namespace-selector', 'webhook/object-selector', 'webhook/ca-bundle',
        'rbac/subjectaccessreviews', 'rbac/impersonate', 'rbac/least-privilege', 'pod/sidecar', 'pod/status', 'pod/service-account', 'pod/dashboard-token']) {
        assert.equal(finding(report, check).status, 'ok', JSON.stringify(finding(report, check)));
      }
      // No kubelet runs here: the pod never starts, which is worth a warning and not a failure.
      assert.equal(finding(report, 'pod/sidecar-ready').status, 'warn');
      for (const f of report.findings.filter((f) => f.status !== 'ok')) assert.ok(f.fix, `${f.check} has a fix`);
    });

    it('prints one line per check for people, each problem with its fix', async function () {
      const result = await chaperone(['doctor', `--kubeconfig=${cp.adminKubeconfig}`, `--injector-config=${injectorConfig}`, '--namespace', team]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^ok +namespace/label +${team} is labelled chaperone.dev/inject=enabled$`, 'm'));
      assert.match(result.stdout, /^warn +webhook\/endpoint .*\n +fix: /m);
      assert.match(result.stdout, /^0 fail, \d+ warn, \d+ ok$/m);
    });

    it('fails a namespace without the label, and its fix makes it pass', async function () {
      const [key, value] = installation.runLabel;
      const plain = await createNamespace(clients, 'plain', { [key]: value });
      try {
        const { code, report } = await doctor(['-n', plain]);
        assert.equal(code, 1);
        const label = finding(report, 'namespace/label');
        assert.equal(label.status, 'fail');
        assert.match(label.message, /has no label chaperone.dev\/inject=enabled: pods created there get no sidecar/);
        assert.equal(label.fix, `kubectl label namespace ${plain} chaperone.dev/inject=enabled`);
        assert.equal(finding(report, 'webhook/namespace-selector').status, 'fail');
        assert.equal(finding(report, 'provisioning/service-account').status, 'fail');

        const fixed = await kubectl(cp.adminKubeconfig, label.fix.split(' ').slice(1));
        assert.equal(fixed.code, 0, fixed.stderr);
        await waitFor('the namespace to be provisioned', async () => (await replica.provisioningStatus(plain)).ready);
        const after = await doctor(['-n', plain]);
        assert.deepEqual(failures(after.report), []);
        assert.equal(after.code, 0);
      } finally {
        await clients.core.deleteNamespace({ name: plain });
      }
    });

    it('fails a pod that opted out: no sidecar, and why', async function () {
      const optedOut = await createPod(team, 'opted-out', { 'chaperone.dev/inject': 'disabled' });
      assert.equal(optedOut.spec?.serviceAccountName, 'default');
      const { code, report } = await doctor(['-n', team, '--pod', 'opted-out']);
      assert.equal(code, 1);
      const sidecarFinding = finding(report, 'pod/sidecar');
      assert.equal(sidecarFinding.status, 'fail');
      assert.match(sidecarFinding.message, /has no chaperone container: it is labelled chaperone.dev\/inject=disabled \(it opted out\)/);
      assert.match(sidecarFinding.fix!, /remove the label chaperone.dev\/inject=disabled from the pod's template and recreate the pod/);
      const selector = finding(report, 'webhook/object-selector');
      assert.equal(selector.status, 'fail');
      assert.match(selector.message, /chaperone.dev\/inject notin \(disabled\)/);
    });

    it('warns loudly when the scoped service account can do more than impersonate and ask', async function () {
      const account = 'chaperone-impersonator';
      const binding = await bindClusterRoleInNamespace(clients, team, 'edit', [serviceAccountSubject(team, account)]);
      try {
        await waitForCanI(cp, `system:serviceaccount:${team}:${account}`, ['get', 'secrets', '-n', team]);
        const { code, report } = await doctor(['-n', team]);
        assert.equal(code, 0, 'a warning, not a failure');
        const excess = finding(report, 'rbac/least-privilege');
        assert.equal(excess.status, 'warn');
        assert.match(excess.message, new RegExp(`CAN DO MORE THAN IMPERSONATE AND ASK: it may get secrets in ${team}; create pods in ${team}`));
        assert.match(excess.fix!, /kubectl auth can-i --list --as system:serviceaccount:/);
      } finally {
        await clients.rbac.deleteNamespacedRoleBinding({ name: binding, namespace: team });
      }
    });
  });

  describe('chaperone kubeconfig', function () {
    it('reads the CAs from the cluster (KUBECONFIG) and issues a kubeconfig kubectl uses through the sidecar: allowed and refused', async function () {
      sidecar = await startPodSidecar(cp, clients, pod);
      await grantInNamespace(cp, clients, team, 'view', 'alice');
      const issue = async (user: string, groups: string[]) => {
        const file = path.join(dir, `${user}.kubeconfig`);
        const args = ['kubeconfig', '--user', user, ...groups.flatMap((g) => ['--group', g]), '--ttl', '1h', '-n', team, '--injector-namespace', installation.namespace, '--server', sidecar!.url, '-o', file];
        const result = await chaperone(args, { KUBECONFIG: cp.adminKubeconfig });
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stderr, new RegExp(`^wrote ${file}: ${user}`));
        return file;
      };
      const alice = await issue('alice', ['dev']);
      const bob = await issue('bob', []);

      const read = await kubectl(alice, ['get', 'configmaps', '-n', team, '-o', 'name']);
      assert.equal(read.code, 0, read.stderr);
      assert.match(read.stdout, /configmap\/chaperone-ca/);
      const write = await kubectl(alice, ['create', 'configmap', 'not-allowed', '-n', team]);
      assert.notEqual(write.code, 0);
      assert.match(write.stderr, /forbidden: User "alice" cannot create resource "configmaps"/);
      const stranger = await kubectl(bob, ['get', 'configmaps', '-n', team]);
      assert.notEqual(stranger.code, 0);
      assert.match(stranger.stderr, /forbidden: User "bob" cannot list resource "configmaps"/);
    });

    it('says which permission is missing when the identity CA cannot be read, and when it does not exist', async function () {
      await createServiceAccount(clients, team, 'nobody');
      const token = await mintServiceAccountToken(clients, team, 'nobody');
      const nobody = path.join(dir, 'nobody.kubeconfig');
      await writeFile(nobody, kubeconfigYaml(cp.url, cp.ca.certPem, 'nobody', { token }), { mode: 0o600 });
      const base = ['kubeconfig', '--user', 'carol', '-n', team];
      const forbidden = await chaperone([...base, `--kubeconfig=${nobody}`, '--injector-namespace', installation.namespace]);
      assert.equal(forbidden.code, 1);
      assert.equal(forbidden.stdout, '');
      assert.equal(
        forbidden.stderr,
        `chaperone kubeconfig: cannot read Secret ${installation.namespace}/chaperone-identity-ca: forbidden: you need get on secrets/chaperone-identity-ca in ${installation.namespace}; or pass --identity-ca-cert and --identity-ca-key\n`,
      );
      const missing = await chaperone([...base, `--kubeconfig=${cp.adminKubeconfig}`, '--injector-namespace', 'no-such-namespace']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^chaperone kubeconfig: Secret no-such-namespace\/chaperone-identity-ca does not exist: is the injector installed in no-such-namespace/);
    });
  });

  describe('chaperone doctor, with the injector stopped', function () {
    it('fails a namespace whose CA ConfigMap is missing, saying so and what to do', async function () {
      // Stopped, so that it does not put the ConfigMap back at once (stopping it again after the suite does nothing).
      await injector.stop();
      await replica.stop();
      await clients.core.deleteNamespacedConfigMap({ name: 'chaperone-ca', namespace: team });
      const { code, report } = await doctor(['-n', team]);
      assert.equal(code, 1);
      const configMap = finding(report, 'provisioning/ca-configmap');
      assert.equal(configMap.status, 'fail');
      assert.equal(configMap.message, `ConfigMap chaperone-ca in ${team} does not exist`);
      assert.match(configMap.fix!, /the injector provisions a labelled namespace within seconds; if it does not, its leader's log says why/);
      const readiness = finding(report, 'provisioning/injector-readiness');
      assert.equal(readiness.status, 'fail');
      assert.match(readiness.message, /the injector refuses pods in .*; missing: .*ConfigMap chaperone-ca/);
    });
  });
});
