// How people sign in through the namespace's sidecars: the installation configuration the injector
// gives them (docs/authentication.md), judged as the injector judges it before admitting a pod.
import type { V1Namespace, V1Secret } from '@kubernetes/client-node';
import type { InjectorConfig } from '../../injector/config.js';
import { Denial } from '../../injector/denial.js';
import { withInstallationConfig } from '../../injector/installation-config.js';
import { annotationOf } from '../../injector/names.js';
import { resolveSettings } from '../../injector/settings.js';
import { secretFromObject } from '../../lib/sidecar-config/installation.js';
import type { DoctorFacts, Observed } from './facts.js';
import { fail, ok, warn, type Finding } from './findings.js';

const CHECK = 'sign-in/installation-config';
const GUIDE = 'docs/authentication.md, "Sign-in for injected pods"';

/** The Secret's name for this namespace, and whether the Namespace's annotation chose it. */
export function installationConfigName(config: InjectorConfig, namespace: V1Namespace | undefined): { name: string; namedByNamespace: boolean } {
  const named = namespace?.metadata?.annotations?.[annotationOf('sidecar-config')];
  return named !== undefined ? { name: named, namedByNamespace: true } : { name: config.sidecarConfig, namedByNamespace: false };
}

/** What the injector would find wrong with the Secret for a pod of this namespace (empty: nothing). */
export async function installationConfigProblems(config: InjectorConfig, namespace: V1Namespace, secret: V1Secret): Promise<string[]> {
  const { namedByNamespace } = installationConfigName(config, namespace);
  const source = { name: namespace.metadata!.name!, annotations: namespace.metadata?.annotations ?? {} };
  try {
    const settings = resolveSettings({ ...config, sidecarUpstream: config.sidecarUpstream ?? 'https://kubernetes.default.svc' }, {}, source);
    await withInstallationConfig(settings, config.namespace, namedByNamespace, () => Promise.resolve(secretFromObject(secret)));
    return [];
  } catch (err) {
    if (err instanceof Denial) return [err.message];
    throw err;
  }
}

export interface SignInFacts {
  /** The Secret, in the injector's namespace. */
  name: string;
  namedByNamespace: boolean;
  secret: Observed<V1Secret>;
  /** What the injector would refuse, when the Secret was read. */
  problems?: string[];
}

export function signInFindings(facts: DoctorFacts): Finding[] {
  const signIn = facts.signIn;
  if (!signIn) return [];
  const where = `Secret ${facts.installation.namespace}/${signIn.name}`;
  const chosenBy = signIn.namedByNamespace ? `the namespace's ${annotationOf('sidecar-config')}` : "the injector's --sidecar-config";
  switch (signIn.secret.state) {
    case 'absent':
      return signIn.namedByNamespace
        ? [fail(CHECK, `${chosenBy} names ${where}, which does not exist: the injector refuses every pod here`, `create it (${GUIDE}) or correct the annotation`)]
        : [ok(CHECK, `no installation configuration (${where} does not exist): sidecars sign people in with the injector's flags alone`)];
    case 'unreadable':
      return [warn(CHECK, `cannot read ${where} (${chosenBy}): ${signIn.secret.reason}`, `run chaperone doctor as someone who may get secrets in ${facts.installation.namespace}`)];
    case 'found':
      if ((signIn.problems ?? []).length > 0) {
        return [fail(CHECK, `${where} (${chosenBy}) is refused: ${signIn.problems!.join('; ')}`, `correct it (${GUIDE}); running sidecars keep the version they have, new pods are refused until then`)];
      }
      return [ok(CHECK, `sidecars sign people in as ${where} says (${chosenBy}, resourceVersion ${signIn.secret.value.metadata?.resourceVersion ?? '?'})`)];
  }
}
