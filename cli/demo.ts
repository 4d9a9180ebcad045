// The demo: chaperone on a local control plane. A namespace with the scoped service account, a
// sidecar started as an injected pod would run it, two people with kubeconfigs from the identity CA,
// a few kubectl commands allowed and refused, and the audit trail. It stays up until Ctrl-C.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startControlPlane, type ControlPlane } from '../test/cluster/control-plane.js';
import { ensureKubectl } from '../test/cluster/binaries.js';
import {
  adminClients,
  auditEventsFor,
  grantInNamespace,
  mintServiceAccountToken,
  serviceAccountSubject,
} from '../test/cluster/kube.js';
import { ensureImpersonatorRole, launchSidecar, rawRequest, type LocalSidecar } from '../test/cluster/sidecar.js';
import { personKubeconfig } from './kubeconfig.js';

const NAMESPACE = 'demo';
const SERVICE_ACCOUNT = 'chaperone-impersonator';

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function run(kubectl: string, kubeconfig: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(kubectl, ['--kubeconfig', kubeconfig, ...args], (error, stdout, stderr) =>
      resolve({ code: error ? 1 : 0, out: `${stdout}${stderr}`.trim() }),
    );
  });
}

async function provision(cp: ControlPlane): Promise<string> {
  const clients = adminClients(cp);
  await clients.core.createNamespace({ body: { metadata: { name: NAMESPACE, labels: { 'chaperone.dev/inject': 'enabled' } } } });
  await clients.core.createNamespacedServiceAccount({ namespace: NAMESPACE, body: { metadata: { name: SERVICE_ACCOUNT } } });
  const role = await ensureImpersonatorRole(clients);
  await clients.rbac.createClusterRoleBinding({
    body: {
      metadata: { name: `${role}-${NAMESPACE}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [serviceAccountSubject(NAMESPACE, SERVICE_ACCOUNT)],
    },
  });
  await grantInNamespace(cp, clients, NAMESPACE, 'view', 'alice');
  await clients.core.createNamespacedConfigMap({ namespace: NAMESPACE, body: { metadata: { name: 'dashboard-settings' }, data: { theme: 'dark' } } });
  return mintServiceAccountToken(clients, NAMESPACE, SERVICE_ACCOUNT);
}

async function issue(sidecar: LocalSidecar, user: string, groups: string[]): Promise<string> {
  const file = path.join(sidecar.dir, `${user}.kubeconfig`);
  const yaml = personKubeconfig({ user, groups, ttlSeconds: 8 * 3600, identityCa: sidecar.identityCa, server: sidecar.url, servingCaPem: sidecar.servingCa.certPem });
  await writeFile(file, yaml, { mode: 0o600 });
  return file;
}

async function show(kubectl: string, who: string, kubeconfig: string, args: string[]): Promise<void> {
  const result = await run(kubectl, kubeconfig, args);
  say(`$ kubectl ${args.join(' ')}        # as ${who}`);
  say(result.out.split('\n').map((l) => `  ${l}`).join('\n'));
  say(`  ${result.code === 0 ? '=> allowed' : '=> refused'}`);
  say();
}

export async function runDemo(): Promise<void> {
  say('chaperone demo: building (first run only) and starting a local control plane…');
  const cp = await startControlPlane({ log: (line) => say(`  [control-plane] ${line}`) });
  let sidecar: LocalSidecar | undefined;
  try {
    const kubectl = await ensureKubectl((line) => say(`  [kubectl] ${line}`));
    say(`\n1. Namespace "${NAMESPACE}" labelled chaperone.dev/inject=enabled, with the scoped service account`);
    say(`   ${SERVICE_ACCOUNT}, which may only impersonate and ask (manifests/base/impersonator-clusterrole.yaml).`);
    say('   alice may view the namespace; bob may not.');
    const token = await provision(cp);

    sidecar = await launchSidecar({ upstream: cp.url, upstreamCaPem: cp.ca.certPem, token, flags: ['--log-level=warn', `--pod-namespace=${NAMESPACE}`, '--pod-name=dashboard'] });
    say(`\n2. The sidecar, as an injected pod runs it, serves ${sidecar.url} (ops: ${sidecar.opsUrl}/readyz, /metrics)`);
    say('   with its own serving CA and identity CA and a TokenRequest token for the scoped account.');

    const alice = await issue(sidecar, 'alice', ['dev']);
    const bob = await issue(sidecar, 'bob', []);
    say('\n3. Kubeconfigs from the identity CA (what `chaperone kubeconfig --user alice --group dev --ttl 8h` writes):');
    say(`   ${alice}\n   ${bob}\n`);

    await show(kubectl, 'alice', alice, ['get', 'configmaps', '-n', NAMESPACE]);
    await show(kubectl, 'alice', alice, ['create', 'configmap', 'sneaky', '-n', NAMESPACE]);
    await show(kubectl, 'bob', bob, ['get', 'configmaps', '-n', NAMESPACE]);
    await show(kubectl, 'alice', alice, ['get', 'pods', '-n', NAMESPACE, '--as', 'system:admin', '--as-group', 'system:masters']);

    const response = await fetch(`${sidecar.opsUrl}/readyz`);
    say(`4. /readyz: ${response.status}`);
    say('\n5. The API server\'s audit log: the scoped service account, impersonating alice');
    const asAlice = await rawRequest(`${sidecar.url}/api/v1/namespaces/${NAMESPACE}/configmaps/dashboard-settings`, {
      ca: sidecar.servingCa.certPem,
      cert: sidecar.clientCert('alice', ['dev']),
    });
    const events = await auditEventsFor(cp, String(asAlice.headers['audit-id']));
    for (const event of events) {
      say(`   auditID=${event.auditID} verb=${event.verb} user=${event.user.username} impersonatedUser=${event.impersonatedUser?.username} groups=${JSON.stringify(event.impersonatedUser?.groups)}`);
    }
    say(`   (full log: ${cp.auditLog})`);

    say('\nTry it yourself, in another terminal:');
    say(`   kubectl --kubeconfig ${alice} get configmaps -n ${NAMESPACE}`);
    say(`   kubectl --kubeconfig ${bob} get configmaps -n ${NAMESPACE}`);
    say(`   KUBECONFIG=${cp.adminKubeconfig} kubectl get ns     # the cluster's admin, directly`);
    say('\nPress Ctrl-C to stop and clean up.');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  } finally {
    say('\nstopping…');
    await sidecar?.stop();
    await cp.stop();
  }
}
