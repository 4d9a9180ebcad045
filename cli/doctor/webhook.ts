// The MutatingWebhookConfiguration, judged as the API server uses it: is there a webhook for pod
// creation, would its selectors send this namespace's (and this pod's) creations to the injector,
// can the API server verify the injector (caBundle), and is there an injector to call. From a laptop
// the injector itself cannot be reached: what the API server would reach is checked instead.
import type { V1MutatingWebhook, V1RuleWithOperations } from '@kubernetes/client-node';
import { INJECT_LABEL } from '../../injector/names.js';
import { judgeBundle } from './certificates.js';
import type { DoctorFacts, Installation } from './facts.js';
import { fail, ok, warn, type Finding } from './findings.js';
import { describeSelector, selects } from './selectors.js';

const any = (list: string[] | undefined, value: string) => (list ?? []).some((item) => item === '*' || item === value);

function coversPodCreate(rule: V1RuleWithOperations): boolean {
  const scope = rule.scope ?? '*';
  return any(rule.apiGroups, '') && any(rule.apiVersions, 'v1') && any(rule.operations, 'CREATE') && any(rule.resources, 'pods') && (scope === '*' || scope === 'Namespaced');
}

export function interceptsPodCreate(webhook: V1MutatingWebhook): boolean {
  return (webhook.rules ?? []).some(coversPodCreate);
}

function caBundleFix(installation: Installation): string {
  return installation.certificates === 'cert-manager'
    ? "cert-manager's cainjector sets it: check that it runs and that the annotation cert-manager.io/inject-ca-from names the injector's Certificate"
    : `the injector's leader sets it within seconds: is one running (kubectl -n ${installation.namespace} get lease), and is this the configuration it keeps (its --webhook-configuration)?`;
}

function caBundleFinding(webhook: V1MutatingWebhook, facts: DoctorFacts): Finding {
  const check = 'webhook/ca-bundle';
  const encoded = webhook.clientConfig.caBundle;
  if (!encoded) return fail(check, `webhook ${webhook.name} has no caBundle: the API server cannot verify the injector, so pod creation fails`, caBundleFix(facts.installation));
  const verdict = judgeBundle(Buffer.from(encoded, 'base64').toString('utf8'), facts.now);
  if (!verdict.usable) return fail(check, `the caBundle of webhook ${webhook.name} ${verdict.problem}`, caBundleFix(facts.installation));
  return ok(check, `the caBundle of webhook ${webhook.name}: ${verdict.summary}`);
}

function endpointFinding(webhook: V1MutatingWebhook, facts: DoctorFacts): Finding {
  const check = 'webhook/endpoint';
  const { url, service: ref } = webhook.clientConfig;
  if (!ref) {
    return warn(check, `webhook ${webhook.name} calls ${url ?? 'nothing'} directly: chaperone doctor cannot check from here that the API server reaches it`, 'check it from where the API server runs: with failurePolicy Fail, an injector it cannot reach means no pod is created');
  }
  const where = `Service ${ref.namespace}/${ref.name}`;
  const target = facts.webhookServices.find((s) => s.namespace === ref.namespace && s.name === ref.name);
  const port = ref.port ?? 443;
  const serviceProblem = webhookServiceProblem(webhook.name, where, port, target);
  if (serviceProblem) return serviceProblem;
  const ready = target!.readyEndpoints;
  if (ready.state !== 'found') return warn(check, `cannot list the endpoints of ${where}: ${ready.state === 'unreadable' ? ready.reason : 'none'}`, 'run chaperone doctor as someone who may list endpointslices there');
  if (ready.value === 0) {
    return fail(check, `${where} has no ready endpoint: no injector pod is ready, so pod creation in labelled namespaces fails`, `kubectl -n ${ref.namespace} get pods, and kubectl -n ${ref.namespace} describe pods: the injector's log and events say why`);
  }
  return ok(check, `webhook ${webhook.name} calls ${where} port ${port}, which has ${ready.value} ready endpoint(s)`);
}

const MANIFESTS = "apply the injector's manifests (manifests/base)";

/** What keeps the webhook's Service from being called: unreadable, absent, or without the port; undefined when none. */
function webhookServiceProblem(webhook: string, where: string, port: number, target: DoctorFacts['webhookServices'][number] | undefined): Finding | undefined {
  const check = 'webhook/endpoint';
  if (!target || target.service.state === 'unreadable') {
    return warn(check, `cannot read the ${where} that webhook ${webhook} calls${target?.service.state === 'unreadable' ? `: ${target.service.reason}` : ''}`, 'run chaperone doctor as someone who may get services and list endpointslices there');
  }
  if (target.service.state === 'absent') return fail(check, `the ${where} that webhook ${webhook} calls does not exist`, MANIFESTS);
  if (!(target.service.value.spec?.ports ?? []).some((p) => p.port === port)) return fail(check, `${where} has no port ${port}, which webhook ${webhook} calls`, MANIFESTS);
  return undefined;
}

