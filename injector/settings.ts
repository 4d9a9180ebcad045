// What one pod gets: the injector's defaults, overridden where the namespace's cluster administrators
// say (chaperone.dev/<setting> annotations on the Namespace) and, for how the sidecar runs, where the
// pod says (chaperone.dev/<setting> annotations on the pod). What the sidecar runs or trusts is never
// a pod's to choose: a pod author could otherwise point it at her own issuer or client ID (replaying
// tokens issued to another app as the people the cluster's RBAC names), turn on anonymous access, or
// pick the image that holds the scoped token (an older release, before a fix that kept people from
// acting as anyone; --allowed-images names repositories, so any tag of them). Each
// annotation is read with the value type of the injector option it overrides, so the two cannot
// disagree on what is allowed.
import { flagName, type Options, type ValueType } from '../lib/config.js';
import { sidecarConfigSpec } from '../lib/sidecar-config/options.js';
import { injectorConfigSpec, type InjectorConfig } from './config.js';
import { Denial } from './denial.js';
import {
  ANNOTATION_PREFIX,
  annotationOf,
  INJECT_LABEL,
  ORIGINAL_SERVICE_ACCOUNT_ANNOTATION,
  PLACEHOLDER_TOKEN_ANNOTATION,
  STATUS_ANNOTATION,
} from './names.js';
import { unsupportedSidecarFlags } from './proxy.js';
import { quantityNano } from './quantity.js';

/**
 * Each per-pod setting: its annotation (chaperone.dev/<name>) and the injector option it overrides.
 * read-only only narrows: a pod may turn it on, never off where the injector turns it on.
 */
export const POD_SETTINGS = {
  'sidecar-mode': 'sidecarMode',
  'read-only': 'readOnly',
  'log-level': 'sidecarLogLevel',
  'cpu-request': 'cpuRequest',
  'cpu-limit': 'cpuLimit',
  'memory-request': 'memoryRequest',
  'memory-limit': 'memoryLimit',
} as const satisfies Record<string, keyof InjectorConfig>;

/**
 * What the sidecar runs (its image, which holds the scoped token) or trusts: chosen by cluster
 * administrators only, as annotations on the Namespace (which the admin and edit roles cannot write)
 * or the injector's flags. A pod carrying one is refused. The image, from either, must be one of
 * --allowed-images.
 */
export const NAMESPACE_SETTINGS = {
  image: 'sidecarImage',
  authenticators: 'authenticators',
  'oidc-issuer-url': 'oidcIssuerUrl',
  'oidc-client-id': 'oidcClientId',
  'sidecar-config': 'sidecarConfig',
} as const satisfies Record<string, keyof InjectorConfig>;

type SettingKey = (typeof POD_SETTINGS)[keyof typeof POD_SETTINGS] | (typeof NAMESPACE_SETTINGS)[keyof typeof NAMESPACE_SETTINGS];
type InjectorWideKey = 'serviceAccount' | 'servingSecret' | 'caConfigMap' | 'tokenAudience' | 'tokenExpiration' | 'sidecarUpstream';

/**
 * Everything the mutation needs, validated; tokenExpiration in milliseconds. installationConfig: the
 * installation configuration's Secret (<namespace>/<name>) once the review found it exists and is
 * valid; extraListen: the listener for tools outside the pod it sets (docs/listeners.md).
 */
export type InjectionSettings = Pick<InjectorConfig, SettingKey | InjectorWideKey> & { installationConfig?: string; extraListen?: string };

/** The namespace a pod is created in: its name and annotations, as the injector read them. */
export interface NamespaceSettingsSource {
  name: string;
  annotations: Readonly<Record<string, string>>;
}

const INJECTOR_WRITTEN = [STATUS_ANNOTATION, ORIGINAL_SERVICE_ACCOUNT_ANNOTATION, PLACEHOLDER_TOKEN_ANNOTATION];

function show(text: string): string {
  const quoted = JSON.stringify(text);
  return quoted.length > 80 ? `${quoted.slice(0, 77)}...` : quoted;
}

/** Parses one annotation; subject names it in a problem ("annotation chaperone.dev/x", or the namespace's). */
function parseAnnotation(subject: string, type: ValueType, text: string, problems: string[]): { value: unknown } | undefined {
  const result = type.schema.safeParse(type.fromText(text));
  if (result.success) return { value: result.data };
  for (const issue of result.error.issues) {
    const at = issue.path.length > 0 ? ` (item ${issue.path.map(String).join('.')})` : '';
    problems.push(`${subject}: ${show(text)}${at} ${issue.message}`);
  }
  return undefined;
}

