// The doctor's pure core: facts in, findings out. A healthy namespace and pod pass every check; each
// row of the tables breaks one thing and names the finding, its status, its words and its fix.
import assert from 'node:assert/strict';
import type { V1LabelSelector } from '@kubernetes/client-node';
import { accessQuestions } from '../../../cli/doctor/access.js';
import { diagnose } from '../../../cli/doctor/diagnose.js';
import { absent, found, unreadable, type DoctorFacts } from '../../../cli/doctor/facts.js';
import { exitCode, renderJson, renderText, report, type Status } from '../../../cli/doctor/findings.js';
import { describeSelector, selects } from '../../../cli/doctor/selectors.js';
import { cas, constrainedAnswers, findingOf, healthyFacts, injectedPod, NAMESPACE, POD, servingCertificate, sidecarStatus, tlsData } from './doctor/fixture.js';

interface Expected {
  check: string;
  status: Status;
  message?: RegExp;
  fix?: RegExp | string;
}

interface Case {
  name: string;
  change: (facts: DoctorFacts) => void;
  expect: Expected[];
  /** Checks that are not made at all, since what they judge is not there. */
  without?: string[];
}

function present<T>(observed: { state: string; value?: T }): T {
  if (observed.state !== 'found') throw new Error('the healthy fixture has every object');
  return observed.value!;
}

function runTable(cases: Case[]): void {
  for (const c of cases) {
    it(c.name, function () {
      const facts = healthyFacts();
      c.change(facts);
      const findings = diagnose(facts);
      for (const expected of c.expect) {
        const finding = findingOf(findings, expected.check);
        assert.equal(finding.status, expected.status, `${expected.check}: ${finding.message}`);
        if (expected.message) assert.match(finding.message, expected.message);
        if (typeof expected.fix === 'string') assert.equal(finding.fix, expected.fix);
        else if (expected.fix) assert.match(finding.fix ?? '', expected.fix);
        if (finding.status !== 'ok') assert.ok(finding.fix, `${finding.check} is ${finding.status} without a fix`);
      }
      for (const check of c.without ?? []) assert.equal(findings.find((f) => f.check === check), undefined, `${check} is not judged`);
    });
  }
}

const SA = `system:serviceaccount:${NAMESPACE}:chaperone-impersonator`;

