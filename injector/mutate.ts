// The heart of the injector, a pure function: a pod in, the injected pod out (or a Denial).
// It is a fixpoint: injecting an injected pod gives the same pod, which makes re-invocation safe.
import type { V1Container, V1EphemeralContainer, V1NodeSelectorTerm, V1Pod, V1PodSpec, V1Volume } from '@kubernetes/client-node';
import { Denial } from './denial.js';
import { serialiseOnce } from './patch.js';
import { listenerPort } from '../lib/sidecar-config/listener.js';
import { ORIGINAL_SERVICE_ACCOUNT_ANNOTATION, PLACEHOLDER_TOKEN_ANNOTATION, STATUS_ANNOTATION } from './names.js';
import {
  API_ACCESS_MOUNT,
  injectedVolumes,
  PLACEHOLDER_TOKEN,
  PROXY_ENV,
  RESERVED_VOLUMES,
  SERVICE_ACCOUNT_DIR,
  SIDECAR_NAME,
  sidecarContainer,
  TOKEN_VOLUME,
  INSTALLATION_VOLUME,
} from './proxy.js';
import type { InjectionSettings } from './settings.js';

const STATUS_VERSION = 1;

/** What chaperone.dev/status records. */
export interface InjectionStatus {
  version: number;
  container: string;
  mode: InjectionSettings['sidecarMode'];
  image: string;
  serviceAccount: string;
  volumes: string[];
  authenticators: string[];
  readOnly: boolean;
}

function statusOf(settings: InjectionSettings, volumes: V1Volume[]): string {
  const recorded: InjectionStatus = {
    version: STATUS_VERSION,
    container: SIDECAR_NAME,
    mode: settings.sidecarMode,
    image: settings.sidecarImage,
    serviceAccount: settings.serviceAccount,
    volumes: volumes.map((volume) => volume.name),
    authenticators: settings.authenticators,
    readOnly: settings.readOnly,
  };
  return JSON.stringify(recorded);
}

export function isUnderServiceAccountDir(mountPath: string): boolean {
  const path = mountPath.replace(/\/+$/, '');
  return path === SERVICE_ACCOUNT_DIR || path.startsWith(`${SERVICE_ACCOUNT_DIR}/`);
}

/** A volume that would hand whoever mounts it a token of the pod's service account: the scoped one. */
export function projectsServiceAccountToken(volume: V1Volume): boolean {
  return (volume.projected?.sources ?? []).some((source) => source.serviceAccountToken !== undefined);
}

/**
 * A volume with a podCertificate source: the kubelet asks the named signer for a certificate of the
 * pod's service account (the scoped one), which a signer of API-client certificates for pod identities
 * makes a credential of that account. The sidecar uses none; no container of such a pod may hold one.
 */
export function projectsPodCertificate(volume: V1Volume): boolean {
  return (volume.projected?.sources ?? []).some((source) => source.podCertificate !== undefined);
}

/**
 * Why a pod that runs as the scoped account may not have this volume, with the rule that says so, or
 * undefined: a podCertificate source, or an inline CSI volume (for a CSIDriver with tokenRequests the
 * kubelet hands the driver tokens of the pod's service account; audience "" is the API server's).
 * Judged when the pod is created (an update cannot add a volume), and in the ephemeral containers
 * added later, which can mount only the volumes the pod has.
 */
export function credentialVolumeViolation(volume: V1Volume): { rule: string; why: string } | undefined {
  if (projectsPodCertificate(volume)) {
    return {
      rule: 'pod-certificate-in-scoped-pod',
      why: `volume ${volume.name}, which projects a podCertificate: the kubelet would get a certificate of the pod's service account, chaperone-impersonator (it can impersonate people), and no container of such a pod may hold one`,
    };
  }
  if (volume.csi) {
    return {
      rule: 'csi-volume-in-scoped-pod',
      why: `volume ${volume.name}, an inline CSI volume (driver ${volume.csi.driver}): for a CSIDriver with tokenRequests the kubelet hands the driver tokens of the pod's service account, chaperone-impersonator (it can impersonate people)`,
    };
  }
  return undefined;
}

export function appContainers(spec: V1PodSpec): V1Container[] {
  return [...(spec.initContainers ?? []), ...spec.containers, ...((spec.ephemeralContainers ?? []) as V1Container[])].filter(
    (container) => container.name !== SIDECAR_NAME,
  );
}

