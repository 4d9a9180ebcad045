// How the chaperone command reaches a cluster, as kubectl does: --kubeconfig, else every file in
// KUBECONFIG (the first to set a value wins), else ~/.kube/config; --context picks another context;
// the namespace is --namespace, else the context's, else "default". And what an API error means to
// the person who ran the command.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ConfigError } from '../lib/config.js';
import { loadInjectorConfig, type InjectorConfig } from '../injector/config.js';
import { describeError, statusCode } from '../injector/provision/kube.js';

export interface ClusterOptions {
  kubeconfig?: string;
  context?: string;
}

export interface InjectorOptions {
  /** The injector's namespace, over the one in the injector's config file. */
  injectorNamespace?: string;
  /** The injector's own config file: the names it gives what it creates, when they are not the defaults. */
  injectorConfig?: string;
}

function kubeconfigFiles(options: ClusterOptions, env: NodeJS.ProcessEnv, home: string): string[] {
  if (options.kubeconfig) return [options.kubeconfig];
  if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(path.delimiter).filter((file) => file !== '' && existsSync(file));
    if (files.length === 0) throw new Error(`none of the files in KUBECONFIG exists (${env.KUBECONFIG})`);
    return files;
  }
  const file = path.join(home, '.kube', 'config');
  if (!existsSync(file)) throw new Error('no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config');
  return [file];
}

export function loadKubeconfig(options: ClusterOptions, env: NodeJS.ProcessEnv = process.env, home = homedir()): KubeConfig {
  const [first, ...rest] = kubeconfigFiles(options, env, home);
  const kubeconfig = new KubeConfig();
  try {
    kubeconfig.loadFromFile(first!);
    for (const file of rest) {
      const more = new KubeConfig();
      more.loadFromFile(file);
      kubeconfig.mergeConfig(more, true);
    }
  } catch (err) {
    throw new Error(`cannot read the kubeconfig: ${(err as Error).message}`, { cause: err });
  }
  if (options.context) {
    if (!kubeconfig.getContextObject(options.context)) throw new Error(`the kubeconfig has no context "${options.context}"`);
    kubeconfig.setCurrentContext(options.context);
  }
  if (!kubeconfig.getCurrentCluster()) throw new Error('the kubeconfig has no current context with a cluster: pass --context');
  return kubeconfig;
}

export function namespaceOf(namespace: string | undefined, kubeconfig: KubeConfig): string {
  return namespace ?? kubeconfig.getContextObject(kubeconfig.getCurrentContext())?.namespace ?? 'default';
}

/** The injector's configuration as its own loader reads it: its defaults, its config file, the namespace given. */
export function injectorConfigFrom(options: InjectorOptions): InjectorConfig {
  const argv = [...(options.injectorConfig ? [`--config=${options.injectorConfig}`] : []), ...(options.injectorNamespace ? [`--namespace=${options.injectorNamespace}`] : [])];
  try {
    return loadInjectorConfig(argv, {});
  } catch (err) {
    if (err instanceof ConfigError) throw new Error(`the injector configuration is not valid:\n${err.message}`, { cause: err });
    throw err;
  }
}

/** An error that is not the API server's answer (a refused connection, a certificate it does not trust): nothing else will work either. */
export function unreachable(kubeconfig: KubeConfig, err: unknown): Error {
  const { message, cause } = err as Error;
  const detail = cause instanceof Error && !message.includes(cause.message) ? `${message} (${cause.message})` : message;
  return new Error(`cannot talk to the API server at ${kubeconfig.getCurrentCluster()?.server ?? '?'}: ${detail}`);
}

/** What an API error means to the person; `need` says what a 403 lacks, e.g. "get on secrets/x in y". */
export function apiErrorMessage(err: unknown, need: string): string {
  const code = statusCode(err);
  if (code === 403) return `forbidden: you need ${need}`;
  if (code === 401) return 'the API server did not accept your credentials (HTTP 401): check your kubeconfig';
  return describeError(err);
}
