// What one pod gets: the injector's defaults, overridden by the pod's chaperone.dev/<setting>
// annotations. Each annotation is read with the value type of the injector option it overrides, so
// the two cannot disagree on what is allowed.
import { flagName, type Options, type ValueType } from '../lib/config.js';
import { sidecarConfigSpec } from '../sidecar/config.js';
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

/** Each per-pod setting: its annotation (chaperone.dev/<name>) and the injector option it overrides. */
export const POD_SETTINGS = {
  image: 'sidecarImage',
  'sidecar-mode': 'sidecarMode',
  authenticators: 'authenticators',
  'oidc-issuer-url': 'oidcIssuerUrl',
  'oidc-client-id': 'oidcClientId',
  'read-only': 'readOnly',
  'log-level': 'sidecarLogLevel',
  'cpu-request': 'cpuRequest',
  'cpu-limit': 'cpuLimit',
  'memory-request': 'memoryRequest',
  'memory-limit': 'memoryLimit',
} as const satisfies Record<string, keyof InjectorConfig>;

type PodSettingKey = (typeof POD_SETTINGS)[keyof typeof POD_SETTINGS];
type InjectorWideKey = 'serviceAccount' | 'servingSecret' | 'caConfigMap' | 'tokenAudience' | 'tokenExpiration';

/** Everything the mutation needs, validated; tokenExpiration in milliseconds. */
export type InjectionSettings = Pick<InjectorConfig, PodSettingKey | InjectorWideKey>;

const INJECTOR_WRITTEN = [STATUS_ANNOTATION, ORIGINAL_SERVICE_ACCOUNT_ANNOTATION, PLACEHOLDER_TOKEN_ANNOTATION];

function show(text: string): string {
  const quoted = JSON.stringify(text);
  return quoted.length > 80 ? `${quoted.slice(0, 77)}...` : quoted;
}

function parseAnnotation(annotation: string, type: ValueType, text: string, problems: string[]): { value: unknown } | undefined {
  const result = type.schema.safeParse(type.fromText(text));
  if (result.success) return { value: result.data };
  for (const issue of result.error.issues) {
    const at = issue.path.length > 0 ? ` (item ${issue.path.map(String).join('.')})` : '';
    problems.push(`annotation ${annotation}: ${show(text)}${at} ${issue.message}`);
  }
  return undefined;
}

function isAllowedImage(image: string, repositories: readonly string[]): boolean {
  return repositories.some((repository) => image === repository || image.startsWith(`${repository}:`) || image.startsWith(`${repository}@`));
}

/**
 * The settings for one pod; throws a Denial naming every annotation that is wrong and what is
 * allowed. sidecarOptions: what the sidecar's configuration knows, to refuse settings it cannot honour.
 */
export function resolveSettings(
  config: InjectorConfig,
  annotations: Readonly<Record<string, string>> = {},
  sidecarOptions: Options = sidecarConfigSpec.options,
): InjectionSettings {
  const settings: Record<string, unknown> = {};
  for (const key of [...Object.values(POD_SETTINGS), 'serviceAccount', 'servingSecret', 'caConfigMap', 'tokenAudience', 'tokenExpiration'] as const) {
    settings[key] = config[key];
  }
  const problems: string[] = [];
  const settingNames = Object.keys(POD_SETTINGS) as (keyof typeof POD_SETTINGS)[];
  for (const [annotation, text] of Object.entries(annotations)) {
    if (!annotation.startsWith(ANNOTATION_PREFIX) || INJECTOR_WRITTEN.includes(annotation)) continue;
    const name = annotation.slice(ANNOTATION_PREFIX.length);
    if (annotation === INJECT_LABEL) {
      problems.push(`annotation ${annotation}: opting out is a label, not an annotation: label the pod ${INJECT_LABEL}=disabled`);
      continue;
    }
    if (!Object.hasOwn(POD_SETTINGS, name)) {
      problems.push(`annotation ${annotation}: not a chaperone setting (the settings are ${settingNames.map(annotationOf).join(', ')})`);
      continue;
    }
    const key = POD_SETTINGS[name as keyof typeof POD_SETTINGS];
    const parsed = parseAnnotation(annotation, injectorConfigSpec.options[key].type, text, problems);
    if (!parsed) continue;
    if (key === 'sidecarImage' && !isAllowedImage(parsed.value as string, config.allowedImages)) {
      problems.push(`annotation ${annotation}: ${show(text)} is not an image of ${config.allowedImages.join(' or ')} (the injector's --allowed-images)`);
      continue;
    }
    settings[key] = parsed.value;
  }
  const resolved = settings as InjectionSettings;
  if (problems.length === 0) problems.push(...crossChecks(resolved, sidecarOptions));
  if (problems.length > 0) throw new Denial('BadRequest', `chaperone cannot inject this pod: ${problems.join('; ')}`);
  return resolved;
}

function crossChecks(settings: InjectionSettings, sidecarOptions: Options): string[] {
  const problems: string[] = [];
  if (settings.authenticators.includes('oidc')) {
    for (const setting of ['oidc-issuer-url', 'oidc-client-id'] as const) {
      const key = POD_SETTINGS[setting];
      if (settings[key] === undefined) {
        problems.push(`${annotationOf('authenticators')} includes oidc, which needs ${annotationOf(setting)} (or the injector's ${flagName(key)})`);
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

/** The annotations as a markdown table, for docs/injector.md and docs/configuration.md. */
export function renderAnnotationReference(): string {
  const rows = Object.entries(POD_SETTINGS).map(([name, key]) => {
    const opt = injectorConfigSpec.options[key];
    const presence = opt.presence;
    const fallback = presence.kind === 'default' ? `\`${Array.isArray(presence.value) ? presence.value.join(',') : String(presence.value)}\`` : 'none';
    return `| \`${ANNOTATION_PREFIX}${name}\` | ${opt.type.name} | \`${flagName(key)}\` (${fallback}) | ${opt.description} |`;
  });
  return [
    '| Annotation | Allowed values | Default: the injector\'s | Description |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}
