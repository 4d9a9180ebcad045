// The one place that reports how a namespace's sidecars impersonate: the impersonation mode
// (constrained or classic) and the access policy, from the CA ConfigMap's access-policy.json, which
// the injector writes (lib/access-policy.ts). An older injector writes none: the mode is unknown.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { describePolicy, parsePolicy } from '../../lib/access-policy.js';
import { ACCESS_POLICY_KEY } from '../../injector/provision/names.js';
import { fail, ok, type Finding } from './findings.js';

const CHECK = 'provisioning/impersonation-mode';

export function impersonationModeFinding(configMap: V1ConfigMap): Finding {
  const text = configMap.data?.[ACCESS_POLICY_KEY];
  if (text === undefined) return ok(CHECK, `impersonation mode: unknown (no ${ACCESS_POLICY_KEY})`);
  try {
    return ok(CHECK, describePolicy(parsePolicy(text, `ConfigMap ${configMap.metadata?.name ?? ''} key ${ACCESS_POLICY_KEY}`)));
  } catch (err) {
    return fail(CHECK, (err as Error).message, `the injector writes ${ACCESS_POLICY_KEY}: its log says why this one is wrong (often a bad chaperone.dev/access annotation on the namespace)`);
  }
}
