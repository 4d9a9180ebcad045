// What the injector did, in a few lines a person reads at a glance: the pod as the API server stores
// it with chaperone against the same pod stored without (opted out), and the rules of the role the
// scoped service account was given.
import type { V1Container, V1Pod, V1PolicyRule, V1Volume, V1VolumeProjection } from '@kubernetes/client-node';

function allContainers(pod: V1Pod): V1Container[] {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
}

function lifetime(seconds: number | undefined): string {
  if (seconds === undefined) return '';
  return seconds % 3600 === 0 ? `, ${seconds / 3600}h` : `, ${Math.round(seconds / 60)}m`;
}

/** What one projected source holds, by kind of source. */
const SOURCE_DESCRIPTIONS: readonly ((pod: V1Pod, source: V1VolumeProjection) => string[])[] = [
  (pod, { serviceAccountToken: token }) => (token ? [`token of ServiceAccount ${pod.spec?.serviceAccountName ?? 'default'}${lifetime(token.expirationSeconds)}`] : []),
  (_, { configMap }) => (configMap ? [`ConfigMap ${configMap.name} (${(configMap.items ?? []).map((i) => i.key).join(', ') || 'all keys'})`] : []),
  (_, { secret }) => (secret ? [`Secret ${secret.name}`] : []),
  (pod, { downwardAPI }) =>
    (downwardAPI?.items ?? []).map((item) => {
      const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(item.fieldRef?.fieldPath ?? '')?.[1];
      const value = annotation === undefined ? undefined : pod.metadata?.annotations?.[annotation];
      return value === undefined ? item.path : `${item.path} "${value}"`;
    }),
];

function describeSource(pod: V1Pod, source: V1VolumeProjection): string[] {
  return SOURCE_DESCRIPTIONS.flatMap((describe) => describe(pod, source));
}

function describeVolume(pod: V1Pod, volume: V1Volume): string {
  const sources: V1VolumeProjection[] = volume.projected?.sources ?? [
    ...(volume.secret ? [{ secret: { name: volume.secret.secretName! } }] : []),
    ...(volume.configMap ? [{ configMap: volume.configMap }] : []),
  ];
  if (sources.length === 0) return volume.emptyDir ? 'emptyDir' : 'other';
  return sources.flatMap((source) => describeSource(pod, source)).join('; ');
}

function holdsToken(volume: V1Volume | undefined): boolean {
  return (volume?.projected?.sources ?? []).some((source) => source.serviceAccountToken);
}

/** The containers that mount a real service-account token (not a placeholder). */
export function tokenHolders(pod: V1Pod): string[] {
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  return allContainers(pod)
    .filter((c) => (c.volumeMounts ?? []).some((m) => holdsToken(volumes.get(m.name))))
    .map((c) => c.name);
}

/** Words joined into lines of at most `width` characters (a longer word gets a line of its own). */
function wrap(words: string[], width: number): string[] {
  const lines: string[] = [];
  for (const word of words) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines;
}

function labelled(label: string, values: string[], width = 96): string[] {
  const pad = ' '.repeat(label.length + 1);
  return wrap(values, width).map((line, i) => `    ${i === 0 ? `${label} ` : pad}${line}`);
}

function envText(container: V1Container): Map<string, string> {
  return new Map((container.env ?? []).map((e) => [e.name, e.value ?? `(${e.valueFrom?.fieldRef?.fieldPath ?? 'from elsewhere'})`]));
}

function addedContainer(pod: V1Pod, container: V1Container): string[] {
  const native = (pod.spec?.initContainers ?? []).includes(container) && container.restartPolicy === 'Always';
  return [
    `+ container ${container.name}: ${native ? 'a native sidecar (init container, restartPolicy Always)' : 'a container'}, image ${container.image}`,
    ...labelled('args  ', container.args ?? []),
    ...labelled('env   ', [...envText(container)].map(([name, value]) => `${name}=${value}`)),
    ...labelled('mounts', (container.volumeMounts ?? []).map((m) => m.name)),
  ];
}

