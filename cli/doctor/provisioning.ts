// What the injector provisions in a labelled namespace, judged piece by piece: the scoped service
// account, the CA ConfigMap, the sidecars' serving certificate, and the injector's own verdict (the
// readiness check its webhook makes before admitting a pod).
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import { certificateInfo, isIssuedBy, splitPemCertificates } from '../../lib/pki.js';
import { renewalTime } from '../../injector/certs/ca-set.js';
import { TLS_CERT_KEY, TLS_KEY_KEY } from '../../injector/certs/feed.js';
import { decodeData } from '../../injector/provision/kube.js';
import { IDENTITY_CA_KEY, isOwn, SERVING_CA_KEY } from '../../injector/provision/names.js';
import { PROXY_HOST } from '../../injector/proxy.js';
import { judgeBundle } from './certificates.js';
import type { DoctorFacts, Observed } from './facts.js';
import { fail, ok, warn, type Finding } from './findings.js';
import { impersonationModeFinding } from './impersonation-mode.js';

const WAIT_FOR_INJECTOR = 'the injector provisions a labelled namespace within seconds; if it does not, its leader\'s log says why (docs/operations.md, "Troubleshooting")';
const FOREIGN_FIX = 'delete it and let the injector create its own (docs/operations.md, "Objects the injector did not create")';
/** The injector renews on time; a certificate this far past its renewal time means no leader is doing it. */
const RENEWAL_GRACE_MS = 30 * 60_000;

/** The common cases of an object the injector should have created: absent, unreadable, not its own. */
function provisioned<T extends { metadata?: { labels?: Record<string, string> } }>(
  facts: DoctorFacts,
  { check, what, observed, need }: { check: string; what: string; observed: Observed<T>; need: string },
): { findings: Finding[]; value?: T } {
  const where = `${what} in ${facts.namespaceName}`;
  if (observed.state === 'absent') return { findings: [fail(check, `${where} does not exist`, WAIT_FOR_INJECTOR)] };
  if (observed.state === 'unreadable') return { findings: [warn(check, `cannot read ${where}: ${observed.reason}`, `run chaperone doctor as someone who may ${need}`)] };
  if (!isOwn(observed.value.metadata?.labels, facts.installation.namespace)) {
    return { findings: [fail(check, `${where} exists, but the injector in ${facts.installation.namespace} did not create it and leaves it alone`, FOREIGN_FIX)] };
  }
  return { findings: [], value: observed.value };
}

function serviceAccountFindings(facts: DoctorFacts): Finding[] {
  const { serviceAccount: name } = facts.installation;
  const check = 'provisioning/service-account';
  const { findings, value } = provisioned(facts, { check, what: `ServiceAccount ${name}`, observed: facts.serviceAccount, need: 'get serviceaccounts' });
  if (!value) return findings;
  if (value.automountServiceAccountToken !== false) {
    return [fail(check, `ServiceAccount ${name} has automountServiceAccountToken ${String(value.automountServiceAccountToken ?? 'unset')}: any pod naming it would get its token in every container`, WAIT_FOR_INJECTOR)];
  }
  return [ok(check, `ServiceAccount ${name} exists, and mounts its token into no pod by default`)];
}

function bundleFinding(configMap: V1ConfigMap, { check, key, purpose }: { check: string; key: string; purpose: string }, now: Date): Finding {
  const where = `ConfigMap ${configMap.metadata?.name ?? ''} key ${key}`;
  if (configMap.data?.[key] === undefined) return fail(check, `${where} is missing`, WAIT_FOR_INJECTOR);
  const verdict = judgeBundle(configMap.data[key], now);
  if (!verdict.usable) return fail(check, `${where} ${verdict.problem}`, WAIT_FOR_INJECTOR);
  return ok(check, `${where}: ${verdict.summary} (${purpose})`);
}

function configMapFindings(facts: DoctorFacts): Finding[] {
  const check = 'provisioning/ca-configmap';
  const { findings, value } = provisioned(facts, { check, what: `ConfigMap ${facts.installation.caConfigMap}`, observed: facts.configMap, need: 'get configmaps' });
  if (!value) return findings;
  return [
    bundleFinding(value, { check: 'provisioning/serving-ca', key: SERVING_CA_KEY, purpose: 'what the dashboard trusts' }, facts.now),
    bundleFinding(value, { check: 'provisioning/identity-ca', key: IDENTITY_CA_KEY, purpose: "what the sidecar accepts people's certificates from" }, facts.now),
    impersonationModeFinding(value),
  ];
}

