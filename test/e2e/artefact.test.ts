// The artefacts the images ship, run exactly as the images run them: the runtime stage of each
// Dockerfile laid out in a directory that holds only what it copies (no node_modules anywhere), its
// ENTRYPOINT run with the Node 24 binary, as the image's non-root user when the tests run as root.
// The injector image serves the real API server; the sidecar image runs with the arguments,
// environment and files of the pod that injector produced; the chaperone bundle, installed without
// the TypeScript, issues the kubeconfig kubectl then uses through that sidecar.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { SourceMap } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { BUNDLE_NAMES, bundleFiles, DEMO_STAND_IN, DIST, ensureArtefacts, packageVersion, REPO, type BuildInfo } from '../../scripts/build-artefacts.js';
import { freePort, type ControlPlane } from '../../local-cluster/control-plane.js';
import { copies, dockerignored, environment, execForm, instructions, labels, numericUser, parseDockerignore, processUid, readDockerfile, runAs, runImage, stageImage, type ImageProcess, type StagedImage } from '../../local-cluster/images.js';
import { buildDockerfileImage, nodeBinary, readOciArchive, sharedLibraries } from '../../local-cluster/oci.js';
import { adminClients, grantInNamespace, kubectl, type AdminClients } from '../../local-cluster/kube.js';
import { createWebhookConfiguration, installInjector, readCaBundles, writeMountedFiles, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { registerSidecarAuditLog, serviceAccountUsername } from '../../local-cluster/audit-join.js';
import { sharedControlPlane } from '../support/shared.js';
import { admissionReview } from '../unit/injector/helpers.js';
import { SECRETS } from '../../injector/provision/names.js';
import { decodeData } from '../../injector/provision/kube.js';

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { ...options, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Runs an image to its end: its exit code and what it printed. */
async function runImageToEnd(image: StagedImage, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const started = runImage(image, args);
  // Registered in the tick that spawned it, so it cannot miss the end; 'close' comes after the last output.
  const [code] = (await once(started.child, 'close')) as [number | null];
  return { code, stdout: started.stdout(), stderr: started.stderr() };
}

function podJson(name: string): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/headlamp-k8s/headlamp:v0.30.0' }] } };
}

/** The container's environment as the kubelet gives it: its own variables and the API server's service variables. */
function containerEnv(cp: ControlPlane, pod: V1Pod, container: V1Container): Record<string, string> {
  const env: Record<string, string> = { KUBERNETES_SERVICE_HOST: cp.host, KUBERNETES_SERVICE_PORT: String(cp.port) };
  for (const variable of container.env ?? []) {
    const field = variable.valueFrom?.fieldRef?.fieldPath;
    const fields: Record<string, string | undefined> = { 'metadata.name': pod.metadata?.name, 'metadata.namespace': pod.metadata?.namespace };
    const value = variable.value ?? (field ? fields[field] : undefined);
    if (value === undefined) throw new Error(`this test cannot give ${container.name} the variable ${variable.name}`);
    env[variable.name] = value;
  }
  return env;
}

/** Gives the files the kubelet wrote the modes the pod's volumes ask for, readable by the image's user. */
async function applyVolumeModes(pod: V1Pod, container: V1Container, mounts: Map<string, string>): Promise<void> {
  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.spec!.volumes!.find((v) => v.name === mount.name)!;
    const mode = volume.projected?.defaultMode ?? volume.secret?.defaultMode ?? volume.configMap?.defaultMode ?? 0o644;
    const dir = mounts.get(mount.mountPath)!;
    for (let up = dir; up.startsWith(tmpdir()) && up !== tmpdir(); up = path.dirname(up)) await chmod(up, 0o755);
    for (const file of await readdir(dir)) await chmod(path.join(dir, file), mode);
  }
}

