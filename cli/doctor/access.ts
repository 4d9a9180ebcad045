// What the scoped service account may do, asked of the API server (SubjectAccessReview) rather than
// read from bindings: whatever grants it, and whatever the role is called, the answer is the
// authorizer's. It must be able to ask and to impersonate; it should be able to do nothing else.
import type { V1ResourceAttributes } from '@kubernetes/client-node';
import { ORIGINAL_USER_INFO_EXTRA, PRIVILEGED_GROUP } from '../../lib/access-policy.js';
import type { DoctorFacts } from './facts.js';
import { fail, ok, warn, type Finding } from './findings.js';

export interface AccessQuestion {
  id: string;
  attributes: V1ResourceAttributes;
}

/** Something the sidecar impersonates, allowed by the classic verb or by constrained impersonation's (KEP-5284). */
interface Impersonated {
  what: string;
  classic: V1ResourceAttributes;
  constrained: V1ResourceAttributes;
}

const AUTHENTICATION = 'authentication.k8s.io';
const RBAC = 'rbac.authorization.k8s.io';
const CONSTRAINED_VERB = 'impersonate:user-info';

function impersonated(what: string, resource: string, classicGroup: string, more: Partial<V1ResourceAttributes> = {}): Impersonated {
  return {
    what,
    classic: { verb: 'impersonate', group: classicGroup, resource, ...more },
    constrained: { verb: CONSTRAINED_VERB, group: AUTHENTICATION, resource, ...more },
  };
}

const IMPERSONATED: readonly Impersonated[] = [
  impersonated('users', 'users', ''),
  // A group every identity carries: a role that limits the groups still allows it.
  impersonated('groups', 'groups', '', { name: 'system:authenticated' }),
  impersonated('uids', 'uids', AUTHENTICATION),
  impersonated(`the extra ${ORIGINAL_USER_INFO_EXTRA}`, 'userextras', AUTHENTICATION, { subresource: ORIGINAL_USER_INFO_EXTRA }),
];

const ASK: AccessQuestion = { id: 'create subjectaccessreviews', attributes: { verb: 'create', group: 'authorization.k8s.io', resource: 'subjectaccessreviews' } };

/** More than it needs: what a stolen sidecar token must not be good for. */
function excess(namespace: string): AccessQuestion[] {
  return [
    { id: 'do anything at all (cluster-admin)', attributes: { verb: '*', group: '*', resource: '*' } },
    { id: `impersonate the group ${PRIVILEGED_GROUP}, which makes whoever holds its token cluster-admin`, attributes: { verb: 'impersonate', group: '', resource: 'groups', name: PRIVILEGED_GROUP } },
    { id: `get secrets in ${namespace}`, attributes: { verb: 'get', group: '', resource: 'secrets', namespace } },
    { id: 'list secrets in every namespace', attributes: { verb: 'list', group: '', resource: 'secrets' } },
    { id: `create pods in ${namespace}`, attributes: { verb: 'create', group: '', resource: 'pods', namespace } },
    { id: `create service-account tokens in ${namespace}`, attributes: { verb: 'create', group: '', resource: 'serviceaccounts', subresource: 'token', namespace } },
    { id: 'bind any ClusterRole', attributes: { verb: 'bind', group: RBAC, resource: 'clusterroles' } },
    { id: 'escalate ClusterRoles', attributes: { verb: 'escalate', group: RBAC, resource: 'clusterroles' } },
  ];
}

const classicId = (i: Impersonated) => `impersonate ${i.what} (impersonate)`;
const constrainedId = (i: Impersonated) => `impersonate ${i.what} (${CONSTRAINED_VERB})`;

/** Every question doctor asks about the scoped service account. */
export function accessQuestions(namespace: string): AccessQuestion[] {
  return [
    ASK,
    ...IMPERSONATED.flatMap((i) => [
      { id: classicId(i), attributes: i.classic },
      { id: constrainedId(i), attributes: i.constrained },
    ]),
    ...excess(namespace),
  ];
}

/** The service account as the API server authenticates its token: its name and its groups. */
export function serviceAccountUser(namespace: string, name: string): { user: string; groups: string[] } {
  return { user: `system:serviceaccount:${namespace}:${name}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'] };
}

export function accessFindings(facts: DoctorFacts): Finding[] {
  const namespace = facts.namespaceName;
  const account = facts.installation.serviceAccount;
  const { user } = serviceAccountUser(namespace, account);
  const { access } = facts;
  if (access.state !== 'found') {
    const reason = access.state === 'unreadable' ? access.reason : 'no answer';
    return [warn('rbac/access', `cannot ask the API server what ${user} may do: ${reason}`, 'run chaperone doctor as someone who may create subjectaccessreviews (authorization.k8s.io)')];
  }
  const allowed = (id: string) => access.value[id] === true;
  const provision = `the injector grants it when it provisions ${namespace}: see provisioning/injector-readiness, and the injector's log`;
  const findings: Finding[] = [];

  findings.push(
    allowed(ASK.id)
      ? ok('rbac/subjectaccessreviews', `${user} may create SubjectAccessReviews (to ask whether a person may do what they ask)`)
      : fail('rbac/subjectaccessreviews', `${user} may not create SubjectAccessReviews: the sidecar refuses every request`, provision),
  );

  const missing = IMPERSONATED.filter((i) => !allowed(classicId(i)) && !allowed(constrainedId(i)));
  if (missing.length > 0) {
    findings.push(fail('rbac/impersonate', `${user} may not impersonate ${missing.map((i) => i.what).join(', ')}: the sidecar cannot act as people`, provision));
  } else {
    const constrained = IMPERSONATED.every((i) => allowed(constrainedId(i)));
    const how = constrained ? `${CONSTRAINED_VERB}, constrained` : 'the impersonate verb, classic';
    findings.push(ok('rbac/impersonate', `${user} may impersonate ${IMPERSONATED.map((i) => i.what).join(', ')} (${how})`));
  }

  const questions = excess(namespace);
  const extra = questions.filter((q) => allowed(q.id)).map((q) => q.id);
  if (extra.length > 0) {
    findings.push(
      warn(
        'rbac/least-privilege',
        `${user} CAN DO MORE THAN IMPERSONATE AND ASK: it may ${extra.join('; ')}. Whoever steals the sidecar's token can too`,
        `find what grants it (kubectl auth can-i --list --as ${user} -n ${namespace}; kubectl get rolebindings,clusterrolebindings -A -o wide | grep ${account}) and remove every grant but the injector's`,
      ),
    );
  } else {
    findings.push(ok('rbac/least-privilege', `${user} may do none of the ${questions.length} dangerous things checked (secrets, pods, tokens, binding roles, ${PRIVILEGED_GROUP})`));
  }
  return findings;
}