function failurePolicyFinding(webhook: V1MutatingWebhook): Finding {
  const check = 'webhook/failure-policy';
  if ((webhook.failurePolicy ?? 'Fail') === 'Fail') return ok(check, `webhook ${webhook.name} has failurePolicy Fail: no pod starts without its sidecar`);
  return warn(check, `webhook ${webhook.name} has failurePolicy ${webhook.failurePolicy}: while the injector cannot be reached, pods are created without the sidecar`, 'set failurePolicy: Fail, as manifests/base does');
}

function selectorFindings(webhooks: V1MutatingWebhook[], facts: DoctorFacts): { findings: Finding[]; selected: V1MutatingWebhook[] } {
  if (facts.namespace.state !== 'found') return { findings: [], selected: webhooks };
  const namespace = facts.namespaceName;
  const namespaceLabels = facts.namespace.value.metadata?.labels ?? {};
  const selected = webhooks.filter((w) => selects(w.namespaceSelector, namespaceLabels));
  if (selected.length === 0) {
    const selectors = webhooks.map((w) => describeSelector(w.namespaceSelector)).join('; ');
    return {
      findings: [fail('webhook/namespace-selector', `no webhook of ${facts.installation.webhookConfiguration} selects namespace ${namespace}: the namespaceSelector is ${selectors}`, `give ${namespace} labels that match (kubectl label namespace ${namespace} ...)`)],
      selected: [],
    };
  }
  const namespaceFinding = ok('webhook/namespace-selector', `webhook ${selected.map((w) => w.name).join(', ')} selects namespace ${namespace}`);
  const forPod = objectSelectorFindings(selected, facts);
  return { findings: [namespaceFinding, ...forPod.findings], selected: forPod.selected };
}

/** Which of the selected webhooks the pod's labels let through, when there is a pod to judge. */
function objectSelectorFindings(selected: V1MutatingWebhook[], facts: DoctorFacts): { findings: Finding[]; selected: V1MutatingWebhook[] } {
  const pod = facts.pod?.pod;
  if (pod?.state !== 'found') return { findings: [], selected };
  const labels = pod.value.metadata?.labels ?? {};
  const forPod = selected.filter((w) => selects(w.objectSelector, labels));
  const name = facts.pod!.name;
  if (forPod.length === 0) {
    const optedOut = labels[INJECT_LABEL] === 'disabled';
    const fix = optedOut ? `remove the label ${INJECT_LABEL}=disabled from the pod's template, then recreate the pod` : "change the pod's labels (its template's) to match, then recreate the pod";
    return { findings: [fail('webhook/object-selector', `pod ${name}'s labels keep it from the webhook: the objectSelector is ${selected.map((w) => describeSelector(w.objectSelector)).join('; ')}`, fix)], selected: [] };
  }
  return { findings: [ok('webhook/object-selector', `webhook ${forPod.map((w) => w.name).join(', ')} selects pod ${name}`)], selected: forPod };
}

export function webhookFindings(facts: DoctorFacts): Finding[] {
  const check = 'webhook/configuration';
  const name = facts.installation.webhookConfiguration;
  const { webhook } = facts;
  if (webhook.state === 'absent') {
    return [fail(check, `MutatingWebhookConfiguration ${name} does not exist: no pod gets a sidecar`, "apply the injector's manifests (manifests/base), or name the configuration in --injector-config (webhookConfiguration)")];
  }
  if (webhook.state === 'unreadable') return [warn(check, `cannot read MutatingWebhookConfiguration ${name}: ${webhook.reason}`, 'run chaperone doctor as someone who may get mutatingwebhookconfigurations')];
  const podWebhooks = (webhook.value.webhooks ?? []).filter(interceptsPodCreate);
  if (podWebhooks.length === 0) {
    return [fail(check, `MutatingWebhookConfiguration ${name} has no webhook for pod creation (CREATE pods, v1)`, 'apply manifests/base/mutatingwebhookconfiguration.yaml again')];
  }
  const { findings, selected } = selectorFindings(podWebhooks, facts);
  return [
    ok(check, `MutatingWebhookConfiguration ${name} has ${podWebhooks.length} webhook(s) for pod creation`),
    ...findings,
    ...(selected.length > 0 ? selected : podWebhooks).flatMap((w) => [caBundleFinding(w, facts), endpointFinding(w, facts), failurePolicyFinding(w)]),
  ];
}