describe('the artefacts the images run', function () {
  this.timeout(180_000);
  let info: BuildInfo;

  before(async function () {
    info = await ensureArtefacts((line) => process.stderr.write(`      ${line}\n`));
  });

  describe('the bundles', function () {
    it('hold nothing from test/, bench/ or local-cluster/; the CLI has a stand-in for the demo, which needs the local cluster', function () {
      for (const name of BUNDLE_NAMES) {
        const fromTests = info.bundles[name].inputs.filter((input) => input.startsWith('test/') || input.startsWith('bench/') || input.startsWith('local-cluster/'));
        assert.deepEqual(fromTests, [], `${name}.mjs bundles test code`);
      }
      assert.ok(info.bundles.chaperone.inputs.includes(DEMO_STAND_IN), 'the CLI bundle has the demo stand-in');
      assert.ok(!info.bundles.chaperone.inputs.includes('cli/demo.ts'));
      assert.ok(info.bundles.sidecar.inputs.includes('sidecar/main.ts') && info.bundles.injector.inputs.includes('injector/main.ts'));
      assert.ok(!info.bundles.sidecar.inputs.some((input) => input.startsWith('injector/')), 'the sidecar bundles no injector code');
    });

    it('leave @kubernetes/client-node, and the undici it brings, out of the injector (issue 20: its own REST client, lib/kube-api)', function () {
      const injectorPackages = info.bundles.injector.packages.map((pkg) => pkg.name);
      assert.deepEqual(injectorPackages.filter((name) => ['@kubernetes/client-node', 'undici', 'ws', 'openid-client', 'js-yaml'].includes(name)), []);
      assert.ok(info.bundles.injector.inputs.includes('lib/kube-api/client.ts'));
      assert.ok(info.bundles.chaperone.packages.some((pkg) => pkg.name === '@kubernetes/client-node'), 'the CLI keeps client-node for its own calls');
    });

    it('are made only of files the Docker build context holds', async function () {
      const rules = parseDockerignore(await readFile(path.join(REPO, '.dockerignore'), 'utf8'));
      const sources = Object.keys(info.inputs).filter((input) => !input.includes('node_modules/'));
      assert.ok(sources.length > 20);
      assert.deepEqual(sources.filter((input) => dockerignored(rules, input)), [], '.dockerignore leaves out files the build needs');
      for (const file of ['package.json', 'package-lock.json', 'tsconfig.json']) assert.equal(dockerignored(rules, file), false, file);
      for (const file of ['node_modules/zod/package.json', 'dist/sidecar.mjs', '.git/HEAD', 'test/e2e/artefact.test.ts']) assert.equal(dockerignored(rules, file), true, file);
    });

    it('carry the licence and notice files of every package bundled into them', async function () {
      for (const name of BUNDLE_NAMES) {
        const notices = await readFile(path.join(DIST, bundleFiles(name).notices), 'utf8');
        for (const pkg of info.bundles[name].packages) {
          assert.ok(notices.includes(`=== ${pkg.name}@${pkg.version} (${pkg.license})`), `${name}: ${pkg.name}`);
          for (const file of pkg.files) assert.ok(notices.includes((await readFile(path.join(REPO, file), 'utf8')).trim()), `${name}: ${file}`);
        }
      }
      const sidecarPackages = info.bundles.sidecar.packages.map((pkg) => pkg.name);
      for (const expected of ['pino', 'jose', 'zod']) assert.ok(sidecarPackages.includes(expected), expected);
      assert.ok(info.bundles.sidecar.packages.every((pkg) => pkg.files.length > 0 || pkg.license), 'every package names its licence');
    });

    it("do not load Node's undici for an export of node:http they never read", async function () {
      // An ES module import of node:http reads http.WebSocket, which loads undici (docs/images.md).
      const report = "process.on('exit', () => process.stderr.write(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('undici')))))";
      for (const name of BUNDLE_NAMES) {
        const { stderr } = await promisify(execFile)(process.execPath, [`--import=data:text/javascript,${encodeURIComponent(report)}`, path.join(DIST, bundleFiles(name).bundle), '--version']);
        assert.deepEqual(JSON.parse(stderr.trim().split('\n').at(-1)!), [], `${name}.mjs --version`);
      }
      const bundle = await readFile(path.join(DIST, 'sidecar.mjs'), 'utf8');
      assert.doesNotMatch(bundle, /\bfrom\s*"node:/, 'the sidecar bundle imports no built-in (they are required)');
    });

    it('keep names, and map positions back to the TypeScript for stack traces', async function () {
      const bundle = await readFile(path.join(DIST, 'sidecar.mjs'), 'utf8');
      const map = new SourceMap(JSON.parse(await readFile(path.join(DIST, 'sidecar.mjs.map'), 'utf8')) as ConstructorParameters<typeof SourceMap>[0]);
      assert.match(bundle, /"startSidecar"/, 'keepNames keeps function names');
      assert.match(bundle, /\/\/# sourceMappingURL=sidecar\.mjs\.map\s*$/);
      const at = bundle.indexOf('"shutting down"');
      assert.ok(at > 0);
      const before = bundle.slice(0, at);
      const line = before.split('\n').length - 1;
      const entry = map.findEntry(line, at - before.lastIndexOf('\n') - 1);
      assert.ok('originalSource' in entry && entry.originalSource.endsWith('lib/process.ts'), `maps to ${JSON.stringify(entry)}`);
    });
  });

  describe('the images built without Docker (local-cluster/oci.ts), as the real-pods suite runs them', function () {
    let dir: string;

    before(async function () {
      dir = await mkdtemp(path.join(tmpdir(), 'chaperone-oci-'));
    });

    after(async function () {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    for (const dockerfile of ['Dockerfile.sidecar', 'Dockerfile.injector']) {
      it(`${dockerfile}: the same files in /app, entrypoint, user, workdir, labels and ports as the Dockerfile's runtime stage, and Node.js 24 where its base image has it`, async function () {
        const ref = `chaperone.local/${dockerfile.toLowerCase()}:test`;
        const archive = await buildDockerfileImage(dockerfile, ref, path.join(dir, `${dockerfile}.tar`));
        const image = await readOciArchive(archive.file);
        const { runtime } = await readDockerfile(dockerfile);
        const entrypoint = execForm(instructions(runtime, 'ENTRYPOINT').at(-1)!);
        const user = numericUser(runtime);
        assert.equal(image.ref, ref);
        assert.deepEqual(image.config.Entrypoint, entrypoint);
        assert.equal(image.config.Cmd, undefined);
        assert.equal(image.config.User, `${user.uid}:${user.gid}`);
        assert.equal(image.config.WorkingDir, instructions(runtime, 'WORKDIR').at(-1)!.args);
        assert.deepEqual(image.config.Labels, labels(runtime));
        const withoutPath = image.config.Env.filter((variable) => !variable.startsWith('PATH='));
        assert.deepEqual(withoutPath, Object.entries(environment(runtime)).map(([key, value]) => `${key}=${value}`), 'the pods run with the environment the image sets');
        assert.ok(Object.keys(environment(runtime)).length > 0);
        const exposed = instructions(runtime, 'EXPOSE').flatMap(({ args }) => args.split(/\s+/)).map((port) => `${port}/tcp`);
        assert.deepEqual(Object.keys(image.config.ExposedPorts ?? {}).sort(), exposed.sort());

        // What the runtime stage copies: exactly these files, the bundles' bytes, read-only for all, owned by root.
        const copied = copies(runtime).flatMap((copy) => copy.sources.map((source) => path.posix.join(copy.dest, path.posix.basename(source))));
        const inApp = image.files.filter((file) => file.path.startsWith('/app/'));
        assert.deepEqual(inApp.map((file) => file.path).sort(), copied.sort());
        for (const file of inApp) {
          assert.equal(file.size, (await stat(path.join(DIST, path.posix.basename(file.path)))).size, file.path);
          assert.deepEqual([file.mode, file.uid, file.gid], ['-rw-r--r--', 0, 0], file.path);
        }
        // What the base image gives: the ENTRYPOINT's Node.js 24 and every library it loads, the
        // users' names, /tmp. Nothing else: no shell, no package manager.
        const node = await nodeBinary();
        const base = [entrypoint[0]!, ...(await sharedLibraries(node)), '/etc/passwd', '/etc/group'];
        const regular = image.files.filter((file) => file.mode.startsWith('-')).map((file) => file.path);
        assert.deepEqual(regular.filter((file) => !file.startsWith('/app/')).sort(), base.sort());
        assert.equal(image.files.find((file) => file.path === entrypoint[0])!.size, (await stat(node)).size);
        assert.equal(image.files.find((file) => file.path === '/tmp')?.mode, 'drwxrwxrwt');
        const { stdout } = await promisify(execFile)(node, ['--version']);
        assert.match(stdout, /^v24\./);
      });
    }
  });

  describe('the injector and sidecar images, on the shared control plane', function () {
    let cp: ControlPlane;
    let clients: AdminClients;
    let installation: InjectorInstallation;
    let injectorImage: StagedImage;
    let injector: ImageProcess;
    let injectorUrl: string;
    let webhookCa: string;
    let labelled: string;

    before(async function () {
      this.timeout(15 * 60_000);
      cp = await sharedControlPlane();
      clients = adminClients(cp);
      installation = await installInjector(cp, clients);
      injectorImage = await stageImage('Dockerfile.injector');
      // The kubeconfig stands in for the in-cluster service account, readable by the image's user.
      const kubeconfig = injectorImage.local('/var/run/injector.kubeconfig');
      await mkdir(path.dirname(kubeconfig), { recursive: true });
      await copyFile(installation.kubeconfigFile, kubeconfig);
      await chmod(kubeconfig, 0o644);
      const port = await freePort();
      injectorUrl = `https://127.0.0.1:${port}`;
      injector = runImage(injectorImage, [
        ...installation.flags.filter((flag) => !flag.startsWith('--kubeconfig=')),
        `--kubeconfig=${kubeconfig}`,
        `--listen=127.0.0.1:${port}`,
        '--webhook-hosts=127.0.0.1',
        '--resync-interval=5s',
        '--log-level=warn',
      ]);
      await createWebhookConfiguration(installation, [`${injectorUrl}/mutate`]);
      webhookCa = await waitFor('the caBundle the injector sets', async () => {
        if (injector.child.exitCode !== null) throw new Error(`the injector exited with ${injector.child.exitCode}: ${injector.stderr()}`);
        return (await readCaBundles(installation)).bundles[0] || undefined;
      }, 60_000);
      labelled = await installation.createLabelledNamespace('artefact');
    });

    after(async function () {
      await injector?.stop();
      await installation?.cleanup();
      await injectorImage?.remove();
    });

    it('the injector runs as a non-root user and serves /healthz over HTTPS with the certificate its caBundle names', async function () {
      const uid = await processUid(injector.child.pid!);
      assert.notEqual(uid, 0);
      if (runAs(injectorImage)) assert.equal(uid, injectorImage.user.uid);
      const health = await waitFor('/healthz', async () => {
        const response = await rawRequest(`${injectorUrl}/healthz`, { ca: webhookCa });
        return response.status === 200 ? response : undefined;
      });
      assert.equal(health.status, 200);
    });

    it("the injector image prints package.json's version with --version, and exits", async function () {
      const result = await runImageToEnd(injectorImage, ['--version']);
      assert.deepEqual(result, { code: 0, stdout: `${await packageVersion()}\n`, stderr: '' });
    });

    it('the injector answers an AdmissionReview with the patch that adds the sidecar', async function () {
      const body = JSON.stringify(admissionReview({ object: podJson('reviewed'), namespace: labelled }));
      const answer = await waitFor('an allowed review (the namespace provisioned)', async () => {
        const response = await rawRequest(`${injectorUrl}/mutate`, { method: 'POST', ca: webhookCa, headers: { 'content-type': 'application/json' }, body });
        assert.equal(response.status, 200, response.body);
        const review = JSON.parse(response.body) as { response: { allowed: boolean; patch?: string } };
        return review.response.allowed ? review.response : undefined;
      }, 30_000, 500);
      const patch = Buffer.from(answer.patch!, 'base64').toString('utf8');
      assert.match(patch, /"name":"chaperone"/);
    });

    describe('the sidecar image, run as the pod the injector made runs it', function () {
      let pod: V1Pod;
      let sidecarImage: StagedImage;
      let sidecar: ImageProcess;
      let proxyUrl: string;
      let opsUrl: string;
      let servingCaFile: string;

      before(async function () {
        // The real API server calls the injector image for this pod.
        pod = await waitFor('the injected pod', () => clients.core.createNamespacedPod({ namespace: labelled, body: podJson(`dashboard-${Date.now()}`) }));
        const container = pod.spec!.initContainers?.find((c) => c.name === 'chaperone');
        assert.ok(container, 'the pod has the chaperone sidecar');
        assert.equal(container.command, undefined, "the injector leaves the image's ENTRYPOINT to run");
        sidecarImage = await stageImage('Dockerfile.sidecar');
        const mounts = await writeMountedFiles(clients, pod, container, sidecarImage.local('/pod'));
        await applyVolumeModes(pod, container, mounts);
        const dashboard = pod.spec!.containers[0]!;
        const dashboardMounts = await writeMountedFiles(clients, pod, dashboard, sidecarImage.local('/pod'));
        servingCaFile = path.join(dashboardMounts.get('/var/run/secrets/kubernetes.io/serviceaccount')!, 'ca.crt');
        const [port, opsPort] = [await freePort(), await freePort()];
        const args = (container.args ?? []).map((arg) => {
          for (const [mountPath, local] of mounts) if (arg.includes(`=${mountPath}/`)) return arg.replace(`=${mountPath}/`, `=${local}/`);
          return arg;
        });
        // Only the listeners move, to free ports on 127.0.0.1: later flags win.
        sidecar = runImage(sidecarImage, [...args, `--listen=127.0.0.1:${port}`, `--ops-listen=127.0.0.1:${opsPort}`], containerEnv(cp, pod, container));
        registerSidecarAuditLog({ controlPlane: cp, serviceAccount: serviceAccountUsername(labelled, pod.spec!.serviceAccountName!), read: () => sidecar.stdout(), what: 'sidecar image' });
        proxyUrl = `https://127.0.0.1:${port}`;
        opsUrl = `http://127.0.0.1:${opsPort}`;
        await grantInNamespace(cp, clients, labelled, 'view', 'alice');
      });

      after(async function () {
        await sidecar?.stop();
        await sidecarImage?.remove();
      });

      it("prints package.json's version with --version, and exits", async function () {
        const result = await runImageToEnd(sidecarImage, ['--version']);
        assert.deepEqual(result, { code: 0, stdout: `${await packageVersion()}\n`, stderr: '' });
      });

      it('reaches /readyz, as a non-root user', async function () {
        const ready = await waitFor('/readyz', async () => {
          if (sidecar.child.exitCode !== null) throw new Error(`the sidecar exited with ${sidecar.child.exitCode}: ${sidecar.stderr()}`);
          const response = await fetch(`${opsUrl}/readyz`).catch(() => undefined);
          return response?.status === 200 ? response.text() : undefined;
        }, 30_000);
        assert.match(ready, /readyz check passed/);
        assert.notEqual(await processUid(sidecar.child.pid!), 0);
        // A missing LD_PRELOAD file only warns: the allocator the image sets must really be the one in use.
        const maps = await readFile(`/proc/${sidecar.child.pid}/maps`, 'utf8');
        assert.ok(maps.includes(sidecarImage.local('/app/libjemalloc.so.2')), 'jemalloc is loaded');
        assert.doesNotMatch(sidecar.stderr(), /cannot be preloaded/);
      });

      describe('with a kubeconfig the chaperone bundle issues, installed without the TypeScript', function () {
        let install: string;
        let files: string;

        before(async function () {
          // What an install of the package holds: the launcher and the bundle, nothing else.
          install = await mkdtemp(path.join(tmpdir(), 'chaperone-install-'));
          await mkdir(path.join(install, 'bin'));
          await mkdir(path.join(install, 'dist'));
          await copyFile(path.join(REPO, 'bin/chaperone.mjs'), path.join(install, 'bin/chaperone.mjs'));
          for (const file of Object.values(bundleFiles('chaperone'))) await copyFile(path.join(DIST, file), path.join(install, 'dist', file));
          files = await mkdtemp(path.join(tmpdir(), 'chaperone-ca-'));
          const secret = await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: installation.namespace });
          const ca = decodeData(secret.data);
          await writeFile(path.join(files, 'identity-ca.crt'), ca['ca.crt']!);
          await writeFile(path.join(files, 'identity-ca.key'), ca['ca.key']!, { mode: 0o600 });
        });

        after(async function () {
          if (install) await rm(install, { recursive: true, force: true });
          if (files) await rm(files, { recursive: true, force: true });
        });

        const chaperone = (args: string[]) => run(process.execPath, [path.join(install, 'bin/chaperone.mjs'), ...args], { cwd: install, env: {} });

        it("prints its help and package.json's version, and says the demo runs from a checkout", async function () {
          const version = await chaperone(['--version']);
          assert.deepEqual(version, { code: 0, stdout: `${await packageVersion()}\n`, stderr: '' });
          const help = await chaperone(['--help']);
          assert.equal(help.code, 0, help.stderr);
          assert.match(help.stdout, /Usage: chaperone/);
          assert.match(help.stdout, /kubeconfig/);
          const demo = await chaperone(['demo']);
          assert.equal(demo.code, 2);
          assert.match(demo.stderr, /from a checkout of the chaperone repository: npm install && npm run demo/);
        });

        it('issues a kubeconfig with which alice reads the namespace through the sidecar and bob is refused; the audit events name them', async function () {
          const issue = async (user: string) => {
            const output = path.join(files, `${user}.kubeconfig`);
            const args = ['kubeconfig', '--user', user, '--group', 'dev', '--ttl', '1h', '--server', proxyUrl, '-o', output];
            const result = await chaperone([...args, '--identity-ca-cert', path.join(files, 'identity-ca.crt'), '--identity-ca-key', path.join(files, 'identity-ca.key'), '--serving-ca', servingCaFile]);
            assert.equal(result.code, 0, result.stderr);
            return output;
          };
          const alice = await kubectl(await issue('alice'), ['get', 'pods', '-n', labelled, '-o', 'name']);
          assert.equal(alice.code, 0, alice.stderr);
          assert.match(alice.stdout, new RegExp(`pod/${pod.metadata!.name}`));
          const bob = await kubectl(await issue('bob'), ['get', 'pods', '-n', labelled]);
          assert.notEqual(bob.code, 0);
          assert.match(bob.stderr, /forbidden: User "bob" cannot list resource "pods"/);
          const events = await waitFor('audit events on standard output', () => {
            const lines = sidecar.stdout().split('\n').filter((line) => line.startsWith('{'));
            const parsed = lines.map((line) => JSON.parse(line) as { user?: { username?: string }; annotations?: Record<string, string> });
            const people = new Set(parsed.map((event) => event.user?.username));
            return Promise.resolve(people.has('alice') && people.has('bob') ? parsed : undefined);
          });
          const aliceEvent = events.find((event) => event.user?.username === 'alice')!;
          assert.equal(aliceEvent.annotations?.['chaperone.dev/pod-name'], pod.metadata!.name);
        });
      });
    });
  });

  describe('npx chaperone, in this checkout', function () {
    it('runs the TypeScript, demo included', async function () {
      assert.ok(existsSync(path.join(REPO, 'cli/main.ts')));
      // --yes=false: never fetch a package of that name from the registry instead.
      const result = await run('npx', ['--yes=false', 'chaperone', '--help'], { cwd: REPO, env: process.env });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /Usage: chaperone/);
      const demo = await run('npx', ['--yes=false', 'chaperone', 'demo', '--help'], { cwd: REPO, env: process.env });
      assert.equal(demo.code, 0, demo.stderr);
      assert.match(demo.stdout, /Usage: chaperone demo/);
    });
  });
});
