// Is the namespace one the injector injects and provisions: it exists, it is not a namespace the
// injector never touches (and if it is labelled anyway, that the injector refused the label and left no
// scoped account there), it carries the label, and it matches the installation's selector.
import type { V1Namespace } from '@kubernetes/client-node';
import { INJECT_LABEL } from '../../injector/names.js';
import { neverInjected } from '../../injector/namespaces.js';
import type { DoctorFacts } from './facts.js';
import { fail, ok, warn, type Finding } from './findings.js';

const POD_SECURITY_LABEL = 'pod-security.kubernetes.io/enforce';

/**
 * Pod Security baseline (or restricted) keeps hostPath volumes and privileged pods out of the
 * namespace: either reads every token the kubelet keeps on the node, the sidecar's among them.
 */
function podSecurityFinding(name: string, level: string | undefined): Finding {
  const check = 'namespace/pod-security';
  if (level === 'baseline' || level === 'restricted') return ok(check, `${name} enforces Pod Security ${level}: no pod there may mount the node's disk or run privileged`);
  return warn(
    check,
    `${name} does not enforce Pod Security baseline (${POD_SECURITY_LABEL} is ${level ?? 'not set'}): a pod there with a hostPath volume, or privileged, could read the sidecar's token from the node, unless the cluster enforces baseline by default`,
    `kubectl label namespace ${name} ${POD_SECURITY_LABEL}=baseline --overwrite (docs/operations.md, "What operators must also do")`,
  );
}

/** A namespace chaperone never provisions, labelled all the same: what the injector said, and what it left. */
function refusedLabelFindings(facts: DoctorFacts, what: string): Finding[] {
  const name = facts.namespaceName;
  const unlabel = `kubectl label namespace ${name} ${INJECT_LABEL}-`;
  const findings: Finding[] = [];
  const { refusals } = facts;
  const check = 'namespace/refused-label';
  if (refusals?.state === 'found' && refusals.value.length > 0) {
    const last = refusals.value.reduce((a, b) => ((a.lastTimestamp ?? a.eventTime ?? 0) >= (b.lastTimestamp ?? b.eventTime ?? 0) ? a : b));
    const at = last.lastTimestamp ? ` (${new Date(last.lastTimestamp).toISOString()})` : '';
    findings.push(warn(check, `the injector refused the label: ${last.message ?? ''}${at}`, unlabel));
  } else if (refusals?.state === 'unreadable') {
    findings.push(warn(check, `cannot read the injector's events about ${name}: ${refusals.reason}`, 'run chaperone doctor as someone who may list events in default'));
  } else {
    findings.push(
      warn(
        check,
        `no event of the injector about ${name} (${what}) was found: it refuses such a label with a Warning event within seconds, and events expire after an hour`,
        `${unlabel}; if the injector is running and says nothing, its leader's log does`,
      ),
    );
  }
  if (facts.serviceAccount.state === 'found') {
    findings.push(
      fail(
        'namespace/scoped-account',
        `ServiceAccount ${facts.installation.serviceAccount} exists in ${name}, where chaperone never provisions: the shipped policies keep its token from every pod and request, but it should not be there`,
        `the injector removes its own within seconds of the refusal; delete any other: kubectl -n ${name} delete serviceaccount ${facts.installation.serviceAccount}`,
      ),
    );
  }
  return findings;
}

export function namespaceFindings(facts: DoctorFacts): Finding[] {
  const name = facts.namespaceName;
  const { namespace } = facts;
  if (namespace.state === 'absent') {
    return [fail('namespace/exists', `namespace ${name} does not exist`, 'check the name (kubectl get namespaces) and the context (--context)')];
  }
  if (namespace.state === 'unreadable') {
    return [warn('namespace/exists', `cannot read namespace ${name}: ${namespace.reason}`, 'run chaperone doctor as someone who may get namespaces')];
  }
  return [...labelFindings(facts, namespace.value), ...provisionSelectorFindings(facts)];
}

function labelFindings(facts: DoctorFacts, namespace: V1Namespace): Finding[] {
  const name = facts.namespaceName;
  const label = namespace.metadata?.labels?.[INJECT_LABEL];
  const never = neverInjected(name, facts.installation.namespace);
  if (never) return neverInjectedFindings(facts, never, label === 'enabled');
  if (label === 'enabled') return [ok('namespace/label', `${name} is labelled ${INJECT_LABEL}=enabled`), podSecurityFinding(name, namespace.metadata?.labels?.[POD_SECURITY_LABEL])];
  const has = label === undefined ? 'has no label' : `is labelled ${INJECT_LABEL}=${label}, not`;
  const relabel = `kubectl label namespace ${name} ${INJECT_LABEL}=enabled${label === undefined ? '' : ' --overwrite'}`;
  return [fail('namespace/label', `${name} ${has} ${INJECT_LABEL}=enabled: pods created there get no sidecar`, relabel)];
}

function neverInjectedFindings(facts: DoctorFacts, never: string, labelled: boolean): Finding[] {
  const name = facts.namespaceName;
  const message = `${name} is ${never}: pods there are never injected, whatever its labels${labelled ? `; it is labelled ${INJECT_LABEL}=enabled, but chaperone never provisions or injects it` : ''}`;
  const fix = labelled ? `kubectl label namespace ${name} ${INJECT_LABEL}-, and run the dashboard in a namespace of its own` : 'run the dashboard in a namespace of its own';
  return [fail('namespace/label', message, fix), ...(labelled ? refusedLabelFindings(facts, never) : [])];
}

function provisionSelectorFindings(facts: DoctorFacts): Finding[] {
  const name = facts.namespaceName;
  const selector = facts.installation.provisionSelector;
  const matches = facts.inProvisionSelector;
  if (selector === undefined || matches === undefined) return [];
  const check = 'namespace/provision-selector';
  if (matches.state === 'found' && matches.value) return [ok(check, `${name} matches the injector's provision selector ${selector}`)];
  if (matches.state === 'found' || matches.state === 'absent') {
    return [fail(check, `this injector provisions only namespaces that also match ${selector}; ${name} does not`, `label ${name} to match ${selector} (kubectl label namespace ${name} ...)`)];
  }
  return [warn(check, `cannot tell whether ${name} matches the provision selector ${selector}: ${matches.reason}`, 'run chaperone doctor as someone who may list namespaces')];
}
