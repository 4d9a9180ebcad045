// The demo: chaperone's real path on a local control plane. The injector (webhook and provisioning
// controller, as its own service account with the shipped RBAC) registered with the API server, a
// labelled namespace it provisions, a dashboard pod it injects, that pod's sidecar run as the kubelet
// would run it, two people with kubeconfigs from the identity CA, kubectl allowed and refused, and
// the sidecar's audit events. It stays up until Ctrl-C, then removes everything it started.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { KubernetesObjectApi, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { createLogger } from '../lib/log.js';
import { startInjector } from '../injector/injector.js';
import { INJECT_LABEL, STATUS_ANNOTATION } from '../injector/names.js';
import { PROVISIONED_BY_LABEL } from '../injector/provision/names.js';
import { ensureControlPlaneBinaries, ensureKubectl, KUBERNETES_VERSION } from '../local-cluster/binaries.js';
import { startControlPlane, type ControlPlane } from '../local-cluster/control-plane.js';
import { adminClients, bindClusterRoleInNamespace, grantInNamespace, groupSubject, type AdminClients } from '../local-cluster/kube.js';
import { authenticationConfigurationFor, startTestProvider, type TestProvider } from '../local-cluster/identity/oidc-provider.js';
import { startPamHook, type PamHook } from '../local-cluster/identity/pam-hook.js';
import { createCA } from '../lib/pki.js';
import { createWebhookConfiguration, installInjector, startPodSidecar, type InjectorInstallation, type PodSidecar } from '../local-cluster/provisioned.js';
import { waitFor } from '../local-cluster/wait.js';
import { auditLine, followAuditFile, type AuditFollower } from './demo-audit.js';
import { Lifecycle, Stopped } from './demo-lifecycle.js';
import { bad, bold, dim, duration, good, INDENT, say, stepper, type Step } from './demo-output.js';
import { describeInjection, describeRules } from './demo-describe.js';
import { personKubeconfig, resolveCas, type KubeconfigCommandOptions } from './kubeconfig.js';

const NAMESPACE = 'demo';
/** How long the people's certificates and the injector's token last: the demo works this long. */
const CREDENTIALS_TTL_SECONDS = 8 * 3600;
/** The kubelet renews a pod's projected token (1h) well before it expires; so does the demo. */
const SIDECAR_FILES_REFRESH_MS = 10 * 60_000;
const AUDIT_POLL_MS = 300;
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const DASHBOARD = 'headlamp';
const SCOPED_TOKEN_POLICY = fileURLToPath(new URL('../manifests/base/scoped-token-policy.yaml', import.meta.url));

/** A Headlamp pod as its Helm chart makes it. There is no kubelet here: it is stored, never run. */
function dashboardPod(options: { optOut?: boolean } = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: DASHBOARD, labels: { 'app.kubernetes.io/name': DASHBOARD, ...(options.optOut ? { [INJECT_LABEL]: 'disabled' } : {}) } },
    spec: {
      serviceAccountName: DASHBOARD,
      containers: [
        {
          name: DASHBOARD,
          image: 'ghcr.io/headlamp-k8s/headlamp:v0.30.0',
          args: ['-in-cluster', '-plugins-dir=/headlamp/plugins'],
          ports: [{ name: 'http', containerPort: 4466 }],
          volumeMounts: [{ name: 'plugins', mountPath: '/headlamp/plugins' }],
        },
      ],
      volumes: [{ name: 'plugins', emptyDir: {} }],
    },
  };
}

interface Demo {
  dir: string;
  logFile: string;
  life: Lifecycle;
  step: (title: string) => Step;
}

/** Kubeconfig files. */
interface People {
  alice: string;
  bob: string;
  /** Signed in with an ID token from the OpenID provider, whose groups claim says platform. */
  carol: string;
  /** Signed in with a token from the pam_hook-style webhook. */
  dave: string;
  dashboard: string;
}

/** Where people sign in besides the identity CA: an OpenID provider and a pam_hook-style token webhook. */
interface SignIn {
  provider: TestProvider;
  pamHook: PamHook;
}

