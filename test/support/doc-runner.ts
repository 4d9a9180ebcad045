// Runs the docs' command blocks as a reader would, against a control plane of the test's, and keeps
// count, so that a suite can prove it ran every block the docs say it runs (`<!-- runs in ... -->`,
// test/unit/docs/command-blocks.test.ts). What must differ from a reader's machine is said here, and
// only here:
// - KUBECONFIG is the control plane's admin kubeconfig, with a context `prod` beside its own (the
//   docs' example of --context), and the kubectl of the tests first on PATH.
// - `chaperone` and `npx chaperone` run this checkout's bin/chaperone.mjs (shims first on PATH;
//   this npx runs nothing else, so nothing is ever fetched from a registry).
// - The working directory is a scratch directory of the test's, in which `manifests` and `charts` are
//   the checkout's and `chaperone` is the checkout (an overlay's `../chaperone/manifests/base`):
//   files the docs write (alice.kubeconfig, my-chaperone/kustomization.yaml) land there.
// - A yaml block whose first line is `# <path>` is that file, written there; another yaml block is
//   applied (`kubectl apply -f`).
// - A placeholder `<namespace>` is the namespace the test gives; a value given as an example (an
//   auditID) is replaced by one of the run, where the test says so (RunOptions.example).
// - sh blocks run with `bash -e -o pipefail`: a command that fails stops the block, as a reader stops.
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { ensureKubectl } from '../../local-cluster/binaries.js';
import type { CommandResult } from '../../local-cluster/kube.js';
import { blocksRunIn, type FencedBlock } from './doc-blocks.js';

const REPO = path.resolve(import.meta.dirname, '../..');

interface KubeconfigFile {
  contexts: { name: string; context: Record<string, unknown> }[];
  'current-context': string;
}

async function writeExecutable(file: string, text: string): Promise<void> {
  await writeFile(file, text);
  await chmod(file, 0o755);
}

/** The kubeconfig the docs' commands read: the admin's, plus a context `prod` that is the same cluster. */
async function kubeconfigWithProd(adminKubeconfig: string, file: string): Promise<void> {
  const config = YAML.parse(await readFile(adminKubeconfig, 'utf8')) as KubeconfigFile;
  const current = config.contexts.find((context) => context.name === config['current-context'])!;
  config.contexts.push({ name: 'prod', context: current.context });
  await writeFile(file, YAML.stringify(config), { mode: 0o600 });
}

export interface DocRunnerOptions {
  /** The test file whose blocks these are (import.meta.filename). */
  testFile: string;
  /** The scratch directory to work in (made here). */
  dir: string;
  adminKubeconfig: string;
  /** What `<namespace>` in a block stands for. */
  namespace: string;
}

export interface RunOptions {
  timeoutMs?: number;
  /** A value the block gives as an example (an auditID) and the one of this run that stands for it. */
  example?: { written: string; actual: string };
}

export class DocRunner {
  private readonly ran = new Set<FencedBlock>();

  private constructor(
    private readonly blocks: FencedBlock[],
    private readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly namespace: string,
    private readonly kubectlPath: string,
  ) {}

  static async create({ testFile, dir, adminKubeconfig, namespace }: DocRunnerOptions): Promise<DocRunner> {
    const bin = path.join(dir, '.bin');
    await mkdir(bin, { recursive: true });
    await symlink(await ensureKubectl(), path.join(bin, 'kubectl'));
    await writeExecutable(path.join(bin, 'chaperone'), `#!/bin/sh\nexec '${process.execPath}' '${path.join(REPO, 'bin/chaperone.mjs')}' "$@"\n`);
    await writeExecutable(path.join(bin, 'npx'), `#!/bin/sh\n[ "$1" = chaperone ] && shift && exec chaperone "$@"\necho "npx $1: the docs' tests run only npx chaperone" >&2\nexit 127\n`);
    for (const name of ['manifests', 'charts']) await symlink(path.join(REPO, name), path.join(dir, name));
    await symlink(REPO, path.join(dir, 'chaperone'));
    const kubeconfig = path.join(dir, '.kubeconfig');
    await kubeconfigWithProd(adminKubeconfig, kubeconfig);
    const env = { ...process.env, KUBECONFIG: kubeconfig, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` };
    return new DocRunner(await blocksRunIn(testFile), dir, env, namespace, path.join(bin, 'kubectl'));
  }

  /** The one block of `file` marked as run here that contains `text`. */
  block(file: string, text: string): FencedBlock {
    const found = this.blocks.filter((block) => block.file === file && block.body.includes(text));
    if (found.length !== 1) throw new Error(`${found.length} blocks of ${file} marked as run here contain ${JSON.stringify(text)}`);
    return found[0]!;
  }

  /** Runs the block of `file` that contains `text` (see block()): a shell block, or a yaml file written or applied. */
  async run(file: string, text: string, { timeoutMs = 60_000, example }: RunOptions = {}): Promise<CommandResult> {
    const block = this.block(file, text);
    this.ran.add(block);
    let body = block.body.replaceAll('<namespace>', this.namespace);
    if (example) {
      if (!body.includes(example.written)) throw new Error(`${file}:${block.line} has no ${example.written}`);
      body = body.replaceAll(example.written, example.actual);
    }
    if (block.language === 'sh') return this.exec('bash', ['-e', '-o', 'pipefail', '-c', body], timeoutMs);
    if (block.language !== 'yaml') throw new Error(`${file}:${block.line}: no way to run a ${block.language} block`);
    const named = /^# (\S+)\n/.exec(body)?.[1];
    if (!named) return this.exec(this.kubectlPath, ['apply', '-f', '-'], timeoutMs, body);
    await mkdir(path.dirname(path.join(this.dir, named)), { recursive: true });
    await writeFile(path.join(this.dir, named), body);
    return { code: 0, stdout: '', stderr: '' };
  }

  /** A path in the scratch directory (where the docs' commands write). */
  file(name: string): string {
    return path.join(this.dir, name);
  }

  /** The blocks marked as run here that no test has run (so far). */
  notRun(): string[] {
    return this.blocks.filter((block) => !this.ran.has(block)).map((block) => `${block.file}:${block.line}`);
  }

  private exec(command: string, args: string[], timeoutMs: number, input?: string): Promise<CommandResult> {
    return new Promise((resolve) => {
      const child = execFile(command, args, { cwd: this.dir, env: this.env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
      if (input !== undefined) child.stdin!.end(input);
    });
  }
}
