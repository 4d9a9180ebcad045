// Wires the injector together from its configuration and starts serving: the controller
// (certificates, namespace provisioning, the caches the admissions read) and the webhook, which
// serves the controller's certificate unless certificate files are configured, answers from the
// controller's caches, and refuses pods in namespaces not provisioned yet.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger, type Logger } from '../lib/log.js';
import { collectWhenIdle } from '../lib/idle-collection.js';
import type { InjectorConfig } from './config.js';
import { startController, type Controller } from './controller.js';
import type { CsiTokenLookup } from './csi-tokens.js';
import { Denial } from './denial.js';
import type { InstallationConfigs } from './installation-config.js';
import { kubeConnection } from '../lib/kube-api/connection.js';
import type { NamespaceLabels } from './review.js';
import { startInjectorServer } from './server.js';
import { resolveSettings } from './settings.js';

export interface RunningInjector {
  port: number;
  stop(): Promise<void>;
}

/** Each lookup the admissions make, instead of the controller's cache of it (unit tests). */
export interface InjectorDependencies {
  namespaceLabels?: NamespaceLabels;
  csiTokens?: CsiTokenLookup;
  installationConfigs?: InstallationConfigs;
  /** A controller started elsewhere (tests): used, and left running on stop. Without it the injector starts its own. */
  controller?: Controller;
}

/** A configuration the injector cannot work with, found on start: a refusal to start. */
export class CannotStart extends Error {}

/** The API server the injector itself talks to: what its sidecars are pinned to, unless told otherwise. */
function ownApiServer(kubeconfig: string | undefined): string {
  let server: string;
  try {
    const connection = kubeConnection(kubeconfig);
    server = connection.server;
    connection.close();
  } catch (err) {
    // A kubeconfig's errors start with its name.
    const reason = (err as Error).message.replace(`${kubeconfig}: `, '');
    throw new CannotStart(`cannot load ${kubeconfig ? `the kubeconfig ${kubeconfig}` : 'the in-cluster configuration'}: ${reason}`);
  }
  if (!server.startsWith('https://')) throw new CannotStart(`the injector's own API server (${server}) is no https URL the sidecars could use: give --sidecar-upstream`);
  return server;
}

function ownController(config: InjectorConfig, log: Logger): Controller {
  try {
    return startController(config, { log });
  } catch (err) {
    throw new CannotStart(`cannot start the controller: ${(err as Error).message}`);
  }
}

export async function startInjector(
  config: InjectorConfig,
  log: Logger = createLogger('injector', config.logLevel),
  dependencies: InjectorDependencies = {},
): Promise<RunningInjector> {
  try {
    resolveSettings(config);
  } catch (err) {
    // Every pod would be denied with these defaults.
    if (err instanceof Denial) throw new CannotStart(err.message.replace(/^chaperone cannot inject this pod: /, ''));
    throw err;
  }
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined)) {
    throw new CannotStart('--tls-cert-file and --tls-key-file go together: give both (to serve those files) or neither (to serve the certificate the controller keeps)');
  }
  config = { ...config, sidecarUpstream: config.sidecarUpstream ?? ownApiServer(config.kubeconfig) };
  const { controller: given, ...lookups } = dependencies;
  const controller = given ?? ownController(config, log);
  const stopController = given ? () => Promise.resolve() : () => controller.stop();

  let bootstrapDir: string | undefined;
  let server;
  try {
    await controller.ready();
    let files: { certFile: string; keyFile: string };
    if (config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined) {
      files = { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile };
    } else {
      // The listeners start from files; the controller's certificate is swapped in from memory after.
      const current = controller.currentCertificate();
      if (!current) throw new Error('the controller is ready but has no certificate');
      bootstrapDir = await mkdtemp(path.join(tmpdir(), 'chaperone-injector-tls-'));
      files = { certFile: path.join(bootstrapDir, 'tls.crt'), keyFile: path.join(bootstrapDir, 'tls.key') };
      await writeFile(files.certFile, current.certPem, { mode: 0o600 });
      await writeFile(files.keyFile, current.keyPem, { mode: 0o600 });
    }
    server = await startInjectorServer(
      files,
      config.listen,
      { config, ...controller.lookups, ...lookups, log },
      log,
    );
  } catch (err) {
    await stopController();
    if (bootstrapDir) await rm(bootstrapDir, { recursive: true, force: true });
    throw err;
  }
  const running = server;
  const stopCollecting = collectWhenIdle({ activity: () => running.requestsBegun(), gc: globalThis.gc, log });
  const unsubscribe = bootstrapDir ? controller.onCertificate((certificate) => running.setCertificate(certificate.certPem, certificate.keyPem)) : () => undefined;
  log.info(
    { port: server.port, namespace: config.namespace, mode: config.sidecarMode, image: config.sidecarImage, certificate: bootstrapDir ? 'controller' : 'files' },
    'chaperone injector serving',
  );
  return {
    port: server.port,
    stop: async () => {
      stopCollecting();
      unsubscribe();
      await running.close();
      await stopController();
      if (bootstrapDir) await rm(bootstrapDir, { recursive: true, force: true });
    },
  };
}