const CAROL_EMAIL = 'carol@example.com';
const DAVE_PASSWORD = 'correct horse battery staple';

interface Ready {
  cp: ControlPlane;
  installation: InjectorInstallation;
  kubectl: string;
  sidecar: PodSidecar;
  people: People;
  follower: AuditFollower;
}

async function binaries(demo: Demo): Promise<string> {
  const step = demo.step(`Kubernetes ${KUBERNETES_VERSION}: kube-apiserver, kube-controller-manager, etcd, kubectl`);
  let building = false;
  const log = (line: string) => {
    if (!building) {
      building = true;
      step.say('not built yet: built from source with Go, once per Kubernetes version. This takes about 10 minutes');
      step.say('on 2 cores (a few on 8); later runs start in seconds. Progress:');
    }
    step.say(dim(line));
  };
  try {
    const found = await ensureControlPlaneBinaries(log);
    const kubectl = await ensureKubectl(log);
    step.done(found.source === 'environment' ? 'from CHAPERONE_KUBE_APISERVER, CHAPERONE_KUBE_CONTROLLER_MANAGER, CHAPERONE_ETCD' : `${found.source === 'cache' ? 'cached' : 'built'} in ${path.dirname(found.kubeApiserver)}`);
    return kubectl;
  } catch (err) {
    throw new Error(`the build failed: ${(err as Error).message}`, { cause: err });
  }
}

async function controlPlane(demo: Demo): Promise<ControlPlane> {
  const step = demo.step('A local control plane: etcd, kube-apiserver, kube-controller-manager (no scheduler, no kubelet)');
  const cp = await startControlPlane({ log: (line) => step.say(dim(line)) });
  // Its processes get 10s to stop before they are killed, then its directory is removed.
  demo.life.defer('the control plane', () => cp.stop(), 15_000);
  step.done(`kube-apiserver ${cp.version} at ${cp.url}`);
  return cp;
}

async function injector(demo: Demo, cp: ControlPlane, clients: AdminClients): Promise<InjectorInstallation> {
  const step = demo.step('The injector: admission webhook and provisioning controller');
  const installation = await installInjector(cp, clients, { tokenExpirationSeconds: CREDENTIALS_TTL_SECONDS });
  // Its objects go with the control plane: only its files are left to remove.
  demo.life.defer("the injector's files", () => rm(installation.dir, { recursive: true, force: true }));
  step.say(`runs as ServiceAccount ${installation.namespace}/chaperone-injector, with the rules of manifests/base/injector-rbac.yaml`);
  const config = installation.config(['--listen=127.0.0.1:0', '--webhook-hosts=127.0.0.1']);
  const running = await startInjector(config, createLogger('injector', 'info', demo.logFile));
  demo.life.defer('the injector', () => running.stop());
  const url = `https://127.0.0.1:${running.port}/mutate`;
  await createWebhookConfiguration(installation, [url]);
  step.say(`MutatingWebhookConfiguration ${installation.webhookConfiguration}: manifests/base's, its service reference rewritten to ${url}`);
  const objects = KubernetesObjectApi.makeApiClient(clients.kubeconfig);
  for (const document of YAML.parseAllDocuments(await readFile(SCOPED_TOKEN_POLICY, 'utf8'))) await objects.create(document.toJS() as KubernetesObject);
  step.say('ValidatingAdmissionPolicy chaperone-scoped-token (manifests/base): only the sidecar may hold the scoped token');
  step.done(`serving ${url}; it keeps its own serving certificate and the webhook's caBundle`);
  return installation;
}