function servingCertificate(secret: V1Secret): { certPem: string; info: ReturnType<typeof certificateInfo> } | { problem: string; fix: string } {
  const data = decodeData(secret.data);
  const certPem = data[TLS_CERT_KEY];
  if (!certPem || !data[TLS_KEY_KEY]) return { problem: `has no ${TLS_CERT_KEY} or ${TLS_KEY_KEY}`, fix: WAIT_FOR_INJECTOR };
  try {
    return { certPem, info: certificateInfo(certPem) };
  } catch {
    return { problem: `has a ${TLS_CERT_KEY} that is not a certificate`, fix: WAIT_FOR_INJECTOR };
  }
}

/** Why the sidecar's serving certificate would not serve, judged against the bundle the dashboard trusts. */
function servingProblem(secret: V1Secret, servingBundle: string | undefined, now: Date, injectorNamespace: string): { problem: string; fix: string; overdue?: true } | { summary: string } {
  const read = servingCertificate(secret);
  if ('problem' in read) return read;
  const { certPem, info } = read;
  const renewal = `is an injector leader running? (kubectl -n ${injectorNamespace} get lease)`;
  if (info.notAfter <= now) return { problem: `holds a certificate that expired at ${info.notAfter.toISOString()}: the sidecar cannot serve`, fix: `the injector renews it; ${renewal}` };
  if (!info.ipAddresses.includes(PROXY_HOST)) return { problem: `holds a certificate not valid for ${PROXY_HOST}, where the dashboard reaches the sidecar`, fix: WAIT_FOR_INJECTOR };
  const trusted = splitPemCertificates(servingBundle ?? '').some((ca) => isIssuedBy(certPem, ca));
  if (servingBundle !== undefined && !trusted) {
    return { problem: `holds a certificate that no CA in ${SERVING_CA_KEY} issued: the dashboard would not trust the sidecar`, fix: WAIT_FOR_INJECTOR };
  }
  const renewAt = renewalTime(certPem);
  if (now.getTime() > renewAt.getTime() + RENEWAL_GRACE_MS) {
    return { problem: `holds a certificate due for renewal since ${renewAt.toISOString()} (it expires ${info.notAfter.toISOString()})`, fix: `the injector renews it; ${renewal}`, overdue: true };
  }
  return { summary: `valid for ${PROXY_HOST} until ${info.notAfter.toISOString()}${servingBundle !== undefined ? `, issued by a CA in ${SERVING_CA_KEY}` : ''}` };
}

function servingSecretFindings(facts: DoctorFacts): Finding[] {
  const check = 'provisioning/serving-secret';
  const name = facts.installation.servingSecret;
  const { findings, value } = provisioned(facts, { check, what: `Secret ${name}`, observed: facts.servingSecret, need: `get secrets/${name} in ${facts.namespaceName}` });
  if (!value) return findings;
  const bundle = facts.configMap.state === 'found' ? facts.configMap.value.data?.[SERVING_CA_KEY] : undefined;
  const verdict = servingProblem(value, bundle, facts.now, facts.installation.namespace);
  if ('summary' in verdict) return [ok(check, `Secret ${name}: the sidecar's serving certificate, ${verdict.summary}`)];
  return [(verdict.overdue ? warn : fail)(check, `Secret ${name} ${verdict.problem}`, verdict.fix)];
}

function readinessFinding(facts: DoctorFacts): Finding {
  const check = 'provisioning/injector-readiness';
  const { readiness } = facts;
  if (readiness.state === 'found' && readiness.value.ready) return ok(check, `the injector admits pods in ${facts.namespaceName}: its readiness check finds everything in place`);
  if (readiness.state === 'found') {
    return fail(check, `the injector refuses pods in ${facts.namespaceName}; missing: ${readiness.value.missing.join('; ')}`, WAIT_FOR_INJECTOR);
  }
  const reason = readiness.state === 'unreadable' ? readiness.reason : 'no answer';
  return warn(check, `cannot make the injector's readiness check: ${reason}`, 'run chaperone doctor as someone who may read what the injector reads (its ClusterRole in manifests/base/injector-rbac.yaml)');
}

export function provisioningFindings(facts: DoctorFacts): Finding[] {
  return [...serviceAccountFindings(facts), ...configMapFindings(facts), ...servingSecretFindings(facts), readinessFinding(facts)];
}
