// Audit for every injected sidecar, chosen once by the platform team: the installation configuration
// names an audit policy (the API server's format) and a webhook, and each injected pod's sidecar sends
// its events there at that policy's levels. A new version reaches running sidecars; one a sidecar
// could not use is refused by the injector, naming the field, before any pod gets it. The Secret is
// made by docs/audit.md's sidecar.yaml and kubectl command, as written.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { CertificateAndKey } from '../../lib/pki.js';
import type { RunningInjector } from '../../injector/injector.js';
import { declareNoSidecarEvent } from '../../local-cluster/audit-join.js';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, kubectl, type AdminClients } from '../../local-cluster/kube.js';
import { installInjector, type InjectorInstallation, type PodSidecar } from '../../local-cluster/provisioned.js';
import { rawRequest, type RawResponse } from '../../local-cluster/sidecar.js';
import { waitFor } from '../../local-cluster/wait.js';
import { sharedControlPlane } from '../support/shared.js';
import { docBlockNamed, docBlocks } from '../support/doc-blocks.js';
import { podRefusedFor, startInjectedDashboard } from '../support/injected-dashboard.js';
import { startReceiver, type Receiver } from '../unit/sidecar/audit/support.js';

const CONFIG_SECRET = 'chaperone-sidecar-config';

/** configmaps at the level given; everything else not at all. */
function policy(level: string): string {
  return `apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: ${level}\n    resources: [{ group: "", resources: [configmaps] }]\n  - level: None\n`;
}

describe('audit for injected pods: the installation configuration (issue 23)', function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let receiver: Receiver;
  let installation: InjectorInstallation;
  let injector: RunningInjector;
  let namespace: string;
  let sidecar: PodSidecar;
  let alice: CertificateAndKey;
  let files: Record<string, string>;
  let dir: string | undefined;

  const configuration = (changes: Record<string, string>) => ({ metadata: { name: CONFIG_SECRET }, stringData: { ...files, ...changes } });
  const replaceConfiguration = (changes: Record<string, string>) =>
    clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: configuration(changes) });
  const get = (path: string) => rawRequest(`${sidecar.url}${path}`, { ca: sidecar.dashboard.caPem, cert: alice });
  const auditID = (response: RawResponse) => String(response.headers['audit-id']);
  const eventOf = (response: RawResponse) =>
    waitFor(`the webhook to receive the event of ${auditID(response)}`, () => receiver.events.find((e) => e.auditID === auditID(response) && e.stage === 'ResponseComplete'), 20_000);

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    receiver = await startReceiver();
    files = {
      // The test's one addition: batches sent within 100 ms rather than 5 s.
      'sidecar.yaml': `${await docBlockNamed('docs/audit.md', 'yaml', 'sidecar.yaml')}auditWebhookBatchMaxWait: 100ms\n`,
      'audit-policy.yaml': policy('RequestResponse'),
      'audit-webhook.kubeconfig': await readFile(receiver.kubeconfig, 'utf8'),
    };
    installation = await installInjector(cp, clients);
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-installation-audit-'));
    for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
    const command = (await docBlocks('docs/audit.md', 'sh')).find((block) => block.includes('create secret generic chaperone-sidecar-config'))!;
    const args = command
      .replace(/\\\n/g, ' ')
      .trim()
      .split(/\s+/)
      .slice(1)
      .map((arg) => (arg === 'chaperone-system' ? installation.namespace : arg.replace(/^--from-file=/, `--from-file=${dir}/`)));
    const created = await kubectl(cp.adminKubeconfig, args);
    assert.equal(created.code, 0, created.stderr);
    ({ injector, namespace, sidecar, alice } = await startInjectedDashboard(cp, clients, installation, 'installation-audit'));
  });

  after(async function () {
    await sidecar?.stop();
    await injector?.stop();
    await installation?.cleanup();
    await receiver?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("sends each injected sidecar's events to the installation's webhook, at the installation's policy's levels", async function () {
    const read = await get(`/api/v1/namespaces/${namespace}/configmaps/settings`);
    assert.equal(read.status, 200, read.body);
    const event = await eventOf(read);
    assert.equal(event.level, 'RequestResponse');
    assert.equal(event.user.username, 'alice');
    assert.equal(event.impersonatedUser?.username, 'alice');
    assert.deepEqual((event.responseObject as { data?: unknown } | undefined)?.data, { theme: 'dark' }, 'the response is recorded, as RequestResponse asks');

    const other = await get(`/api/v1/namespaces/${namespace}/serviceaccounts`);
    assert.equal(other.status, 200, other.body);
    declareNoSidecarEvent(auditID(other), "the installation's audit policy records nothing for serviceaccounts");
    // The configmap read after it is delivered; the serviceaccounts read, before it, never is.
    await eventOf(await get(`/api/v1/namespaces/${namespace}/configmaps/settings`));
    assert.equal(receiver.events.filter((e) => e.auditID === auditID(other)).length, 0, 'level None: no event');
  });

  it('a new version of the policy reaches the running sidecar: the requests after it are audited by the new one', async function () {
    await replaceConfiguration({ 'audit-policy.yaml': policy('Metadata') });
    const event = await waitFor(
      'the sidecar to apply the new policy',
      async () => {
        const found = await eventOf(await get(`/api/v1/namespaces/${namespace}/configmaps/settings`));
        return found.level === 'Metadata' ? found : undefined;
      },
      30_000,
      250,
    );
    assert.equal(event.responseObject, undefined, 'Metadata level records no body');
    await replaceConfiguration({});
    await waitFor(
      'the sidecar to apply the policy it had',
      async () => (await eventOf(await get(`/api/v1/namespaces/${namespace}/configmaps/settings`))).level === 'RequestResponse',
      30_000,
      250,
    );
  });

  it('a policy or sink a sidecar could not use is refused by the injector, naming the field; the sidecars keep the version in use', async function () {
    const refusals: [Record<string, string>, RegExp][] = [
      [{ 'audit-policy.yaml': 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Verbose\n' }, /auditPolicyFile: .*audit-policy\.yaml: rules\[0\]\.level: is required: one of None, Metadata, Request, RequestResponse/],
      [{ 'sidecar.yaml': 'auditSinks: [file]\n' }, /sidecar\.yaml: auditSinks: the file sink writes inside the sidecar's container/],
      [{ 'audit-webhook.kubeconfig': 'apiVersion: v1\nkind: Config\nusers: [{ name: u, user: { exec: { apiVersion: client.authentication.k8s.io/v1, command: /bin/sh } } }]\n' }, /audit-webhook\.kubeconfig: user\.exec: an installation configuration runs no credential plugin/],
    ];
    try {
      for (const [changes, why] of refusals) {
        await replaceConfiguration(changes);
        await podRefusedFor(clients, namespace, why);
      }
      const read = await get(`/api/v1/namespaces/${namespace}/configmaps/settings`);
      assert.equal((await eventOf(read)).level, 'RequestResponse', 'the running sidecar keeps the version in use');
    } finally {
      await replaceConfiguration({});
    }
  });
});