function changedContainer(before: V1Container, after: V1Container): string[] {
  const lines: string[] = [];
  const [envBefore, envAfter] = [envText(before), envText(after)];
  const env = [
    ...[...envAfter].filter(([name, value]) => envBefore.get(name) !== value).map(([name, value]) => `+${name}=${value}`),
    ...[...envBefore.keys()].filter((name) => !envAfter.has(name)).map((name) => `-${name}`),
  ];
  if (env.length > 0) lines.push(...labelled('env  ', env));
  const mountsBefore = new Map((before.volumeMounts ?? []).map((m) => [m.mountPath, m.name]));
  const mountsAfter = new Map((after.volumeMounts ?? []).map((m) => [m.mountPath, m.name]));
  for (const mountPath of new Set([...mountsBefore.keys(), ...mountsAfter.keys()])) {
    const [was, is] = [mountsBefore.get(mountPath), mountsAfter.get(mountPath)];
    if (was !== is) lines.push(`    mount ${mountPath}: ${was ?? '(none)'} -> ${is ?? '(none)'}`);
  }
  return lines.length > 0 ? [`~ container ${after.name}`, ...lines] : [];
}

function field(name: string, before: string | boolean | undefined, after: string | boolean | undefined): string[] {
  const text = (value: string | boolean | undefined) => (value === undefined ? '(unset)' : String(value));
  return before === after ? [] : [`~ ${name}: ${text(before)} -> ${text(after)}`];
}

/**
 * What differs between the pod as stored without chaperone and as stored with it: containers,
 * service account, volumes, annotations, and which containers hold a real service-account token.
 */
export function describeInjection(before: V1Pod, after: V1Pod): string[] {
  const holders = (pod: V1Pod) => tokenHolders(pod).join(', ') || 'no container';
  return [
    ...containerChanges(before, after),
    ...field('serviceAccountName', before.spec?.serviceAccountName, after.spec?.serviceAccountName),
    ...field('automountServiceAccountToken', before.spec?.automountServiceAccountToken, after.spec?.automountServiceAccountToken),
    ...volumeChanges(before, after),
    ...annotationChanges(before, after),
    `service-account tokens: mounted by ${holders(before)} without chaperone, by ${holders(after)} with it`,
  ];
}

function containerChanges(before: V1Pod, after: V1Pod): string[] {
  const lines: string[] = [];
  const beforeContainers = new Map(allContainers(before).map((c) => [c.name, c]));
  const afterNames = new Set(allContainers(after).map((c) => c.name));
  for (const container of allContainers(after)) {
    const was = beforeContainers.get(container.name);
    lines.push(...(was ? changedContainer(was, container) : addedContainer(after, container)));
  }
  for (const name of beforeContainers.keys()) if (!afterNames.has(name)) lines.push(`- container ${name}`);
  return lines;
}

function volumeChanges(before: V1Pod, after: V1Pod): string[] {
  const volumesBefore = new Map((before.spec?.volumes ?? []).map((v) => [v.name, v]));
  const volumesAfter = new Map((after.spec?.volumes ?? []).map((v) => [v.name, v]));
  const width = Math.max(0, ...[...volumesBefore.keys(), ...volumesAfter.keys()].map((name) => name.length));
  return [
    ...[...volumesBefore].filter(([name]) => !volumesAfter.has(name)).map(([name, volume]) => `- volume ${name.padEnd(width)}  ${describeVolume(before, volume)}`),
    ...[...volumesAfter].filter(([name]) => !volumesBefore.has(name)).map(([name, volume]) => `+ volume ${name.padEnd(width)}  ${describeVolume(after, volume)}`),
  ];
}

function annotationChanges(before: V1Pod, after: V1Pod): string[] {
  const annotationsBefore = before.metadata?.annotations ?? {};
  const added = Object.keys(after.metadata?.annotations ?? {}).filter((key) => !(key in annotationsBefore));
  return added.length > 0 ? [`+ annotations ${added.join(', ')}`] : [];
}

/** One line per kind of verb ("impersonate-on:user-info:get" is an impersonate-on verb), with every resource it covers. */
export function describeRules(rules: V1PolicyRule[]): string[] {
  const byVerb = new Map<string, Set<string>>();
  for (const rule of rules) {
    for (const verb of new Set(rule.verbs.map((v) => v.split(':')[0]!))) {
      const resources = byVerb.get(verb) ?? new Set<string>();
      for (const resource of [...(rule.resources ?? []), ...(rule.nonResourceURLs ?? [])]) resources.add(resource);
      byVerb.set(verb, resources);
    }
  }
  const width = Math.max(0, ...[...byVerb.keys()].map((verb) => verb.length));
  return [...byVerb].map(([verb, resources]) => `${verb.padEnd(width)}  ${[...resources].join(', ')}`);
}
