// The demo's people: kubeconfigs for four of them (client certificates from the identity CA, an ID
// token, a webhook token) and the dashboard's own, all pointing at the sidecar, and kubectl through
// it, allowed and refused.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { PLACEHOLDER_TOKEN } from '../injector/proxy.js';
import type { ControlPlane } from '../local-cluster/control-plane.js';
import { bindClusterRoleInNamespace, grantInNamespace, groupSubject, type AdminClients } from '../local-cluster/kube.js';
import type { Demo } from './demo.js';
import { CREDENTIALS_TTL_SECONDS, DASHBOARD, DAVE_PASSWORD, NAMESPACE, type SignIn } from './demo-cluster.js';
import { kubectlName, runKubectl } from './demo-kubectl.js';
import { bad, dim, good } from './demo-output.js';
import { personKubeconfig, resolveCas, type KubeconfigCommandOptions } from './kubeconfig.js';

/** Kubeconfig files. */
export interface People {
  alice: string;
  bob: string;
  /** Signed in with an ID token from the OpenID provider, whose groups claim says platform. */
  carol: string;
  /** Signed in with a token from the pam_hook-style webhook. */
  dave: string;
  dashboard: string;
}

/** What `chaperone kubeconfig` is told here: the cluster as its admin, the namespace, the sidecar; the injector's namespace is the shipped one. */
export function kubeconfigOptions(cp: ControlPlane, server: string, person: { user: string; groups: string[]; output?: string }): KubeconfigCommandOptions {
  const { user, groups, output } = person;
  return { kubeconfig: cp.adminKubeconfig, namespace: NAMESPACE, server, user, group: groups, ttlSeconds: CREDENTIALS_TTL_SECONDS, ...(output ? { output } : {}) };
}

/** The `chaperone kubeconfig` command line for these options. */
export function kubeconfigCommandLine(options: KubeconfigCommandOptions): string {
  const hours = options.ttlSeconds % 3600 === 0 ? `${options.ttlSeconds / 3600}h` : `${options.ttlSeconds}s`;
  return [
    'npx chaperone kubeconfig',
    `--user ${options.user}`,
    ...options.group.map((group) => `--group ${group}`),
    `--ttl ${hours}`,
    `--kubeconfig ${options.kubeconfig}`,
    `-n ${options.namespace}`,
    `--server ${options.server}`,
    ...(options.output ? [`-o ${options.output}`] : []),
  ].join(' ');
}

async function certificateKubeconfigs(cp: ControlPlane, server: string, written: People): Promise<{ servingCaPem: string; warnings: string[]; commandLine: string }> {
  const alice = kubeconfigOptions(cp, server, { user: 'alice', groups: ['dev'], output: written.alice });
  const bob = kubeconfigOptions(cp, server, { user: 'bob', groups: ['dev'], output: written.bob });
  // Read from the cluster as `chaperone kubeconfig` reads them: the identity CA from the injector's
  // Secret, the serving CA bundle from the namespace's ConfigMap.
  const { identityCa, servingCaPem, warnings } = await resolveCas(alice);
  for (const person of [alice, bob]) {
    const yaml = personKubeconfig({ user: person.user, groups: person.group, ttlSeconds: person.ttlSeconds, identityCa, server: person.server, servingCaPem });
    await writeFile(person.output!, yaml, { mode: 0o600 });
  }
  return { servingCaPem, warnings, commandLine: kubeconfigCommandLine(alice) };
}

