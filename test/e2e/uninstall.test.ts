// docs/operations.md, "Uninstalling", step 1, as written: the command that says when the injector
// has cleaned up every namespace, run with kubectl against a control plane of its own (the command
// looks at the whole cluster, so no other suite's installation may be there). It must list what a
// labelled namespace holds, never the injector's own CA Secrets (which carry the same label and stay
// until step 2: the wait never ended), and nothing once the label is gone.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Controller } from '../../injector/controller.js';
import { startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, kubectl, type AdminClients } from '../../local-cluster/kube.js';
import { installInjector, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';

const OPERATIONS = path.resolve(import.meta.dirname, '../../docs/operations.md');

/** The first `sh` block of the section, as kubectl arguments (one command, `\` continuations, no quoting). */
async function documentedCommand(section: string): Promise<string[]> {
  const text = await readFile(OPERATIONS, 'utf8');
  const start = text.indexOf(`\n### ${section}\n`);
  assert.ok(start > 0, `docs/operations.md has no section ${section}`);
  const block = /```sh\n([\s\S]*?)```/.exec(text.slice(start))![1]!;
  const words = block.replace(/\\\n/g, ' ').trim().split(/\s+/);
  assert.equal(words.shift(), 'kubectl');
  return words;
}

describe('uninstalling as docs/operations.md says (a control plane of its own)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let installation: InjectorInstallation;
  let replica: Controller;
  let namespace: string;
  let command: string[];

  /** The documented command, with this installation's namespace for chaperone-system: namespace/kind/name per object. */
  async function remaining(args = command): Promise<string[]> {
    const result = await kubectl(cp.adminKubeconfig, [...args.map((arg) => arg.replace('chaperone-system', installation.namespace)), '-o', 'jsonpath={range .items[*]}{.metadata.namespace}/{.kind}/{.metadata.name}{"\\n"}{end}']);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.split('\n').filter(Boolean).sort();
  }

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await startControlPlane();
    clients = adminClients(cp);
    command = await documentedCommand('Uninstalling');
    installation = await installInjector(cp, clients);
    replica = installation.startReplica(['--webhook-hosts=127.0.0.1', '--resync-interval=2s']);
    await replica.ready();
    namespace = await installation.createLabelledNamespace('uninstall');
    await waitFor('the namespace to be provisioned', async () => (await replica.provisioningStatus(namespace)).ready, 30_000);
  });

  after(async function () {
    await installation?.cleanup();
    await cp?.stop();
  });

  it("lists what a labelled namespace was provisioned with, and none of the injector's own Secrets", async function () {
    assert.deepEqual(
      (await remaining()).filter((object) => object.startsWith(`${namespace}/`)),
      [`${namespace}/ConfigMap/chaperone-ca`, `${namespace}/Secret/chaperone-serving`, `${namespace}/ServiceAccount/chaperone-impersonator`],
    );
    assert.deepEqual((await remaining()).filter((object) => !object.startsWith(`${namespace}/`)), []);
    // Without the field selector (as the docs had it), the CA Secrets are listed until step 2 deletes them.
    const withoutSelector = command.filter((arg, i) => arg !== '--field-selector' && command[i - 1] !== '--field-selector');
    assert.ok((await remaining(withoutSelector)).some((object) => object.startsWith(`${installation.namespace}/Secret/`)));
  });

  it('lists nothing once the label is gone and the injector has cleaned up', async function () {
    const unlabel = await kubectl(cp.adminKubeconfig, ['label', 'namespace', namespace, 'chaperone.dev/inject-']);
    assert.equal(unlabel.code, 0, unlabel.stderr);
    await waitFor('the documented command to list nothing', async () => (await remaining()).length === 0, 30_000, 500);
  });
});
