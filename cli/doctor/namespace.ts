// Is the namespace one the injector injects and provisions: it exists, it is not a namespace the
// injector never touches, it carries the label, and it matches the installation's selector.
import { INJECT_LABEL } from '../../injector/names.js';
import { SYSTEM_NAMESPACES } from '../../injector/review.js';
import type { DoctorFacts } from './facts.js';
import { fail, ok, warn, type Finding } from './findings.js';

export function namespaceFindings(facts: DoctorFacts): Finding[] {
  const name = facts.namespaceName;
  const { namespace, installation } = facts;
  if (namespace.state === 'absent') {
    return [fail('namespace/exists', `namespace ${name} does not exist`, 'check the name (kubectl get namespaces) and the context (--context)')];
  }
  if (namespace.state === 'unreadable') {
    return [warn('namespace/exists', `cannot read namespace ${name}: ${namespace.reason}`, 'run chaperone doctor as someone who may get namespaces')];
  }
  const findings: Finding[] = [];
  const label = namespace.value.metadata?.labels?.[INJECT_LABEL];
  const relabel = `kubectl label namespace ${name} ${INJECT_LABEL}=enabled${label === undefined ? '' : ' --overwrite'}`;
  if (SYSTEM_NAMESPACES.includes(name) || name === installation.namespace) {
    const what = name === installation.namespace ? "the injector's own namespace" : 'a system namespace';
    findings.push(fail('namespace/label', `${name} is ${what}: pods there are never injected, whatever its labels`, 'run the dashboard in a namespace of its own'));
  } else if (label === 'enabled') {
    findings.push(ok('namespace/label', `${name} is labelled ${INJECT_LABEL}=enabled`));
  } else {
    const has = label === undefined ? 'has no label' : `is labelled ${INJECT_LABEL}=${label}, not`;
    findings.push(fail('namespace/label', `${name} ${has} ${INJECT_LABEL}=enabled: pods created there get no sidecar`, relabel));
  }
  const selector = installation.provisionSelector;
  const matches = facts.inProvisionSelector;
  if (selector !== undefined && matches !== undefined) {
    const check = 'namespace/provision-selector';
    if (matches.state === 'found' && matches.value) findings.push(ok(check, `${name} matches the injector's provision selector ${selector}`));
    else if (matches.state === 'found' || matches.state === 'absent') {
      findings.push(fail(check, `this injector provisions only namespaces that also match ${selector}; ${name} does not`, `label ${name} to match ${selector} (kubectl label namespace ${name} ...)`));
    } else findings.push(warn(check, `cannot tell whether ${name} matches the provision selector ${selector}: ${matches.reason}`, 'run chaperone doctor as someone who may list namespaces'));
  }
  return findings;
}