export async function writeKubeconfigs(demo: Demo, { cp, clients }: { cp: ControlPlane; clients: AdminClients }, server: string, ways: SignIn): Promise<People> {
  const step = demo.step('Kubeconfigs for four people: two with client certificates from the identity CA, one with an ID token, one with a webhook token');
  const file = (name: string) => path.join(demo.dir, name);
  const written: People = {
    alice: file('alice.kubeconfig'),
    bob: file('bob.kubeconfig'),
    carol: file('carol-oidc.kubeconfig'),
    dave: file('dave-pamhook.kubeconfig'),
    dashboard: file(`${DASHBOARD}.kubeconfig`),
  };
  const { servingCaPem, warnings, commandLine } = await certificateKubeconfigs(cp, server, written);
  for (const warning of warnings) step.say(bad(`warning: ${warning}`));
  // What the dashboard itself holds: the serving CA and the placeholder token.
  await writeFile(written.dashboard, kubeconfigYaml(server, servingCaPem, DASHBOARD, { token: PLACEHOLDER_TOKEN }), { mode: 0o600 });
  await writeFile(written.carol, kubeconfigYaml(server, servingCaPem, 'carol', { token: await ways.provider.idToken('carol') }), { mode: 0o600 });
  const daveToken = await ways.pamHook.token('dave', DAVE_PASSWORD);
  if (!daveToken) throw new Error('the token webhook gave dave no token');
  await writeFile(written.dave, kubeconfigYaml(server, servingCaPem, 'dave', { token: daveToken }), { mode: 0o600 });
  await grantInNamespace(cp, clients, NAMESPACE, 'view', 'alice');
  await bindClusterRoleInNamespace(clients, NAMESPACE, 'view', [groupSubject('oidc:platform'), groupSubject('ops')]);
  step.say(`alice (group dev) may view namespace ${NAMESPACE}, by a RoleBinding to ClusterRole view; bob (group dev) has no role anywhere`);
  step.say(dim(`as \`${commandLine}\` writes them`));
  step.say(`carol signed in at the OpenID provider (an ID token, as Headlamp or kubelogin gets one); dave got a token from the webhook's /token;`);
  step.say(`groups oidc:platform and ops may view ${NAMESPACE}: the groups come from carol's token and from the webhook's answer`);
  step.say(`each kubeconfig names the port-forward (${server}) and trusts the sidecar's serving CA`);
  step.done(`${written.alice}, ${written.bob}, ${written.carol} and ${written.dave}, valid for ${CREDENTIALS_TTL_SECONDS / 3600}h`);
  return written;
}

/** Runs kubectl as each person through the sidecar, saying for each whether it was allowed as it should be; returns how many commands ran. */
export async function kubectlThroughSidecar(demo: Demo, who: People): Promise<number> {
  const step = demo.step('kubectl through the sidecar');
  const ns = ['-n', NAMESPACE];
  const commands = [
    { kubeconfig: who.alice, args: ['get', 'pods', ...ns], allowed: true, why: `alice may view ${NAMESPACE}` },
    { kubeconfig: who.alice, args: ['create', 'configmap', 'notes', ...ns, '--from-literal=note=hello'], allowed: false, why: 'demo is read-only (chaperone\'s default access), and view would not let alice write either' },
    { kubeconfig: who.bob, args: ['get', 'pods', ...ns], allowed: false, why: `bob has no role in ${NAMESPACE}` },
    { kubeconfig: who.alice, args: ['get', 'secrets', ...ns, '--as=admin', '--as-group=system:masters'], allowed: false, why: 'alice may not impersonate, let alone system:masters' },
    { kubeconfig: who.carol, args: ['get', 'pods', ...ns], allowed: true, why: `carol signed in with OIDC; her token's groups claim puts her in oidc:platform, which may view ${NAMESPACE}` },
    { kubeconfig: who.dave, args: ['get', 'pods', ...ns], allowed: true, why: `dave signed in through the webhook, which says he is in ops, which may view ${NAMESPACE}` },
    { kubeconfig: who.dashboard, args: ['get', 'pods', ...ns], allowed: false, why: "the dashboard's own token has no power" },
  ];
  let unexpected = 0;
  for (const command of commands) {
    demo.life.checkpoint();
    const result = await runKubectl(demo.kubectl, command.kubeconfig, command.args);
    step.say(`$ KUBECONFIG=${command.kubeconfig} ${kubectlName(demo.kubectl.binary)} ${command.args.join(' ')}`);
    for (const line of result.output.split('\n')) step.say(`  ${line}`);
    const verdict = result.ok ? 'allowed' : 'refused';
    if (result.ok === command.allowed) step.say(`  ${(result.ok ? good : bad)(`→ ${verdict}`)}: ${command.why}`);
    else {
      unexpected += 1;
      step.say(`  ${bad(`→ ${verdict}, unexpectedly`)} (${command.why}): see the sidecar's log (kubectl logs -n ${NAMESPACE} ${DASHBOARD} -c chaperone)`);
    }
  }
  step.done(unexpected === 0 ? 'each allowed or refused as it should be' : `${unexpected} not as expected`);
  return commands.length;
}