/** Containers that could read the sidecar's token: the ways the issue and DESIGN.md rule out. */
export function refuseUnsafe(spec: V1PodSpec): void {
  const forbid = (why: string): never => {
    throw new Denial('Forbidden', `chaperone refuses this pod: ${why}; the dashboard could read the sidecar's service-account token`);
  };
  if (spec.shareProcessNamespace) forbid('spec.shareProcessNamespace is true');
  if (spec.hostPID) forbid('spec.hostPID is true');
  for (const volume of spec.volumes ?? []) {
    const violation = credentialVolumeViolation(volume);
    if (violation) throw new Denial('Forbidden', `chaperone refuses this pod: chaperone rule ${violation.rule}: the pod runs as the scoped service account and has ${violation.why}`);
  }
  refuseTokenMounts(spec, forbid);
}

function refuseTokenMounts(spec: V1PodSpec, forbid: (why: string) => never): void {
  // TOKEN_VOLUME even when the pod has no such volume yet: a mount of it would be completed by ours.
  const tokenVolumes = new Set([TOKEN_VOLUME, INSTALLATION_VOLUME, ...(spec.volumes ?? []).filter(projectsServiceAccountToken).map((v) => v.name)]);
  for (const container of appContainers(spec)) {
    const mount = (container.volumeMounts ?? []).find((m) => tokenVolumes.has(m.name));
    if (mount) forbid(`container ${container.name} mounts volume ${mount.name}, which holds a service-account token or what the sidecar trusts (the pod runs as the scoped service account)`);
    if ((container as { targetContainerName?: string }).targetContainerName === SIDECAR_NAME) {
      forbid(`ephemeral container ${container.name} targets the ${SIDECAR_NAME} container`);
    }
  }
}

/**
 * Whether a stored pod holds the scoped token: it runs as the scoped account, or carries the sidecar
 * or the injector's status. Read from the stored pod only, never from a patch of it.
 */
export function holdsScopedToken(stored: V1Pod, serviceAccount: string): boolean {
  const spec = stored.spec;
  if (!spec) return false;
  if (spec.serviceAccountName === serviceAccount || spec.serviceAccount === serviceAccount) return true;
  if ([...(spec.initContainers ?? []), ...spec.containers].some((container) => container.name === SIDECAR_NAME)) return true;
  return stored.metadata?.annotations?.[STATUS_ANNOTATION] !== undefined;
}

/** The ephemeral containers a patch adds to the stored pod (they can be added, never changed or removed). */
export function addedEphemeralContainers(stored: V1Pod, patched: V1Pod): V1EphemeralContainer[] {
  const existing = new Set((stored.spec?.ephemeralContainers ?? []).map((container) => container.name));
  return (patched.spec?.ephemeralContainers ?? []).filter((container) => !existing.has(container.name));
}

/** The capabilities Pod Security `baseline` lets a container add (k8s.io/pod-security-admission, capabilities_baseline). */
export const BASELINE_CAPABILITIES = [
  'AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT',
];
/** The SELinux types Pod Security `baseline` allows (seLinuxOptions, 1.31 and later). */
const BASELINE_SELINUX_TYPES = ['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'];
/** The seccomp and AppArmor profile types Pod Security `baseline` allows. */
const CONFINED_PROFILES = ['RuntimeDefault', 'Localhost'];

/**
 * What Pod Security `baseline` refuses in one container, and why, or undefined: a way out of the
 * container onto the node, whose disk holds the scoped token (k8s.io/pod-security-admission's
 * baseline checks that look at a container). hostUsers false (a user namespace) relaxes procMount, as
 * baseline does since 1.35.
 */
export function baselineViolation(container: V1Container | V1EphemeralContainer, podSpec: V1PodSpec): string | undefined {
  for (const check of BASELINE_CHECKS) {
    const violation = check(container.securityContext ?? {}, container, podSpec);
    if (violation) return violation;
  }
  return undefined;
}

type SecurityContext = NonNullable<V1Container['securityContext']>;