async function signIn(demo: Demo, clients: AdminClients, installation: InjectorInstallation): Promise<SignIn> {
  const step = demo.step('Sign-in, configured once for the installation: an OpenID provider and a pam_hook-style webhook');
  const providerCa = createCA({ commonName: 'demo-openid-provider-ca' });
  const provider = await startTestProvider(providerCa, {
    carol: { claims: { email: CAROL_EMAIL, email_verified: true, groups: ['platform'] }, ttlSeconds: CREDENTIALS_TTL_SECONDS },
  });
  demo.life.defer('the OpenID provider', () => provider.stop());
  const pamHook = await startPamHook({ dave: { password: DAVE_PASSWORD, uid: '1001', groups: ['ops'] } }, { tokenMinutes: CREDENTIALS_TTL_SECONDS / 60 });
  demo.life.defer('the token webhook', () => pamHook.stop());
  const authentication = authenticationConfigurationFor(provider, providerCa.certPem, { username: { claim: 'email', prefix: '' }, groups: { claim: 'groups', prefix: 'oidc:' } });
  const files = {
    'sidecar.yaml': YAML.stringify({ authenticationConfig: 'authentication-config.yaml', authenticationTokenWebhookConfigFile: 'token-webhook.kubeconfig' }),
    'authentication-config.yaml': authentication,
    'token-webhook.kubeconfig': pamHook.kubeconfig(),
  };
  await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: { metadata: { name: 'chaperone-sidecar-config' }, stringData: files } });
  step.say(`an OpenID provider at ${provider.issuer} (its own CA): carol's ID token says email ${CAROL_EMAIL}, groups [platform]`);
  step.say(`a pam_hook-style webhook at ${pamHook.url}: dave gets a token from its /token with his password`);
  step.say(`Secret ${installation.namespace}/chaperone-sidecar-config: sidecar.yaml, an AuthenticationConfiguration (username from email,`);
  step.say('groups from the groups claim, prefixed oidc:) and the webhook\'s kubeconfig; no application namespace can read or change it');
  step.done('every sidecar the injector adds from now on reads it from the API server, and follows it');
  return { provider, pamHook };
}

async function namespace(demo: Demo, clients: AdminClients, installation: InjectorInstallation): Promise<void> {
  const step = demo.step(`Namespace ${NAMESPACE}, labelled ${INJECT_LABEL}=enabled: the injector provisions it`);
  const [key, value] = installation.runLabel;
  await clients.core.createNamespace({ body: { metadata: { name: NAMESPACE, labels: { [INJECT_LABEL]: 'enabled', [key]: value } } } });
  // The dashboard's own service account, as its Helm chart would create it.
  await clients.core.createNamespacedServiceAccount({ namespace: NAMESPACE, body: { metadata: { name: DASHBOARD } } });
  // The webhook refuses pods until the namespace is provisioned, and the API server calls it only once
  // its informer has the webhook configuration: a dry run tells when a pod would be injected.
  const scoped = await waitFor(
    `the injector to inject pods in namespace ${NAMESPACE}`,
    async () => {
      const pod = await clients.core.createNamespacedPod({ namespace: NAMESPACE, body: dashboardPod(), dryRun: 'All' });
      return pod.metadata?.annotations?.[STATUS_ANNOTATION] !== undefined && pod.spec?.serviceAccountName;
    },
    60_000,
    250,
  );
  const labelSelector = `${PROVISIONED_BY_LABEL}=${installation.namespace}`;
  const [accounts, configMaps, secrets, bindings] = await Promise.all([
    clients.core.listNamespacedServiceAccount({ namespace: NAMESPACE, labelSelector }),
    clients.core.listNamespacedConfigMap({ namespace: NAMESPACE, labelSelector }),
    clients.core.listNamespacedSecret({ namespace: NAMESPACE, labelSelector }),
    clients.rbac.listClusterRoleBinding(),
  ]);
  const names = (kind: string, list: { items: { metadata?: { name?: string } }[] }) => list.items.map((item) => `${kind} ${item.metadata?.name}`);
  step.say(`created: ${[...names('ServiceAccount', accounts), ...names('ConfigMap', configMaps), ...names('Secret', secrets)].join(', ')}`);
  const roles = bindings.items
    .filter((binding) => (binding.subjects ?? []).some((s) => s.kind === 'ServiceAccount' && s.namespace === NAMESPACE && s.name === scoped))
    .map((binding) => binding.roleRef.name);
  for (const role of roles) {
    step.say(`ServiceAccount ${scoped} is bound to ClusterRole ${role}, which allows:`);
    for (const line of describeRules((await clients.rbac.readClusterRole({ name: role })).rules ?? [])) step.say(`  ${line}`);
  }
  step.done(`provisioned; pods created in ${NAMESPACE} now run as ServiceAccount ${scoped}`);
}

