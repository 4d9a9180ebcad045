// The installation configuration's Secret (--sidecar-config, or the Namespace's
// chaperone.dev/sidecar-config): how the sidecars authenticate people, in the injector's namespace,
// where only cluster administrators and the injector can write. Before a pod gets it, the injector
// reads it and loads it exactly as that pod's sidecar would, with that pod's arguments, so that a bad
// configuration is a denial naming the field, not a sidecar that never becomes ready.
import { tmpdir } from 'node:os';
import { checkInstallation, secretFromObject, type InstallationCheck, type InstallationSecret, type SecretObject } from '../lib/sidecar-config/installation.js';
import { Denial } from './denial.js';
import { annotationOf } from './names.js';
import { sidecarArgs } from './proxy.js';
import type { InjectionSettings } from './settings.js';
import { flagName } from '../lib/config.js';

/** The Secret of that name in the injector's namespace, undefined when there is none. */
export type InstallationConfigs = (name: string) => Promise<InstallationSecret | undefined>;

/** The installation configurations from the Secrets as read (a cache of them: admission-cache.ts). */
export function installationConfigsFrom(read: (name: string) => Promise<SecretObject | undefined>): InstallationConfigs {
  return async (name) => {
    const object = await read(name);
    return object ? secretFromObject(object) : undefined;
  };
}

const MAX_REMEMBERED = 64;
/** Verdicts by Secret version and arguments: a version does not change, and loading costs a few milliseconds. */
const verdicts = new Map<string, InstallationCheck>();

async function check(argv: string[], ref: string, secret: InstallationSecret): Promise<InstallationCheck> {
  const key = `${ref}@${secret.resourceVersion}\n${argv.join('\n')}`;
  let verdict = verdicts.get(key);
  if (!verdict) {
    verdict = await checkInstallation(argv, ref, secret, tmpdir());
    if (verdicts.size >= MAX_REMEMBERED) verdicts.delete(verdicts.keys().next().value!);
    verdicts.set(key, verdict);
  }
  return verdict;
}

/**
 * The settings with each installation configuration, by the settings object they were made from and
 * the configuration's reference: the same object again while the Secret keeps its version, so that
 * what the mutation adds is made once for them too (mutate.ts). Only the latest version is kept.
 */
interface Remembered {
  version: string;
  settings: InjectionSettings;
}
const withConfigs = new WeakMap<InjectionSettings, Map<string, Remembered>>();

/** The settings with the configuration once it loads as the sidecar would load it; a refusal names it. */
async function withCheckedConfig(settings: InjectionSettings, ref: string, secret: InstallationSecret, named: string): Promise<InjectionSettings> {
  const byRef = withConfigs.get(settings);
  const known = byRef?.get(ref);
  if (known?.version === secret.resourceVersion) return known.settings;
  const resolved = { ...settings, installationConfig: ref };
  const { config, problems } = await check(sidecarArgs(resolved), ref, secret);
  if (!config) {
    throw new Denial('BadRequest', `chaperone cannot inject this pod: its sidecar would refuse the installation configuration (${named}): ${problems.join('; ')}`);
  }
  // The listener is the pod's for its life: passed as a flag, so that a later version cannot move it from the port the pod declares.
  const withListener = Object.freeze(config.extraListen === undefined ? resolved : { ...resolved, extraListen: config.extraListen });
  const remembered = byRef ?? new Map<string, Remembered>();
  remembered.set(ref, { version: secret.resourceVersion, settings: withListener });
  withConfigs.set(settings, remembered);
  return withListener;
}

/**
 * The settings with the installation configuration this pod's sidecar reads, once it is found and
 * valid for it. namedByNamespace: the Namespace's annotation chose it (then it must exist); the
 * injector's default may be absent (the sidecars then use the injector's flags alone).
 */
export async function withInstallationConfig(
  settings: InjectionSettings,
  injectorNamespace: string,
  namedByNamespace: boolean,
  configs: InstallationConfigs,
): Promise<InjectionSettings> {
  const name = settings.sidecarConfig;
  const ref = `${injectorNamespace}/${name}`;
  const named = namedByNamespace ? `the namespace's ${annotationOf('sidecar-config')}` : `the injector's ${flagName('sidecarConfig')}`;
  let secret: InstallationSecret | undefined;
  try {
    secret = await configs(name);
  } catch (err) {
    throw new Denial('InternalError', `chaperone cannot read the installation configuration ${ref} (${named}): ${(err as Error).message}`);
  }
  if (!secret) {
    if (!namedByNamespace) return settings;
    throw new Denial('BadRequest', `chaperone cannot inject this pod: ${named} names the installation configuration ${ref}, which does not exist: cluster administrators create it (docs/authentication.md) or correct the annotation`);
  }
  return withCheckedConfig(settings, ref, secret, named);
}
