// kubectl as the demo runs it: one command with its output, and the two it keeps running until it
// stops (a port-forward to the sidecar, the sidecar's log followed), each with its discovery cache in
// the demo's directory, since the ports change with every run.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface Kubectl {
  binary: string;
  /** Where its discovery cache goes. */
  cacheDir: string;
}

function env(kubectl: Kubectl, kubeconfig: string): NodeJS.ProcessEnv {
  return { ...process.env, KUBECONFIG: kubeconfig, KUBECACHEDIR: kubectl.cacheDir };
}

/** How to name kubectl in a command someone copies: by name when it is the one on PATH. */
export function kubectlName(binary: string): string {
  const onPath = (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir !== '' && path.join(dir, 'kubectl') === binary);
  return onPath ? 'kubectl' : binary;
}

export function runKubectl(kubectl: Kubectl, kubeconfig: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(kubectl.binary, args, { env: env(kubectl, kubeconfig), timeout: 30_000 }, (error, stdout, stderr) => resolve({ ok: !error, output: `${stdout}${stderr}`.trim() }));
  });
}

/** A kubectl that runs until stopped. */
export interface RunningKubectl {
  child: ChildProcess;
  stop(): Promise<void>;
}

function running(child: ChildProcess): RunningKubectl {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * `kubectl port-forward` to a pod's port from a port of 127.0.0.1 that kubectl picks; resolves with
 * that port once it forwards, or throws with what kubectl said if it exits first.
 */
export function portForward(kubectl: Kubectl, kubeconfig: string, target: { namespace: string; pod: string; port: number }): Promise<RunningKubectl & { port: number }> {
  const podPort = target.port;
  const child = spawn(kubectl.binary, ['port-forward', '--address=127.0.0.1', '-n', target.namespace, `pod/${target.pod}`, `:${podPort}`], { env: env(kubectl, kubeconfig), stdio: ['ignore', 'pipe', 'pipe'] });
  let said = '';
  return new Promise((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => (said += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`kubectl port-forward exited (${code}): ${said.trim()}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      said += `${line}\n`;
      const forwarding = new RegExp(`^Forwarding from 127\\.0\\.0\\.1:(\\d+) -> ${podPort}$`).exec(line);
      if (forwarding) resolve({ ...running(child), port: Number(forwarding[1]) });
    });
  });
}

/** `kubectl logs --follow` of one container; each line of its output goes to onLine. */
export function followLogs(kubectl: Kubectl, kubeconfig: string, args: string[], onLine: (line: string) => void): RunningKubectl {
  const child = spawn(kubectl.binary, ['logs', '--follow', ...args], { env: env(kubectl, kubeconfig), stdio: ['ignore', 'pipe', 'ignore'] });
  createInterface({ input: child.stdout }).on('line', onLine);
  return running(child);
}
