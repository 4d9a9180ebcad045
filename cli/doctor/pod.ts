// One pod, judged as the injector meant it: the sidecar is there and the injector put it there, the
// pod runs as the scoped service account, no other container can read a real token, and the sidecar
// is ready (and if not, what the kubelet says about why).
import type { V1ContainerState, V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { appContainers, isUnderServiceAccountDir, projectsServiceAccountToken } from '../../injector/mutate.js';
import { INJECT_LABEL, STATUS_ANNOTATION } from '../../injector/names.js';
import { API_ACCESS_VOLUME, SIDECAR_NAME } from '../../injector/proxy.js';
import type { DoctorFacts } from './facts.js';
import { fail, ok, warn, type Finding } from './findings.js';

interface Target {
  namespace: string;
  name: string;
}

function recreate({ name, namespace }: Target): string {
  return `recreate the pod (kubectl delete pod ${name} -n ${namespace}; its controller creates a new one): the injector acts only when a pod is created`;
}

function sidecarFinding(pod: V1Pod, target: Target): Finding {
  const spec = pod.spec!;
  const native = (spec.initContainers ?? []).some((c) => c.name === SIDECAR_NAME);
  if (native || spec.containers.some((c) => c.name === SIDECAR_NAME)) {
    return ok('pod/sidecar', `pod ${target.name} has the ${SIDECAR_NAME} container (${native ? 'a native sidecar' : 'a classic sidecar container'})`);
  }
  if (pod.metadata?.labels?.[INJECT_LABEL] === 'disabled') {
    return fail('pod/sidecar', `pod ${target.name} has no ${SIDECAR_NAME} container: it is labelled ${INJECT_LABEL}=disabled (it opted out)`, `if it should have one, remove the label ${INJECT_LABEL}=disabled from the pod's template and ${recreate(target)}`);
  }
  return fail(
    'pod/sidecar',
    `pod ${target.name} has no ${SIDECAR_NAME} container: the injector did not inject it when it was created (the namespace was not labelled then, or the webhook did not select it)`,
    `fix what the checks above find, then ${recreate(target)}`,
  );
}

function statusFinding(pod: V1Pod, target: Target): Finding {
  const text = pod.metadata?.annotations?.[STATUS_ANNOTATION];
  const fix = `remove the container called ${SIDECAR_NAME} from the pod's template and ${recreate(target)}`;
  if (text === undefined) return fail('pod/status', `pod ${target.name} has a ${SIDECAR_NAME} container but no ${STATUS_ANNOTATION} annotation: the injector did not put it there`, fix);
  let status: { mode?: string; image?: string };
  try {
    status = JSON.parse(text) as { mode?: string; image?: string };
  } catch {
    return fail('pod/status', `pod ${target.name}'s ${STATUS_ANNOTATION} annotation is not JSON: not the injector's`, fix);
  }
  return ok('pod/status', `${STATUS_ANNOTATION}: injected, ${status.mode ?? '?'} sidecar, image ${status.image ?? '?'}`);
}

function serviceAccountFinding(pod: V1Pod, target: Target, scoped: string): Finding {
  const actual = pod.spec!.serviceAccountName ?? 'default';
  if (actual === scoped) return ok('pod/service-account', `pod ${target.name} runs as the scoped service account ${scoped}`);
  return fail('pod/service-account', `pod ${target.name} runs as service account ${actual}, not the scoped ${scoped}: the sidecar's token is not the one that may only impersonate and ask`, recreate(target));
}

function tokenFinding(pod: V1Pod, target: Target): Finding {
  const spec = pod.spec!;
  const tokenVolumes = new Set((spec.volumes ?? []).filter(projectsServiceAccountToken).map((v) => v.name));
  const exposures: string[] = [];
  if (spec.automountServiceAccountToken !== false) exposures.push('spec.automountServiceAccountToken is not false');
  for (const container of appContainers(spec)) {
    for (const mount of container.volumeMounts ?? []) {
      if (tokenVolumes.has(mount.name)) exposures.push(`container ${container.name} mounts volume ${mount.name}, which holds a service-account token`);
      else if (isUnderServiceAccountDir(mount.mountPath) && mount.name !== API_ACCESS_VOLUME) exposures.push(`container ${container.name} mounts volume ${mount.name} at ${mount.mountPath}`);
    }
  }
  if (exposures.length === 0) return ok('pod/dashboard-token', `no container but ${SIDECAR_NAME} can read a service-account token`);
  return fail('pod/dashboard-token', `a container beside the sidecar could hold a real token: ${exposures.join('; ')}`, `remove such mounts from the pod's own spec, then ${recreate(target)}`);
}

function describeTerminated({ reason, exitCode, message }: NonNullable<V1ContainerState['terminated']>): string {
  return `terminated: ${reason ?? 'no reason given'}, exit code ${exitCode}${message ? `, saying: ${message.trim()}` : ''}`;
}

function describeState(state: V1ContainerState | undefined): string {
  const { waiting, terminated, running } = state ?? {};
  if (waiting) return `waiting: ${waiting.reason ?? 'no reason given'}${waiting.message ? ` (${waiting.message})` : ''}`;
  if (terminated) return describeTerminated(terminated);
  if (running) return `running since ${running.startedAt?.toISOString() ?? '?'} but not ready: its /readyz on port 9901 fails`;
  return 'in no known state';
}

const IMAGE_PROBLEMS = ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName'];

function readinessFix(status: V1ContainerStatus, target: Target): string {
  const reason = status.state?.waiting?.reason ?? '';
  if (IMAGE_PROBLEMS.includes(reason)) return "check the sidecar image (the namespace's chaperone.dev/image annotation, or the injector's --sidecar-image) and the pod's image pull secrets";
  if (reason === 'CreateContainerConfigError') return `kubectl describe pod ${target.name} -n ${target.namespace}: something it mounts is missing (see the provisioning checks)`;
  return `kubectl logs ${target.name} -n ${target.namespace} -c ${SIDECAR_NAME}${status.lastState?.terminated ? ' --previous' : ''}: the sidecar's log says why`;
}

function notStartedFinding(pod: V1Pod, target: Target): Finding {
  const unscheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status !== 'True');
  const why = unscheduled ? `, not scheduled: ${unscheduled.reason ?? ''} ${unscheduled.message ?? ''}`.trimEnd() : '';
  return warn('pod/sidecar-ready', `the ${SIDECAR_NAME} container has not started: the pod is ${pod.status?.phase ?? 'Pending'}${why}`, `kubectl describe pod ${target.name} -n ${target.namespace}: its events say why`);
}