async function dashboard(demo: Demo, clients: AdminClients): Promise<V1Pod> {
  const step = demo.step(`A dashboard pod in ${NAMESPACE} (Headlamp): what the injector did to it`);
  const before = await clients.core.createNamespacedPod({ namespace: NAMESPACE, body: dashboardPod({ optOut: true }), dryRun: 'All' });
  const after = await clients.core.createNamespacedPod({ namespace: NAMESPACE, body: dashboardPod() });
  step.say(dim(`the pod as stored, against the same pod opted out (${INJECT_LABEL}=disabled):`));
  for (const line of describeInjection(before, after)) step.say(line);
  step.done(`pod ${NAMESPACE}/${DASHBOARD} stored; with no kubelet here it never runs, so the demo plays the kubelet for its sidecar`);
  return after;
}

async function sidecar(demo: Demo, cp: ControlPlane, clients: AdminClients, pod: V1Pod): Promise<PodSidecar> {
  const step = demo.step("The pod's sidecar, run as the kubelet would run it");
  // Every file its volumes name is the injector's (the cluster's CA too: chaperone-ca's upstream-ca.crt),
  // there since the webhook admitted the pod only into a provisioned namespace.
  const running = await startPodSidecar(cp, clients, pod, 'chaperone', createLogger('sidecar', 'info', demo.logFile));
  demo.life.defer('the sidecar', () => running.stop());
  const refresh = setInterval(() => {
    running.refresh().catch((err: Error) => say(bad(`could not renew the sidecar's files (its token expires within the hour): ${err.message}`)));
  }, SIDECAR_FILES_REFRESH_MS);
  demo.life.defer("renewing the sidecar's files", () => Promise.resolve(clearInterval(refresh)));
  step.say(`with the pod's own arguments and environment, the files its volumes hold (read from the objects they name),`);
  step.say(`and a TokenRequest token of ServiceAccount ${NAMESPACE}/${pod.spec?.serviceAccountName} bound to the pod`);
  step.say(`the dashboard finds KUBERNETES_SERVICE_HOST=127.0.0.1 and, in ${SERVICE_ACCOUNT_DIR}, the sidecar's serving CA,`);
  step.say(`namespace "${running.dashboard.namespace}" and the token "${running.dashboard.token}"`);
  step.done(`serving ${running.url} (in the pod: 127.0.0.1:6443)`);
  return running;
}

/** What `chaperone kubeconfig` is told here: the cluster as its admin, the demo's injector and namespace, the sidecar. */
function kubeconfigOptions(cp: ControlPlane, installation: InjectorInstallation, sidecar: PodSidecar, user: string, groups: string[], output?: string): KubeconfigCommandOptions {
  return { kubeconfig: cp.adminKubeconfig, injectorNamespace: installation.namespace, namespace: NAMESPACE, server: sidecar.url, user, group: groups, ttlSeconds: CREDENTIALS_TTL_SECONDS, ...(output ? { output } : {}) };
}

/** The `chaperone kubeconfig` command line for these options. */
function kubeconfigCommandLine(options: KubeconfigCommandOptions): string {
  const hours = options.ttlSeconds % 3600 === 0 ? `${options.ttlSeconds / 3600}h` : `${options.ttlSeconds}s`;
  return [
    'npx chaperone kubeconfig',
    `--user ${options.user}`,
    ...options.group.map((group) => `--group ${group}`),
    `--ttl ${hours}`,
    `--kubeconfig ${options.kubeconfig}`,
    `--injector-namespace ${options.injectorNamespace}`,
    `-n ${options.namespace}`,
    `--server ${options.server}`,
    ...(options.output ? [`-o ${options.output}`] : []),
  ].join(' ');
}

