// The doctor's judgement: the facts read from a cluster in, the findings out, in the order a person
// fixes things (the namespace, what the injector provisions, the webhook, RBAC, the pod).
import { accessFindings } from './access.js';
import type { DoctorFacts } from './facts.js';
import type { Finding } from './findings.js';
import { namespaceFindings } from './namespace.js';
import { podFindings } from './pod.js';
import { provisioningFindings } from './provisioning.js';
import { signInFindings } from './sign-in.js';
import { webhookFindings } from './webhook.js';

export function diagnose(facts: DoctorFacts): Finding[] {
  const namespace = namespaceFindings(facts);
  if (facts.namespace.state === 'absent') return namespace;
  return [...namespace, ...provisioningFindings(facts), ...signInFindings(facts), ...webhookFindings(facts), ...accessFindings(facts), ...podFindings(facts)];
}