/** Pod Security baseline's container checks, in the order their refusals are reported. */
const BASELINE_CHECKS: readonly ((context: SecurityContext, container: V1Container | V1EphemeralContainer, podSpec: V1PodSpec) => string | undefined)[] = [
  (context) => (context.privileged ? 'is privileged' : undefined),
  (context) => {
    const added = (context.capabilities?.add ?? []).filter((capability) => !BASELINE_CAPABILITIES.includes(capability));
    return added.length > 0 ? `adds capabilities ${added.join(', ')}, beyond Pod Security baseline's` : undefined;
  },
  ({ seccompProfile }) => (seccompProfile && !CONFINED_PROFILES.includes(seccompProfile.type) ? `sets seccomp profile ${seccompProfile.type}` : undefined),
  ({ appArmorProfile }) => (appArmorProfile && !CONFINED_PROFILES.includes(appArmorProfile.type) ? `sets AppArmor profile ${appArmorProfile.type}` : undefined),
  ({ seLinuxOptions: selinux }) =>
    selinux && (!BASELINE_SELINUX_TYPES.includes(selinux.type ?? '') || selinux.user || selinux.role)
      ? `sets SELinux options beyond Pod Security baseline's (type ${selinux.type ?? ''}, user ${selinux.user ?? ''}, role ${selinux.role ?? ''})`
      : undefined,
  ({ procMount }, _, podSpec) => (procMount !== undefined && procMount !== 'Default' && podSpec.hostUsers !== false ? `sets procMount ${procMount}` : undefined),
  (context) => (context.windowsOptions?.hostProcess ? 'is a Windows hostProcess container' : undefined),
  (_, container) => {
    const hostPorts = (container.ports ?? []).filter((port) => port.hostPort).map((port) => port.hostPort);
    return hostPorts.length > 0 ? `uses hostPort ${hostPorts.join(', ')}` : undefined;
  },
];

/**
 * New ephemeral containers (kubectl debug) in a pod that holds the scoped token, judged against the
 * stored pod's volumes and containers: none may mount a volume that holds a token (the sidecar's, or
 * any projected token of the pod's account, which is the scoped one), join the sidecar's processes, or
 * do what Pod Security `baseline` refuses (privileged, capabilities beyond baseline's, seccomp or
 * AppArmor unconfined, SELinux options, an unmasked /proc, hostProcess, hostPorts): a way onto the
 * node, whose disk holds the token too.
 */
export function refuseUnsafeEphemeral(stored: V1PodSpec, added: V1EphemeralContainer[]): void {
  const forbid = (why: string) => {
    throw new Denial('Forbidden', `chaperone refuses this ephemeral container: ${why}; the sidecar's service-account token can impersonate people, and only the sidecar may hold it`);
  };
  const tokenVolumes = new Set([TOKEN_VOLUME, INSTALLATION_VOLUME, ...(stored.volumes ?? []).filter(projectsServiceAccountToken).map((v) => v.name)]);
  const credentialVolumes = new Map((stored.volumes ?? []).flatMap((volume) => {
    const violation = credentialVolumeViolation(volume);
    return violation ? [[volume.name, violation] as const] : [];
  }));
  for (const container of added) {
    for (const mount of container.volumeMounts ?? []) {
      if (tokenVolumes.has(mount.name)) forbid(`ephemeral container ${container.name} mounts volume ${mount.name}, which holds the scoped service account's token or what the sidecar trusts`);
      const violation = credentialVolumes.get(mount.name);
      if (violation) forbid(`chaperone rule ${violation.rule}: ephemeral container ${container.name} mounts ${violation.why}`);
    }
    if (container.targetContainerName === SIDECAR_NAME) forbid(`ephemeral container ${container.name} targets the ${SIDECAR_NAME} container, whose processes and files hold that token`);
    const violation = baselineViolation(container, stored);
    if (violation) forbid(`ephemeral container ${container.name} ${violation}: it could read the token from the node's disk (Pod Security baseline refuses it too)`);
  }
}

const OS_LABEL = 'kubernetes.io/os';

/** Why the pod runs on Windows nodes only, or undefined. */
export function windowsOnly(spec: V1PodSpec): string | undefined {
  if (spec.os?.name === 'windows') return 'spec.os.name is windows';
  if (spec.nodeSelector?.[OS_LABEL] === 'windows') return `its nodeSelector asks for ${OS_LABEL}=windows`;
  const terms = requiredNodeSelectorTerms(spec);
  if (terms.length > 0 && terms.every(excludesLinux)) return `its required node affinity excludes ${OS_LABEL}=linux`;
  return undefined;
}

function requiredNodeSelectorTerms(spec: V1PodSpec): V1NodeSelectorTerm[] {
  return spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
}

function excludesLinux(term: V1NodeSelectorTerm): boolean {
  return (term.matchExpressions ?? []).some((e) => {
    if (e.key !== OS_LABEL) return false;
    const linux = (e.values ?? []).includes('linux');
    return (e.operator === 'In' && !linux) || (e.operator === 'NotIn' && linux);
  });
}

function freeName(name: string, taken: Set<string>): string {
  for (let i = 1; ; i++) {
    const candidate = `${name}-${i}`;
    if (!taken.has(candidate)) return candidate;
  }
}