async function people(demo: Demo, cp: ControlPlane, clients: AdminClients, installation: InjectorInstallation, sidecar: PodSidecar, ways: SignIn): Promise<People> {
  const step = demo.step('Kubeconfigs for four people: two with client certificates from the identity CA, one with an ID token, one with a webhook token');
  const file = (name: string) => path.join(demo.dir, name);
  const written: People = {
    alice: file('alice.kubeconfig'),
    bob: file('bob.kubeconfig'),
    carol: file('carol-oidc.kubeconfig'),
    dave: file('dave-pamhook.kubeconfig'),
    dashboard: file(`${DASHBOARD}.kubeconfig`),
  };
  const alice = kubeconfigOptions(cp, installation, sidecar, 'alice', ['dev'], written.alice);
  const bob = kubeconfigOptions(cp, installation, sidecar, 'bob', ['dev'], written.bob);
  // Read from the cluster as `chaperone kubeconfig` reads them: the identity CA from the injector's
  // Secret, the serving CA bundle from the namespace's ConfigMap.
  const { identityCa, servingCaPem, warnings } = await resolveCas(alice);
  for (const warning of warnings) step.say(bad(`warning: ${warning}`));
  for (const person of [alice, bob]) {
    const yaml = personKubeconfig({ user: person.user, groups: person.group, ttlSeconds: person.ttlSeconds, identityCa, server: person.server, servingCaPem });
    await writeFile(person.output!, yaml, { mode: 0o600 });
  }
  // What the dashboard itself holds: the serving CA and the placeholder token.
  await writeFile(written.dashboard, kubeconfigYaml(sidecar.url, sidecar.dashboard.caPem, DASHBOARD, { token: sidecar.dashboard.token }), { mode: 0o600 });
  const carolToken = await ways.provider.idToken('carol');
  await writeFile(written.carol, kubeconfigYaml(sidecar.url, servingCaPem, 'carol', { token: carolToken }), { mode: 0o600 });
  const daveToken = await ways.pamHook.token('dave', DAVE_PASSWORD);
  if (!daveToken) throw new Error('the token webhook gave dave no token');
  await writeFile(written.dave, kubeconfigYaml(sidecar.url, servingCaPem, 'dave', { token: daveToken }), { mode: 0o600 });
  await grantInNamespace(cp, clients, NAMESPACE, 'view', 'alice');
  await bindClusterRoleInNamespace(clients, NAMESPACE, 'view', [groupSubject('oidc:platform'), groupSubject('ops')]);
  step.say(`alice (group dev) may view namespace ${NAMESPACE}, by a RoleBinding to ClusterRole view; bob (group dev) has no role anywhere`);
  step.say(dim(`as \`${kubeconfigCommandLine(alice)}\` writes them`));
  step.say(`carol signed in at the OpenID provider (an ID token, as Headlamp or kubelogin gets one); dave got a token from the webhook's /token;`);
  step.say(`groups oidc:platform and ops may view ${NAMESPACE}: the groups come from carol's token and from the webhook's answer`);
  step.done(`${written.alice}, ${written.bob}, ${written.carol} and ${written.dave}, valid for ${CREDENTIALS_TTL_SECONDS / 3600}h`);
  return written;
}

/** How to name kubectl in a command someone copies: by name when it is the one on PATH. */
function kubectlName(kubectl: string): string {
  const onPath = (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir !== '' && path.join(dir, 'kubectl') === kubectl);
  return onPath ? 'kubectl' : kubectl;
}

function runKubectl(demo: Demo, kubectl: string, kubeconfig: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  // Its discovery cache in the demo's directory: the ports change with every run.
  const env = { ...process.env, KUBECONFIG: kubeconfig, KUBECACHEDIR: path.join(demo.dir, 'kube-cache') };
  return new Promise((resolve) => {
    execFile(kubectl, args, { env, timeout: 30_000 }, (error, stdout, stderr) => resolve({ ok: !error, output: `${stdout}${stderr}`.trim() }));
  });
}