function isAllowedImage(image: string, repositories: readonly string[]): boolean {
  return repositories.some((repository) => image === repository || image.startsWith(`${repository}:`) || image.startsWith(`${repository}@`));
}

/**
 * The namespace's chaperone.dev/<setting> annotations for what the sidecar runs or trusts, over the
 * injector's flags; each validated as its flag is (the image also against --allowed-images).
 */
function applyNamespaceSettings(settings: Record<string, unknown>, namespace: NamespaceSettingsSource, allowedImages: readonly string[], problems: string[]): void {
  for (const [name, key] of Object.entries(NAMESPACE_SETTINGS)) {
    const text = namespace.annotations[annotationOf(name)];
    if (text === undefined) continue;
    const subject = `namespace ${namespace.name}'s annotation ${annotationOf(name)}`;
    const parsed = parseAnnotation(subject, injectorConfigSpec.options[key].type, text, problems);
    if (!parsed) continue;
    if (key === 'sidecarImage' && !isAllowedImage(parsed.value as string, allowedImages)) {
      problems.push(`${subject}: ${show(text)} is not an image of ${allowedImages.join(' or ')} (the injector's ${flagName('allowedImages')})`);
      continue;
    }
    settings[key] = parsed.value;
  }
}

/** Why a pod may not carry a setting of what its sidecar runs or trusts, and where that setting lives. */
function notPerPod(annotation: string, name: keyof typeof NAMESPACE_SETTINGS, namespace: string): string {
  return (
    `annotation ${annotation}: what the sidecar runs or trusts is not a pod's to choose: remove it from the pod; ` +
    `cluster administrators set it on the namespace (kubectl annotate namespace ${namespace} ${annotation}=...) ` +
    `or as the injector's ${flagName(NAMESPACE_SETTINGS[name])}`
  );
}

/**
 * The settings for one pod; throws a Denial naming every annotation that is wrong and what is
 * allowed. namespace: the namespace the pod is created in, whose annotations set what the sidecar
 * trusts (without it, the injector's flags alone). sidecarOptions: what the sidecar's configuration
 * knows, to refuse settings it cannot honour.
 */
export function resolveSettings(
  config: InjectorConfig,
  annotations: Readonly<Record<string, string>> = {},
  namespace?: NamespaceSettingsSource,
  sidecarOptions: Options = sidecarConfigSpec.options,
): InjectionSettings {
  const settings: Record<string, unknown> = {};
  for (const key of [...Object.values(POD_SETTINGS), ...Object.values(NAMESPACE_SETTINGS), 'serviceAccount', 'servingSecret', 'caConfigMap', 'tokenAudience', 'tokenExpiration', 'sidecarUpstream'] as const) {
    settings[key] = config[key];
  }
  const problems: string[] = [];
  if (namespace) applyNamespaceSettings(settings, namespace, config.allowedImages, problems);
  const settingNames = Object.keys(POD_SETTINGS) as (keyof typeof POD_SETTINGS)[];
  for (const [annotation, text] of Object.entries(annotations)) {
    if (!annotation.startsWith(ANNOTATION_PREFIX) || INJECTOR_WRITTEN.includes(annotation)) continue;
    const name = annotation.slice(ANNOTATION_PREFIX.length);
    if (annotation === INJECT_LABEL) {
      problems.push(`annotation ${annotation}: opting out is a label, not an annotation: label the pod ${INJECT_LABEL}=disabled`);
      continue;
    }
    if (Object.hasOwn(NAMESPACE_SETTINGS, name)) {
      problems.push(notPerPod(annotation, name as keyof typeof NAMESPACE_SETTINGS, namespace?.name ?? '<namespace>'));
      continue;
    }
    if (!Object.hasOwn(POD_SETTINGS, name)) {
      problems.push(`annotation ${annotation}: not a chaperone setting (the settings are ${settingNames.map(annotationOf).join(', ')})`);
      continue;
    }
    const key = POD_SETTINGS[name as keyof typeof POD_SETTINGS];
    const parsed = parseAnnotation(`annotation ${annotation}`, injectorConfigSpec.options[key].type, text, problems);
    if (!parsed) continue;
    if (key === 'readOnly' && parsed.value === false && config.readOnly) {
      problems.push(`annotation ${annotation}: ${show(text)} would let people write through a sidecar the injector makes read-only (${flagName('readOnly')}): a pod may only turn read-only on`);
      continue;
    }
    settings[key] = parsed.value;
  }
  const resolved = settings as InjectionSettings;
  if (problems.length === 0) problems.push(...crossChecks(resolved, sidecarOptions, config.allowedImages));
  if (problems.length > 0) throw new Denial('BadRequest', `chaperone cannot inject this pod: ${problems.join('; ')}`);
  return resolved;
}