/** Gives the pod's own volumes that carry a name the injector owns another name, in every mount. */
function renameReservedVolumes(spec: V1PodSpec): void {
  if (!spec.volumes) return;
  const renamed = reservedVolumeNames(spec.volumes);
  if (renamed.size === 0) return;
  const rename = <T extends { name: string }>(ref: T): T => {
    const name = renamed.get(ref.name);
    return name === undefined ? ref : { ...ref, name };
  };
  spec.volumes = spec.volumes.map(rename);
  for (const container of appContainers(spec)) {
    if (container.volumeMounts) container.volumeMounts = container.volumeMounts.map(rename);
    if (container.volumeDevices) container.volumeDevices = container.volumeDevices.map(rename);
  }
}

/** The new name of each volume with a reserved name. */
function reservedVolumeNames(volumes: V1Volume[]): Map<string, string> {
  const taken = new Set(volumes.map((volume) => volume.name));
  const renamed = new Map<string, string>();
  for (const volume of volumes.filter((v) => RESERVED_VOLUMES.includes(v.name))) {
    const name = freeName(volume.name, taken);
    taken.add(name);
    renamed.set(volume.name, name);
  }
  return renamed;
}

/** Points one app container at the proxy: its own service-account directory and the API's address. */
function disarm(container: V1Container): void {
  const mounts = container.volumeMounts ?? [];
  const first = mounts.findIndex((mount) => isUnderServiceAccountDir(mount.mountPath));
  const kept = mounts.filter((mount) => !isUnderServiceAccountDir(mount.mountPath));
  kept.splice(first === -1 ? kept.length : first, 0, { ...API_ACCESS_MOUNT });
  container.volumeMounts = kept;
  // First in the list: the kubelet expands $(VAR) in later entries from the entries before them, so
  // a later `$(KUBERNETES_SERVICE_HOST)` then means the proxy, not the real API server.
  const names = new Set(PROXY_ENV.map((env) => env.name));
  container.env = [...PROXY_ENV.map((env) => ({ ...env })), ...(container.env ?? []).filter((env) => !names.has(env.name))];
}

function upsert<T extends { name: string }>(list: T[], item: T): void {
  const index = list.findIndex((existing) => existing.name === item.name);
  if (index === -1) list.push(item);
  else list[index] = item;
}

function isMounted(spec: V1PodSpec, volume: string): boolean {
  return appContainers(spec).some((container) => (container.volumeMounts ?? []).some((mount) => mount.name === volume));
}

/** Containers of a pod share its network: a port the pod's own container declares is not the sidecar's to listen on. */
function refuseListenerClash(spec: V1PodSpec, settings: InjectionSettings): void {
  if (!settings.extraListen) return;
  const port = listenerPort(settings.extraListen);
  const clash = [...(spec.initContainers ?? []), ...spec.containers].find((container) => (container.ports ?? []).some((declared) => declared.containerPort === port));
  if (clash) {
    throw new Denial(
      'BadRequest',
      `chaperone cannot inject this pod: its container ${clash.name} declares port ${port}, the port the installation configuration ${settings.installationConfig ?? ''} gives the sidecar's extra listener (extraListen, docs/listeners.md); cluster administrators choose another port there`,
    );
  }
}

/**
 * The injected pod. Throws a Denial for a pod that cannot be made safe. On a pod chaperone injected
 * before (it carries chaperone.dev/status), the injector's own names are taken as its own and
 * rewritten; on any other pod, a container called `chaperone` is refused and volumes with the
 * injector's names are renamed out of the way. The pod given is never written: the injected pod
 * shares with it what the injection leaves as it was, and with every pod injected with the same
 * settings object the sidecar and the injector's volumes, which are frozen.
 */
export function injectPod(original: V1Pod, settings: InjectionSettings): V1Pod {
  const pod = writableCopy(original);
  const spec = injectableSpec(pod);
  const annotations = (pod.metadata ??= {}).annotations ?? {};
  const injectedBefore = annotations[STATUS_ANNOTATION] !== undefined;
  const hadInitContainers = spec.initContainers !== undefined;

  if (!injectedBefore) makeRoomForInjection(spec);
  spec.initContainers = (spec.initContainers ?? []).filter((container) => container.name !== SIDECAR_NAME);
  spec.containers = spec.containers.filter((container) => container.name !== SIDECAR_NAME);
  appContainers(spec).forEach(disarm);
  refuseListenerClash(spec, settings);

  const { volumes: ours, sidecar, status } = addedFor(settings);
  spec.volumes = podVolumes(spec, ours);
  refuseUnsafe(spec);

  if (settings.sidecarMode === 'native') spec.initContainers.unshift(sidecar);
  else spec.containers.push(sidecar);
  if (spec.initContainers.length === 0 && !hadInitContainers) delete spec.initContainers;

  const originalServiceAccount = runAsScopedAccount(spec, settings.serviceAccount);
  pod.metadata.annotations = {
    ...annotations,
    ...(injectedBefore ? {} : { [ORIGINAL_SERVICE_ACCOUNT_ANNOTATION]: originalServiceAccount }),
    [PLACEHOLDER_TOKEN_ANNOTATION]: PLACEHOLDER_TOKEN,
    [STATUS_ANNOTATION]: status,
  };
  return pod;
}