async function kubectlThroughSidecar(demo: Demo, kubectl: string, who: People): Promise<void> {
  const step = demo.step('kubectl through the sidecar');
  const ns = ['-n', NAMESPACE];
  const commands = [
    { kubeconfig: who.alice, args: ['get', 'pods', ...ns], allowed: true, why: `alice may view ${NAMESPACE}` },
    { kubeconfig: who.alice, args: ['create', 'configmap', 'notes', ...ns, '--from-literal=note=hello'], allowed: false, why: 'view does not let alice write' },
    { kubeconfig: who.bob, args: ['get', 'pods', ...ns], allowed: false, why: `bob has no role in ${NAMESPACE}` },
    { kubeconfig: who.alice, args: ['get', 'secrets', ...ns, '--as=admin', '--as-group=system:masters'], allowed: false, why: 'alice may not impersonate, let alone system:masters' },
    { kubeconfig: who.carol, args: ['get', 'pods', ...ns], allowed: true, why: `carol signed in with OIDC; her token's groups claim puts her in oidc:platform, which may view ${NAMESPACE}` },
    { kubeconfig: who.dave, args: ['get', 'pods', ...ns], allowed: true, why: `dave signed in through the webhook, which says he is in ops, which may view ${NAMESPACE}` },
    { kubeconfig: who.dashboard, args: ['get', 'pods', ...ns], allowed: false, why: "the dashboard's own token has no power" },
  ];
  let unexpected = 0;
  for (const command of commands) {
    demo.life.checkpoint();
    const result = await runKubectl(demo, kubectl, command.kubeconfig, command.args);
    step.say(`$ KUBECONFIG=${command.kubeconfig} ${kubectlName(kubectl)} ${command.args.join(' ')}`);
    for (const line of result.output.split('\n')) step.say(`  ${line}`);
    const verdict = result.ok ? 'allowed' : 'refused';
    if (result.ok === command.allowed) step.say(`  ${(result.ok ? good : bad)(`→ ${verdict}`)}: ${command.why}`);
    else {
      unexpected += 1;
      step.say(`  ${bad(`→ ${verdict}, unexpectedly`)} (${command.why}): see the log ${demo.logFile}`);
    }
  }
  step.done(unexpected === 0 ? 'each allowed or refused as it should be' : `${unexpected} not as expected`);
}

async function auditEvents(demo: Demo, sidecar: PodSidecar): Promise<AuditFollower> {
  const step = demo.step("The sidecar's audit events, one per request (the API server's own log has the same auditIDs)");
  const follower = followAuditFile(
    sidecar.auditLog,
    (event) => say(`${INDENT}${auditLine(event)}`),
    (err) => say(bad(`${INDENT}cannot read ${sidecar.auditLog}: ${err.message}`)),
  );
  // The sidecar writes an event as the response ends, which can be a moment after kubectl saw it.
  await new Promise((resolve) => setTimeout(resolve, 200));
  await follower.poll();
  step.done(sidecar.auditLog);
  return follower;
}

async function start(demo: Demo): Promise<Ready> {
  const started = Date.now();
  const kubectl = await binaries(demo);
  demo.life.checkpoint();
  const cp = await controlPlane(demo);
  const clients = adminClients(cp);
  demo.life.checkpoint();
  const installation = await injector(demo, cp, clients);
  demo.life.checkpoint();
  const ways = await signIn(demo, clients, installation);
  demo.life.checkpoint();
  await namespace(demo, clients, installation);
  demo.life.checkpoint();
  const pod = await dashboard(demo, clients);
  demo.life.checkpoint();
  const running = await sidecar(demo, cp, clients, pod);
  demo.life.checkpoint();
  const written = await people(demo, cp, clients, installation, running, ways);
  demo.life.checkpoint();
  await kubectlThroughSidecar(demo, kubectl, written);
  const follower = await auditEvents(demo, running);
  demo.life.defer('following the audit file', () => follower.stop());
  say();
  say(`${bold('The demo is ready')} ${dim(`(in ${duration(Date.now() - started)})`)}. Try it by hand, in another terminal:`);
  return { cp, installation, kubectl, sidecar: running, people: written, follower };
}

