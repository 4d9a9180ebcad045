// `chaperone rotate`, run as a person runs it: the kubeconfig as kubectl reads it (KUBECONFIG with
// several files, the first one's current context unless --context names another), against the real
// API server, and what it says when it cannot.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import type { Controller } from '../../injector/controller.js';
import { caSetFromSecret } from '../../injector/certs/ca-secret.js';
import { SECRETS } from '../../injector/provision/names.js';
import { kubeconfigYaml } from '../../lib/kubeconfig.js';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, createServiceAccount, mintServiceAccountToken, type AdminClients } from '../../local-cluster/kube.js';
import { installInjector, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { runMain } from '../support/run-main.js';
import { sharedControlPlane } from '../support/shared.js';

describe('chaperone rotate (the command, on the shared control plane)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let installation: InjectorInstallation;
  let replica: Controller;
  let dir: string;
  /** A kubeconfig whose current context names an API server that is not there. */
  let elsewhere: string;
  let adminContext: string;

  const rotate = (args: string[], env: Record<string, string>) => runMain('cli/main.ts', ['rotate', ...args, `--injector-namespace=${installation.namespace}`], env);
  const pending = async (secret: string) => caSetFromSecret(await clients.core.readNamespacedSecret({ name: secret, namespace: installation.namespace })).pending;

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    installation = await installInjector(cp, clients);
    // The controller creates the CAs on its first start; it runs on, as the injector would.
    replica = installation.startReplica(['--webhook-hosts=127.0.0.1']);
    await replica.ready();
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-rotate-'));
    elsewhere = path.join(dir, 'elsewhere.kubeconfig');
    await writeFile(elsewhere, kubeconfigYaml('https://127.0.0.1:1', cp.ca.certPem, 'elsewhere', { token: 'none' }, 'elsewhere'));
    adminContext = (YAML.parse(await readFile(cp.adminKubeconfig, 'utf8')) as { 'current-context': string })['current-context'];
  });

  after(async function () {
    await installation?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('uses the current context of the first file in KUBECONFIG, as kubectl does, and says which API server it could not reach', async function () {
    const result = await rotate(['identity'], { KUBECONFIG: [elsewhere, cp.adminKubeconfig].join(path.delimiter) });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^chaperone rotate: cannot talk to the API server at https:\/\/127\.0\.0\.1:1: /);
    assert.equal(await pending(SECRETS.identityCa), undefined, 'nothing was started');
  });

  it('starts the rotation in the context --context names: the new CA is pending, and a second call leaves it so', async function () {
    const env = { KUBECONFIG: [elsewhere, cp.adminKubeconfig].join(path.delimiter) };
    const started = await rotate(['identity', '--context', adminContext, '--ca-propagation-delay', '90s'], env);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, new RegExp(`^identity CA rotation started \\(Secret ${installation.namespace}/chaperone-identity-ca\\)`));
    const successor = await pending(SECRETS.identityCa);
    assert.ok(successor, 'the Secret holds the successor');
    const delay = successor.activateAt.getTime() - Date.now();
    assert.ok(delay > 60_000 && delay <= 90_000, `signs in ${delay} ms, as --ca-propagation-delay says`);

    const again = await rotate(['identity', '--context', adminContext], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /rotation is already under way/);
    assert.equal((await pending(SECRETS.identityCa))?.ca.certPem, successor.ca.certPem);
  });

  it('tells a person without access to the CA Secret what she lacks, and an unknown CA what there is', async function () {
    await createServiceAccount(clients, installation.namespace, 'nobody');
    const token = await mintServiceAccountToken(clients, installation.namespace, 'nobody');
    const nobody = path.join(dir, 'nobody.kubeconfig');
    await writeFile(nobody, kubeconfigYaml(cp.url, cp.ca.certPem, 'nobody', { token }));
    const refused = await rotate(['serving', '--kubeconfig', nobody], {});
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `chaperone rotate: cannot rotate the serving CA: forbidden: you need get and update on secrets/chaperone-serving-ca in ${installation.namespace}\n`);
    assert.equal(await pending(SECRETS.servingCa), undefined);

    const unknown = await rotate(['root', '--kubeconfig', cp.adminKubeconfig], {});
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, 'chaperone rotate: there is no "root" CA: name one of webhook, identity, serving\n');
  });
});