/** Resolved settings by configuration, then by what resolveSettings reads of the namespace and the pod; the oldest go first. */
const resolved = new WeakMap<InjectorConfig, Map<string, InjectionSettings>>();
const MAX_RESOLVED = 256;

/**
 * resolveSettings, giving the same (frozen) object for the same configuration, namespace annotations
 * and pod settings: the webhook resolves the same few combinations for every pod, and what the
 * mutation adds is made once per settings object (mutate.ts). A refusal is not remembered: its
 * message names the namespace, which the settings themselves do not depend on.
 */
export function resolveSettingsOnce(config: InjectorConfig, annotations: Readonly<Record<string, string>>, namespace: NamespaceSettingsSource): InjectionSettings {
  const podSettings = Object.entries(annotations).filter(([name]) => name.startsWith(ANNOTATION_PREFIX) && !INJECTOR_WRITTEN.includes(name));
  const key = JSON.stringify([namespace.annotations, podSettings]);
  const cache = resolved.get(config) ?? new Map<string, InjectionSettings>();
  let settings = cache.get(key);
  if (!settings) {
    settings = Object.freeze(resolveSettings(config, annotations, namespace));
    if (cache.size >= MAX_RESOLVED) cache.delete(cache.keys().next().value!);
    cache.set(key, settings);
    resolved.set(config, cache);
  }
  return settings;
}

function crossChecks(settings: InjectionSettings, sidecarOptions: Options, allowedImages: readonly string[]): string[] {
  const problems: string[] = [];
  // The Namespace's image was checked where it was read; the injector's own is checked here (so at start).
  if (!isAllowedImage(settings.sidecarImage, allowedImages)) {
    problems.push(`the sidecar image ${show(settings.sidecarImage)} (${flagName('sidecarImage')}) is not an image of ${allowedImages.join(' or ')} (${flagName('allowedImages')})`);
  }
  if (settings.authenticators.includes('oidc')) {
    for (const setting of ['oidc-issuer-url', 'oidc-client-id'] as const) {
      const key = NAMESPACE_SETTINGS[setting];
      if (settings[key] === undefined) {
        problems.push(`${annotationOf('authenticators')} includes oidc, which needs ${annotationOf(setting)} on the namespace (or the injector's ${flagName(key)})`);
      }
    }
  }
  for (const resource of ['cpu', 'memory'] as const) {
    const [request, limit] = [settings[`${resource}Request`], settings[`${resource}Limit`]];
    if (quantityNano(request)! > quantityNano(limit)!) {
      problems.push(`the ${resource} request ${request} (${annotationOf(`${resource}-request`)}) is more than the ${resource} limit ${limit} (${annotationOf(`${resource}-limit`)})`);
    }
  }
  for (const { flag, because } of unsupportedSidecarFlags(settings, sidecarOptions)) {
    problems.push(`${because}, which needs the sidecar flag ${flag}: this release of the sidecar does not have it yet`);
  }
  return problems;
}

function annotationRows(settings: Readonly<Record<string, keyof InjectorConfig>>): string[] {
  return Object.entries(settings).map(([name, key]) => {
    const opt = injectorConfigSpec.options[key];
    const presence = opt.presence;
    const fallback = presence.kind === 'default' ? `\`${Array.isArray(presence.value) ? presence.value.join(',') : String(presence.value)}\`` : 'none';
    return `| \`${ANNOTATION_PREFIX}${name}\` | ${opt.type.name} | \`${flagName(key)}\` (${fallback}) | ${opt.description} |`;
  });
}

/** The annotations as markdown tables (the pod's, the namespace's), for docs/injector.md and docs/configuration.md. */
export function renderAnnotationReference(): string {
  const header = ['| Annotation | Allowed values | Default: the injector\'s | Description |', '|---|---|---|---|'];
  return [
    'On the pod (a pod may turn `read-only` on, never off where the injector turns it on):',
    '',
    ...header,
    ...annotationRows(POD_SETTINGS),
    '',
    'On the Namespace, set by cluster administrators only (what the sidecar runs or trusts; a pod carrying one of these is refused; the image must be one of `--allowed-images`):',
    '',
    ...header,
    ...annotationRows(NAMESPACE_SETTINGS),
  ].join('\n');
}