/** What injectPod adds to every pod it injects with the same settings. */
interface Added {
  sidecar: V1Container;
  volumes: V1Volume[];
  /** chaperone.dev/status */
  status: string;
}

/**
 * What these settings add, made once for each settings object (review.ts resolves the same settings
 * to the same object), frozen and serialised once: most of every patch.
 */
const added = new WeakMap<InjectionSettings, Added>();

function addedFor(settings: InjectionSettings): Added {
  let made = added.get(settings);
  if (!made) {
    const volumes = injectedVolumes(settings).map(serialiseOnce);
    made = { sidecar: serialiseOnce(sidecarContainer(settings)), volumes, status: statusOf(settings, volumes) };
    added.set(settings, made);
  }
  return made;
}

/**
 * A copy of the objects the mutation writes to (the pod, its metadata and spec, each container);
 * the rest is shared with the pod the review carries, which is never written. Cloning the whole pod
 * cost more than the rest of the mutation. Keys keep their order, and with it the patch's.
 */
function writableCopy(original: V1Pod): V1Pod {
  const pod: V1Pod = { ...original };
  if (original.metadata) pod.metadata = { ...original.metadata };
  if (!original.spec) return pod;
  const spec: V1PodSpec = { ...original.spec };
  if (Array.isArray(spec.containers)) spec.containers = spec.containers.map((container) => ({ ...container }));
  if (spec.initContainers) spec.initContainers = spec.initContainers.map((container) => ({ ...container }));
  if (spec.ephemeralContainers) spec.ephemeralContainers = spec.ephemeralContainers.map((container) => ({ ...container }));
  pod.spec = spec;
  return pod;
}

/** The pod's spec, or a Denial for a pod that has no containers or runs on Windows only. */
function injectableSpec(pod: V1Pod): V1PodSpec {
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers)) throw new Denial('BadRequest', 'chaperone cannot inject this pod: it has no spec.containers');
  const windows = windowsOnly(spec);
  if (windows) {
    throw new Denial(
      'BadRequest',
      `chaperone cannot inject this pod: it runs on Windows nodes (${windows}), and the chaperone sidecar is a Linux container; ` +
        `run the dashboard on Linux nodes, or opt the pod out with the label chaperone.dev/inject=disabled (it then cannot run as the scoped service account)`,
    );
  }
  return spec;
}

/** On a pod not injected before: the sidecar's container name is refused, the injector's volume names renamed away. */
function makeRoomForInjection(spec: V1PodSpec): void {
  const clash = [...(spec.initContainers ?? []), ...spec.containers].find((container) => container.name === SIDECAR_NAME);
  if (clash) throw new Denial('BadRequest', `chaperone cannot inject this pod: the container name ${SIDECAR_NAME} is reserved for the chaperone sidecar; rename the pod's container`);
  renameReservedVolumes(spec);
}

/** The pod's volumes without the unmounted token volumes, with the injector's own in place. */
function podVolumes(spec: V1PodSpec, ours: V1Volume[]): V1Volume[] {
  const volumes = (spec.volumes ?? []).filter((volume) => {
    if (RESERVED_VOLUMES.includes(volume.name)) return ours.some((own) => own.name === volume.name) || isMounted(spec, volume.name);
    // Such as the kube-api-access-* volume the ServiceAccount admission plugin added: its mounts are
    // gone, and left in place it would still have the kubelet fetch a token of the scoped account.
    return !(projectsServiceAccountToken(volume) && !isMounted(spec, volume.name));
  });
  for (const volume of ours) upsert(volumes, volume);
  return volumes;
}

/** Runs the pod as the scoped account, without an automounted token; returns the account it named before. */
function runAsScopedAccount(spec: V1PodSpec, serviceAccount: string): string {
  const original = spec.serviceAccountName ?? spec.serviceAccount ?? 'default';
  spec.serviceAccountName = serviceAccount;
  if (spec.serviceAccount !== undefined) spec.serviceAccount = serviceAccount;
  spec.automountServiceAccountToken = false;
  return original;
}