function printHowTo(ready: Ready, logFile: string): void {
  const kubectl = kubectlName(ready.kubectl);
  const { people: files } = ready;
  const carol = path.join(path.dirname(files.alice), 'carol.kubeconfig');
  const lines = [
    dim('# alice may look, bob may not; watches stream through the sidecar too'),
    `KUBECONFIG=${files.alice} ${kubectl} get pods -n ${NAMESPACE}`,
    `KUBECONFIG=${files.bob} ${kubectl} get pods -n ${NAMESPACE}`,
    dim('# carol (OIDC) and dave (the webhook): who the API server thinks they are'),
    `KUBECONFIG=${files.carol} ${kubectl} auth whoami`,
    `KUBECONFIG=${files.dave} ${kubectl} auth whoami`,
    `KUBECONFIG=${files.alice} ${kubectl} get configmaps -n ${NAMESPACE} --watch`,
    dim("# let bob view too, as the cluster's admin (straight to the API server); the sidecar remembers a refusal for 10s"),
    `KUBECONFIG=${ready.cp.adminKubeconfig} ${kubectl} create rolebinding bob-view -n ${NAMESPACE} --clusterrole=view --user=bob`,
    dim('# a kubeconfig for carol, who may do nothing until someone grants her a role (run in this repository)'),
    kubeconfigCommandLine(kubeconfigOptions(ready.cp, ready.installation, ready.sidecar, 'carol', [], carol)),
    `KUBECONFIG=${carol} ${kubectl} auth can-i --list -n ${NAMESPACE}`,
  ];
  for (const line of lines) say(`${INDENT}${line}`);
  say();
  say(`${INDENT}the sidecar's audit events (JSON lines): ${ready.sidecar.auditLog}`);
  say(`${INDENT}the injector's and the sidecar's logs:  ${logFile}`);
  say(`${INDENT}the API server's audit log:             ${ready.cp.auditLog}`);
  say();
  say(`Press Ctrl-C to stop; everything the demo started is removed. Audit events as they happen:`);
}

/** What went wrong, said plainly; a port in use is named as such. */
function explain(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/EADDRINUSE|address already in use/i.test(message)) return `a port the demo needs is already in use: ${message}\nStop what holds it and run the demo again.`;
  return message;
}

async function logTail(file: string, lines = 15): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line !== '').slice(-lines);
}

async function run(): Promise<number> {
  const life = new Lifecycle();
  const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-demo-'));
  const logFile = path.join(dir, 'chaperone.log');
  life.defer("the demo's files", () => rm(dir, { recursive: true, force: true }));
  const demo: Demo = { dir, logFile, life, step: stepper() };
  say(`${bold('chaperone demo')}: the injector, a dashboard pod and its sidecar, on a local Kubernetes control plane.`);
  say(dim(`The injector's and the sidecar's own logs go to ${logFile}`));
  say();
  let code = 0;
  try {
    const ready = await start(demo);
    life.markRunning();
    printHowTo(ready, logFile);
    ready.follower.follow(AUDIT_POLL_MS);
    await life.stopRequested;
  } catch (err) {
    // A terminal's Ctrl-C stops the control plane's processes too, failing the step under way.
    if (!(err instanceof Stopped) && !life.stopping) {
      code = 1;
      say();
      say(`${bad('✗ the demo could not start:')} ${explain(err)}`);
      const tail = await logTail(logFile);
      if (tail.length > 0) say(dim(`the last lines of ${logFile}:\n${tail.join('\n')}`));
    }
  }
  await life.cleanUp();
  say(code === 0 ? 'stopped; nothing the demo started is left.' : 'cleaned up.');
  return code;
}

export async function runDemo(): Promise<void> {
  process.exit(await run());
}
