// Wires the injector together from its configuration and starts serving.
import { createLogger, type Logger } from '../lib/log.js';
import type { InjectorConfig } from './config.js';
import { Denial } from './denial.js';
import { kubeConfigFrom, namespaceLabelsFromApi } from './namespaces.js';
import type { NamespaceLabels } from './review.js';
import { startInjectorServer } from './server.js';
import { resolveSettings } from './settings.js';

export interface RunningInjector {
  port: number;
  stop(): Promise<void>;
}

/** A configuration the injector cannot work with, found on start: a refusal to start. */
export class CannotStart extends Error {}

function apiNamespaceLabels(kubeconfig: string | undefined): NamespaceLabels {
  try {
    return namespaceLabelsFromApi(kubeConfigFrom(kubeconfig));
  } catch (err) {
    throw new CannotStart(`cannot load ${kubeconfig ? `the kubeconfig ${kubeconfig}` : 'the in-cluster configuration'}: ${(err as Error).message}`);
  }
}

export async function startInjector(
  config: InjectorConfig,
  log: Logger = createLogger('injector', config.logLevel),
  namespaceLabels?: NamespaceLabels,
): Promise<RunningInjector> {
  try {
    resolveSettings(config);
  } catch (err) {
    // Every pod would be denied with these defaults.
    if (err instanceof Denial) throw new CannotStart(err.message.replace(/^chaperone cannot inject this pod: /, ''));
    throw err;
  }
  const server = await startInjectorServer(
    { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile },
    config.listen,
    { config, namespaceLabels: namespaceLabels ?? apiNamespaceLabels(config.kubeconfig), log },
    log,
  );
  log.info({ port: server.port, namespace: config.namespace, mode: config.sidecarMode, image: config.sidecarImage }, 'chaperone injector serving');
  return { port: server.port, stop: () => server.close() };
}