function readinessFinding(pod: V1Pod, target: Target): Finding {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  const status = statuses.find((s) => s.name === SIDECAR_NAME);
  if (!status) return notStartedFinding(pod, target);
  if (status.ready) return ok('pod/sidecar-ready', `the ${SIDECAR_NAME} container is ready`);
  const last = status.lastState?.terminated ? `; last time: ${describeState(status.lastState)}` : '';
  const restarts = status.restartCount > 0 ? `; ${status.restartCount} restart(s)` : '';
  return fail('pod/sidecar-ready', `the ${SIDECAR_NAME} container is not ready: ${describeState(status.state)}${last}${restarts}`, readinessFix(status, target));
}

export function podFindings(facts: DoctorFacts): Finding[] {
  if (!facts.pod) return [];
  const target = { namespace: facts.namespaceName, name: facts.pod.name };
  const observed = facts.pod.pod;
  if (observed.state === 'absent') return [fail('pod/exists', `pod ${target.name} does not exist in ${target.namespace}`, `check the name: kubectl get pods -n ${target.namespace}`)];
  if (observed.state === 'unreadable') return [warn('pod/exists', `cannot read pod ${target.name}: ${observed.reason}`, 'run chaperone doctor as someone who may get pods there')];
  const pod = observed.value;
  const sidecar = sidecarFinding(pod, target);
  if (sidecar.status !== 'ok') return [sidecar];
  return [sidecar, statusFinding(pod, target), serviceAccountFinding(pod, target, facts.installation.serviceAccount), tokenFinding(pod, target), readinessFinding(pod, target)];
}