describe('chaperone doctor (the pure core)', function () {
  this.timeout(30_000);

  it('passes every check of a healthy namespace and pod', function () {
    const findings = diagnose(healthyFacts());
    assert.deepEqual(findings.filter((f) => f.status !== 'ok'), []);
    assert.deepEqual(findings.map((f) => f.check), [
      'namespace/label',
      'namespace/pod-security',
      'provisioning/service-account',
      'provisioning/serving-ca',
      'provisioning/identity-ca',
      'provisioning/impersonation-mode',
      'provisioning/serving-secret',
      'provisioning/injector-readiness',
      'sign-in/installation-config',
      'webhook/configuration',
      'webhook/namespace-selector',
      'webhook/object-selector',
      'webhook/ca-bundle',
      'webhook/endpoint',
      'webhook/failure-policy',
      'rbac/subjectaccessreviews',
      'rbac/impersonate',
      'rbac/least-privilege',
      'pod/sidecar',
      'pod/status',
      'pod/service-account',
      'pod/dashboard-token',
      'pod/sidecar-ready',
    ]);
  });

  describe('the namespace', function () {
    runTable([
      {
        name: 'a namespace without the label fails, with the command that labels it',
        change: (f) => delete present(f.namespace).metadata!.labels!['chaperone.dev/inject'],
        expect: [
          { check: 'namespace/label', status: 'fail', message: /^team-a has no label chaperone.dev\/inject=enabled: pods created there get no sidecar$/, fix: 'kubectl label namespace team-a chaperone.dev/inject=enabled' },
          { check: 'webhook/namespace-selector', status: 'fail', message: /no webhook of chaperone-injector selects namespace team-a: the namespaceSelector is chaperone.dev\/inject in \(enabled\)/ },
        ],
      },
      {
        name: 'a label with another value fails, and the fix overwrites it',
        change: (f) => (present(f.namespace).metadata!.labels!['chaperone.dev/inject'] = 'true'),
        expect: [{ check: 'namespace/label', status: 'fail', message: /is labelled chaperone.dev\/inject=true, not chaperone.dev\/inject=enabled/, fix: 'kubectl label namespace team-a chaperone.dev/inject=enabled --overwrite' }],
      },
      {
        name: 'kube-system is never injected, whatever its labels',
        change: (f) => {
          f.namespaceName = 'kube-system';
          present(f.namespace).metadata!.labels!['kubernetes.io/metadata.name'] = 'kube-system';
        },
        expect: [
          { check: 'namespace/label', status: 'fail', message: /kube-system is a system namespace: pods there are never injected/ },
          { check: 'webhook/namespace-selector', status: 'fail' },
        ],
      },
      {
        name: 'a labelled namespace that does not enforce Pod Security baseline is warned about, with the label that fixes it',
        change: (f) => delete present(f.namespace).metadata!.labels!['pod-security.kubernetes.io/enforce'],
        expect: [
          { check: 'namespace/pod-security', status: 'warn', message: /team-a does not enforce Pod Security baseline \(pod-security.kubernetes.io\/enforce is not set\): a pod there with a hostPath volume, or privileged, could read the sidecar's token/, fix: /^kubectl label namespace team-a pod-security.kubernetes.io\/enforce=baseline --overwrite/ },
        ],
      },
      {
        name: 'restricted will do as well as baseline; privileged will not',
        change: (f) => (present(f.namespace).metadata!.labels!['pod-security.kubernetes.io/enforce'] = 'privileged'),
        expect: [{ check: 'namespace/pod-security', status: 'warn', message: /enforce is privileged/ }],
      },
      {
        name: 'a labelled kube-system: the label is refused, the injector said so, and no scoped account is left',
        change: (f) => {
          f.namespaceName = 'kube-system';
          f.serviceAccount = absent;
          f.refusals = found([
            { metadata: {}, involvedObject: { kind: 'Namespace', name: 'kube-system' }, reason: 'InjectionRefused', type: 'Warning', message: 'chaperone never provisions kube-system (a system namespace): its label chaperone.dev/inject=enabled is refused', lastTimestamp: new Date('2026-01-01T00:00:00Z') },
          ]);
        },
        expect: [
          { check: 'namespace/label', status: 'fail', message: /kube-system is a system namespace: pods there are never injected, whatever its labels; it is labelled chaperone.dev\/inject=enabled, but chaperone never provisions or injects it/, fix: 'kubectl label namespace kube-system chaperone.dev/inject-, and run the dashboard in a namespace of its own' },
          { check: 'namespace/refused-label', status: 'warn', message: /^the injector refused the label: chaperone never provisions kube-system \(a system namespace\).* \(2026-01-01T00:00:00.000Z\)$/, fix: 'kubectl label namespace kube-system chaperone.dev/inject-' },
        ],
        without: ['namespace/scoped-account'],
      },
      {
        name: 'a labelled kube-system without the injector\'s event, and with a scoped account in it',
        change: (f) => {
          f.namespaceName = 'kube-system';
          f.refusals = found([]);
        },
        expect: [
          { check: 'namespace/refused-label', status: 'warn', message: /no event of the injector about kube-system \(a system namespace\) was found/ },
          { check: 'namespace/scoped-account', status: 'fail', message: /ServiceAccount chaperone-impersonator exists in kube-system, where chaperone never provisions/, fix: /kubectl -n kube-system delete serviceaccount chaperone-impersonator/ },
        ],
      },
      {
        name: "the injector's own namespace is never injected",
        change: (f) => (f.namespaceName = f.installation.namespace),
        expect: [{ check: 'namespace/label', status: 'fail', message: /is the injector's own namespace/ }],
      },
      {
        name: 'a namespace that does not match the provision selector fails',
        change: (f) => {
          f.installation.provisionSelector = 'tenant=blue';
          f.inProvisionSelector = found(false);
        },
        expect: [{ check: 'namespace/provision-selector', status: 'fail', message: /provisions only namespaces that also match tenant=blue; team-a does not/ }],
      },
      {
        name: 'a namespace that matches the provision selector passes',
        change: (f) => {
          f.installation.provisionSelector = 'tenant=blue';
          f.inProvisionSelector = found(true);
        },
        expect: [{ check: 'namespace/provision-selector', status: 'ok' }],
      },
      {
        name: 'a namespace that cannot be read is a warning that says what to ask for',
        change: (f) => (f.namespace = unreadable('forbidden: you need get on namespaces/team-a')),
        expect: [{ check: 'namespace/exists', status: 'warn', message: /cannot read namespace team-a: forbidden: you need get on namespaces\/team-a/ }],
      },
    ]);

    it('a namespace that does not exist is the only finding', function () {
      const facts = healthyFacts();
      facts.namespace = absent;
      const findings = diagnose(facts);
      assert.deepEqual(findings, [{ check: 'namespace/exists', status: 'fail', message: 'namespace team-a does not exist', fix: 'check the name (kubectl get namespaces) and the context (--context)' }]);
    });
  });

  describe('what the injector provisions', function () {
    const injectorFix = /^the injector provisions a labelled namespace within seconds; if it does not, its leader's log says why/;
    runTable([
      {
        name: 'a missing ConfigMap fails, and its keys are not judged',
        change: (f) => (f.configMap = absent),
        expect: [{ check: 'provisioning/ca-configmap', status: 'fail', message: /^ConfigMap chaperone-ca in team-a does not exist$/, fix: injectorFix }],
        without: ['provisioning/serving-ca', 'provisioning/identity-ca', 'provisioning/impersonation-mode'],
      },
      {
        name: 'a ConfigMap the injector did not create fails',
        change: (f) => (present(f.configMap).metadata!.labels = {}),
        expect: [{ check: 'provisioning/ca-configmap', status: 'fail', message: /exists, but the injector in chaperone-system did not create it/, fix: /Objects the injector did not create/ }],
      },
      {
        name: 'a missing CA key fails',
        change: (f) => delete present(f.configMap).data!['identity-ca.crt'],
        expect: [{ check: 'provisioning/identity-ca', status: 'fail', message: /^ConfigMap chaperone-ca key identity-ca.crt is missing$/ }],
      },
      {
        name: 'a bundle that holds no certificate fails',
        change: (f) => (present(f.configMap).data!['serving-ca.crt'] = 'not a certificate'),
        expect: [{ check: 'provisioning/serving-ca', status: 'fail', message: /serving-ca.crt holds no PEM certificate/ }],
      },
      {
        name: 'a bundle of expired CAs fails',
        change: (f) => (present(f.configMap).data!['serving-ca.crt'] = cas.expired.certPem),
        expect: [{ check: 'provisioning/serving-ca', status: 'fail', message: /serving-ca.crt holds only expired certificates \(the last expired / }],
      },
      {
        name: 'a bundle of two CAs (a rotation) passes and says so',
        change: (f) => (present(f.configMap).data!['identity-ca.crt'] = cas.identity.certPem + cas.other.certPem),
        expect: [{ check: 'provisioning/identity-ca', status: 'ok', message: /2 CAs \(a rotation is under way or ending\)/ }],
      },
      {
        name: 'the impersonation mode is unknown without access-policy.json',
        change: (f) => delete present(f.configMap).data!['access-policy.json'],
        expect: [{ check: 'provisioning/impersonation-mode', status: 'ok', message: /^impersonation mode: unknown \(no access-policy.json\)$/ }],
      },
      {
        name: 'the impersonation mode and policy are reported from access-policy.json',
        change: () => undefined,
        expect: [{ check: 'provisioning/impersonation-mode', status: 'ok', message: /^impersonation mode constrained, access dashboard, any group but system:masters$/ }],
      },
      {
        name: 'an access-policy.json that is not JSON fails',
        change: (f) => (present(f.configMap).data!['access-policy.json'] = '{'),
        expect: [{ check: 'provisioning/impersonation-mode', status: 'fail', message: /access-policy.json is not JSON/ }],
      },
      {
        name: 'a missing service account fails',
        change: (f) => (f.serviceAccount = absent),
        expect: [{ check: 'provisioning/service-account', status: 'fail', message: /^ServiceAccount chaperone-impersonator in team-a does not exist$/, fix: injectorFix }],
      },
      {
        name: 'a service account that mounts its token into pods fails',
        change: (f) => delete present(f.serviceAccount).automountServiceAccountToken,
        expect: [{ check: 'provisioning/service-account', status: 'fail', message: /automountServiceAccountToken unset: any pod naming it would get its token/ }],
      },
      {
        name: 'a serving Secret that cannot be read is a warning naming the permission',
        change: (f) => (f.servingSecret = unreadable('forbidden: you need get on secrets/chaperone-serving in team-a')),
        expect: [{ check: 'provisioning/serving-secret', status: 'warn', message: /cannot read Secret chaperone-serving in team-a: forbidden/, fix: /who may get secrets\/chaperone-serving in team-a/ }],
      },
      {
        name: 'an expired serving certificate fails',
        change: (f) => (present(f.servingSecret).data = tlsData(servingCertificate({ notBefore: new Date(Date.now() - 48 * 3600_000), validitySeconds: -3600 }))),
        expect: [{ check: 'provisioning/serving-secret', status: 'fail', message: /holds a certificate that expired at .*: the sidecar cannot serve/, fix: /is an injector leader running\? \(kubectl -n chaperone-system get lease\)/ }],
      },
      {
        name: 'a serving certificate not valid for 127.0.0.1 fails',
        change: (f) => (present(f.servingSecret).data = tlsData(servingCertificate({ ipAddresses: ['10.0.0.1'] }))),
        expect: [{ check: 'provisioning/serving-secret', status: 'fail', message: /not valid for 127.0.0.1, where the dashboard reaches the sidecar/ }],
      },
      {
        name: 'a serving certificate from a CA the dashboard does not trust fails',
        change: (f) => (present(f.servingSecret).data = tlsData(servingCertificate({ ca: cas.other }))),
        expect: [{ check: 'provisioning/serving-secret', status: 'fail', message: /no CA in serving-ca.crt issued: the dashboard would not trust the sidecar/ }],
      },
      {
        name: 'a serving certificate long past its renewal time is a warning',
        change: (f) => (present(f.servingSecret).data = tlsData(servingCertificate({ notBefore: new Date(Date.now() - 29 * 24 * 3600_000), validitySeconds: 24 * 3600 }))),
        expect: [{ check: 'provisioning/serving-secret', status: 'warn', message: /due for renewal since/ }],
      },
      {
        name: "the injector's own readiness check, when it would refuse pods, fails with what is missing",
        change: (f) => (f.readiness = found({ ready: false, missing: ['ClusterRoleBinding chaperone-impersonator:team-a'] })),
        expect: [{ check: 'provisioning/injector-readiness', status: 'fail', message: /^the injector refuses pods in team-a; missing: ClusterRoleBinding chaperone-impersonator:team-a$/ }],
      },
    ]);
  });

  describe('the webhook configuration', function () {
    const webhookOf = (f: DoctorFacts) => present(f.webhook).webhooks![0]!;
    runTable([
      {
        name: 'a missing configuration fails: no pod gets a sidecar',
        change: (f) => (f.webhook = absent),
        expect: [{ check: 'webhook/configuration', status: 'fail', message: /chaperone-injector does not exist: no pod gets a sidecar/ }],
      },
      {
        name: 'a configuration without a webhook for pod creation fails',
        change: (f) => (webhookOf(f).rules = [{ apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['pods'] }]),
        expect: [{ check: 'webhook/configuration', status: 'fail', message: /has no webhook for pod creation/ }],
      },
      {
        name: 'a pod that opted out is kept from the webhook by its objectSelector',
        change: (f) => (f.pod!.pod = found({ ...injectedPod({ 'chaperone.dev/inject': 'disabled' }) })),
        expect: [
          { check: 'webhook/object-selector', status: 'fail', message: /pod dashboard's labels keep it from the webhook: the objectSelector is chaperone.dev\/inject notin \(disabled\)/, fix: /remove the label chaperone.dev\/inject=disabled/ },
        ],
      },
      {
        name: 'a missing caBundle fails, and says the injector sets it',
        change: (f) => delete webhookOf(f).clientConfig.caBundle,
        expect: [{ check: 'webhook/ca-bundle', status: 'fail', message: /has no caBundle: the API server cannot verify the injector/, fix: /the injector's leader sets it within seconds/ }],
      },
      {
        name: 'in cert-manager mode, the fix for a missing caBundle is cainjector',
        change: (f) => {
          f.installation.certificates = 'cert-manager';
          delete webhookOf(f).clientConfig.caBundle;
        },
        expect: [{ check: 'webhook/ca-bundle', status: 'fail', fix: /cert-manager's cainjector sets it/ }],
      },
      {
        name: 'a caBundle that is not PEM fails',
        change: (f) => (webhookOf(f).clientConfig.caBundle = Buffer.from('garbage').toString('base64')),
        expect: [{ check: 'webhook/ca-bundle', status: 'fail', message: /holds no PEM certificate/ }],
      },
      {
        name: 'an expired caBundle fails',
        change: (f) => (webhookOf(f).clientConfig.caBundle = Buffer.from(cas.expired.certPem).toString('base64')),
        expect: [{ check: 'webhook/ca-bundle', status: 'fail', message: /holds only expired certificates/ }],
      },
      {
        name: 'a Service that does not exist fails',
        change: (f) => (f.webhookServices[0]!.service = absent),
        expect: [{ check: 'webhook/endpoint', status: 'fail', message: /Service chaperone-system\/chaperone-injector that webhook inject.chaperone.dev calls does not exist/ }],
      },
      {
        name: 'a Service without the port the webhook calls fails',
        change: (f) => (f.webhookServices[0]!.service = found({ spec: { ports: [{ port: 8443 }] } })),
        expect: [{ check: 'webhook/endpoint', status: 'fail', message: /has no port 443/ }],
      },
      {
        name: 'a Service without ready endpoints fails: no injector is ready',
        change: (f) => (f.webhookServices[0]!.readyEndpoints = found(0)),
        expect: [{ check: 'webhook/endpoint', status: 'fail', message: /has no ready endpoint: no injector pod is ready/, fix: /kubectl -n chaperone-system get pods/ }],
      },
      {
        name: 'a webhook that calls a URL cannot be checked from here: a warning',
        change: (f) => (webhookOf(f).clientConfig = { url: 'https://injector.example.com/mutate', caBundle: webhookOf(f).clientConfig.caBundle! }),
        expect: [{ check: 'webhook/endpoint', status: 'warn', message: /calls https:\/\/injector.example.com\/mutate directly: chaperone doctor cannot check/ }],
      },
      {
        name: 'failurePolicy Ignore is a warning: pods start without their sidecar',
        change: (f) => (webhookOf(f).failurePolicy = 'Ignore'),
        expect: [{ check: 'webhook/failure-policy', status: 'warn', message: /pods are created without the sidecar/ }],
      },
    ]);
  });

  describe("the scoped service account's RBAC (SubjectAccessReviews)", function () {
    runTable([
      {
        name: 'the classic impersonate verb passes too, and says so',
        change: (f) =>
          (f.access = found(Object.fromEntries(accessQuestions(NAMESPACE).map(({ id, attributes }) => [id, (attributes.verb === 'impersonate' && !attributes.name?.startsWith('system:masters')) || id === 'create subjectaccessreviews'])))),
        expect: [
          { check: 'rbac/impersonate', status: 'ok', message: /\(the impersonate verb, classic\)$/ },
          { check: 'rbac/least-privilege', status: 'ok' },
        ],
      },
      {
        name: 'an account that may not ask fails: the sidecar refuses everything',
        change: (f) => (present(f.access)['create subjectaccessreviews'] = false),
        expect: [{ check: 'rbac/subjectaccessreviews', status: 'fail', message: new RegExp(`^${SA} may not create SubjectAccessReviews`) }],
      },
      {
        name: 'an account that may not impersonate uids fails, naming them',
        change: (f) => (present(f.access)['impersonate uids (impersonate:user-info)'] = false),
        expect: [{ check: 'rbac/impersonate', status: 'fail', message: new RegExp(`^${SA} may not impersonate uids: the sidecar cannot act as people$`) }],
      },
      {
        name: 'an account that can get secrets and impersonate system:masters is warned about loudly',
        change: (f) => {
          const answers = present(f.access);
          answers[`get secrets in ${NAMESPACE}`] = true;
          answers['impersonate the group system:masters, which makes whoever holds its token cluster-admin'] = true;
        },
        expect: [
          {
            check: 'rbac/least-privilege',
            status: 'warn',
            message: new RegExp(`^${SA} CAN DO MORE THAN IMPERSONATE AND ASK: it may impersonate the group system:masters, which makes whoever holds its token cluster-admin; get secrets in team-a\\. Whoever steals`),
            fix: /kubectl auth can-i --list --as system:serviceaccount:team-a:chaperone-impersonator -n team-a/,
          },
        ],
      },
      {
        name: 'answers that cannot be had are a warning naming the permission',
        change: (f) => (f.access = unreadable('forbidden: you need create on subjectaccessreviews (authorization.k8s.io)')),
        expect: [{ check: 'rbac/access', status: 'warn', fix: /create subjectaccessreviews/ }],
      },
    ]);

    it('asks each question once, under its own id', function () {
      const ids = accessQuestions(NAMESPACE).map((q) => q.id);
      assert.equal(new Set(ids).size, ids.length);
      assert.deepEqual(Object.keys(constrainedAnswers()).sort(), [...ids].sort());
    });
  });

  describe('the pod', function () {
    const podOf = (f: DoctorFacts) => present(f.pod!.pod);
    runTable([
      {
        name: 'a pod that does not exist fails',
        change: (f) => (f.pod!.pod = absent),
        expect: [{ check: 'pod/exists', status: 'fail', message: /^pod dashboard does not exist in team-a$/ }],
      },
      {
        name: 'a pod that opted out has no sidecar, and says why',
        change: (f) => (f.pod!.pod = found({ metadata: { name: POD, labels: { 'chaperone.dev/inject': 'disabled' } }, spec: { containers: [{ name: 'dashboard' }] } })),
        expect: [{ check: 'pod/sidecar', status: 'fail', message: /it is labelled chaperone.dev\/inject=disabled \(it opted out\)/, fix: /remove the label .* and recreate the pod \(kubectl delete pod dashboard -n team-a/ }],
        without: ['pod/status', 'pod/service-account', 'pod/dashboard-token', 'pod/sidecar-ready'],
      },
      {
        name: 'a pod created before the label has no sidecar: recreate it',
        change: (f) => (f.pod!.pod = found({ metadata: { name: POD }, spec: { containers: [{ name: 'dashboard' }] } })),
        expect: [{ check: 'pod/sidecar', status: 'fail', message: /the injector did not inject it when it was created/, fix: /recreate the pod/ }],
      },
      {
        name: 'a container called chaperone that the injector did not add fails',
        change: (f) => delete podOf(f).metadata!.annotations!['chaperone.dev/status'],
        expect: [{ check: 'pod/status', status: 'fail', message: /no chaperone.dev\/status annotation: the injector did not put it there/ }],
      },
      {
        name: 'a pod that does not run as the scoped account fails',
        change: (f) => (podOf(f).spec!.serviceAccountName = 'default'),
        expect: [{ check: 'pod/service-account', status: 'fail', message: /runs as service account default, not the scoped chaperone-impersonator/ }],
      },
      {
        name: 'a dashboard container that mounts a token fails',
        change: (f) => {
          const spec = podOf(f).spec!;
          spec.volumes!.push({ name: 'stolen', projected: { sources: [{ serviceAccountToken: { path: 'token' } }] } });
          spec.containers[0]!.volumeMounts!.push({ name: 'stolen', mountPath: '/stolen' });
        },
        expect: [{ check: 'pod/dashboard-token', status: 'fail', message: /container dashboard mounts volume stolen, which holds a service-account token/ }],
      },
      {
        name: 'a pod that automounts its service-account token fails',
        change: (f) => (podOf(f).spec!.automountServiceAccountToken = true),
        expect: [{ check: 'pod/dashboard-token', status: 'fail', message: /spec.automountServiceAccountToken is not false/ }],
      },
      {
        name: 'a sidecar in a crash loop fails with its last words and the command for its log',
        change: (f) =>
          (podOf(f).status!.initContainerStatuses = [
            sidecarStatus({
              restartCount: 4,
              state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 1m20s restarting failed container' } },
              lastState: { terminated: { exitCode: 2, reason: 'Error', message: 'invalid configuration: token-file: no such file\n' } },
            }),
          ]),
        expect: [
          {
            check: 'pod/sidecar-ready',
            status: 'fail',
            message: /^the chaperone container is not ready: waiting: CrashLoopBackOff \(back-off 1m20s restarting failed container\); last time: terminated: Error, exit code 2, saying: invalid configuration: token-file: no such file; 4 restart\(s\)$/,
            fix: 'kubectl logs dashboard -n team-a -c chaperone --previous: the sidecar\'s log says why',
          },
        ],
      },
      {
        name: 'a sidecar whose image cannot be pulled fails with the image to check',
        change: (f) => (podOf(f).status!.initContainerStatuses = [sidecarStatus({ state: { waiting: { reason: 'ImagePullBackOff' } } })]),
        expect: [{ check: 'pod/sidecar-ready', status: 'fail', message: /waiting: ImagePullBackOff/, fix: /check the sidecar image/ }],
      },
      {
        name: 'a sidecar running but not ready fails: its /readyz fails',
        change: (f) => (podOf(f).status!.initContainerStatuses = [sidecarStatus({ state: { running: { startedAt: new Date('2030-01-01T00:00:00Z') } } })]),
        expect: [{ check: 'pod/sidecar-ready', status: 'fail', message: /running since 2030-01-01T00:00:00.000Z but not ready: its \/readyz on port 9901 fails/ }],
      },
      {
        name: 'a pod not scheduled yet is a warning, with why',
        change: (f) => (podOf(f).status = { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available' }] }),
        expect: [{ check: 'pod/sidecar-ready', status: 'warn', message: /has not started: the pod is Pending, not scheduled: Unschedulable 0\/3 nodes are available/ }],
      },
    ]);
  });
});

describe('label selectors, as the API server applies them', function () {
  const labels = { 'chaperone.dev/inject': 'enabled', tier: 'web' };
  const cases: [string, V1LabelSelector | undefined, boolean, string][] = [
    ['no selector', undefined, true, '(everything)'],
    ['matchLabels that match', { matchLabels: { tier: 'web' } }, true, 'tier=web'],
    ['matchLabels that differ', { matchLabels: { tier: 'db' } }, false, 'tier=db'],
    ['In', { matchExpressions: [{ key: 'chaperone.dev/inject', operator: 'In', values: ['enabled'] }] }, true, 'chaperone.dev/inject in (enabled)'],
    ['In, label absent', { matchExpressions: [{ key: 'team', operator: 'In', values: ['a'] }] }, false, 'team in (a)'],
    ['NotIn, label absent', { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] }, true, 'team notin (a)'],
    ['NotIn, value listed', { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['web'] }] }, false, 'tier notin (web)'],
    ['Exists', { matchExpressions: [{ key: 'tier', operator: 'Exists' }] }, true, 'tier'],
    ['DoesNotExist', { matchExpressions: [{ key: 'tier', operator: 'DoesNotExist' }] }, false, '!tier'],
    ['an unknown operator', { matchExpressions: [{ key: 'tier', operator: 'Gt', values: ['1'] }] }, false, 'tier gt (1)'],
  ];
  for (const [name, selector, expected, text] of cases) {
    it(`${name}: ${expected ? 'selects' : 'does not select'}, written ${text}`, function () {
      assert.equal(selects(selector, labels), expected);
      assert.equal(describeSelector(selector), text);
    });
  }
});

describe("the doctor's report", function () {
  const findings = [
    { check: 'namespace/label', status: 'ok' as const, message: 'team-a is labelled' },
    { check: 'webhook/endpoint', status: 'warn' as const, message: 'cannot check', fix: 'check it elsewhere' },
    { check: 'pod/sidecar', status: 'fail' as const, message: 'no sidecar', fix: 'recreate the pod' },
  ];

  it('exits 1 when a check fails, 0 when only warnings are left', function () {
    assert.equal(exitCode(report(NAMESPACE, POD, findings)), 1);
    assert.equal(exitCode(report(NAMESPACE, undefined, findings.slice(0, 2))), 0);
  });

  it('prints one line per check, the fix of each problem under it, and a summary', function () {
    assert.equal(
      renderText(report(NAMESPACE, POD, findings)),
      [
        'chaperone doctor: namespace team-a, pod dashboard',
        '',
        'ok    namespace/label   team-a is labelled',
        'warn  webhook/endpoint  cannot check',
        '                        fix: check it elsewhere',
        'fail  pod/sidecar       no sidecar',
        '                        fix: recreate the pod',
        '',
        '1 fail, 1 warn, 1 ok',
        '',
      ].join('\n'),
    );
  });

  it('gives machines the same in JSON', function () {
    assert.deepEqual(JSON.parse(renderJson(report(NAMESPACE, POD, findings))), { namespace: NAMESPACE, pod: POD, findings, summary: { ok: 1, warn: 1, fail: 1 } });
  });
});
