// The installation's sidecar configuration (--installation-config), as a Secret holds it: its
// sidecar.yaml (options keyed as in the config file) and the files it names (an
// AuthenticationConfiguration, a token-webhook kubeconfig, CA bundles; relative paths are read
// relative to sidecar.yaml), written to a directory of their own, one per version of the Secret, so
// that a version is read whole and a bad new one never replaces a good one. The sidecar loads it so
// (sidecar/installation.ts follows the Secret); the injector checks a version the same way.
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, type Env } from '../config.js';
import { installationListenerProblems } from './listener.js';
import { loadSidecarConfig, sidecarConfigSpec, type SidecarConfig } from './options.js';

/** The key of the installation Secret read as the sidecar's config file. */
export const INSTALLATION_FILE = 'sidecar.yaml';

export interface InstallationSecret {
  resourceVersion: string;
  /** Key -> content, as the Secret's data holds them (decoded). */
  files: ReadonlyMap<string, Buffer>;
}

export interface SecretObject {
  metadata?: { resourceVersion?: string };
  data?: Record<string, string>;
}

export function secretFromObject(object: SecretObject): InstallationSecret {
  const files = new Map<string, Buffer>();
  for (const [key, value] of Object.entries(object.data ?? {})) files.set(key, Buffer.from(value, 'base64'));
  return { resourceVersion: object.metadata?.resourceVersion ?? '', files };
}

/** One version of the installation configuration after another, each loaded from a directory of its own under dir. */
export class InstallationVersions {
  private loadedDir: string | undefined;

  constructor(
    readonly ref: string,
    protected readonly argv: readonly string[],
    protected readonly env: Env,
    private readonly dir: string,
    public secret: InstallationSecret,
  ) {}

  /**
   * The configuration with this version of the Secret; throws ConfigError naming what is wrong (the
   * version in use then stays). Once it succeeds, the files of the version used before are removed.
   */
  async configFor(secret: InstallationSecret): Promise<SidecarConfig> {
    const versionDir = path.join(this.dir, `v${secret.resourceVersion.replace(/[^0-9A-Za-z]/g, '')}-${Date.now()}`);
    await mkdir(versionDir, { recursive: true, mode: 0o700 });
    for (const [key, content] of secret.files) await writeFile(path.join(versionDir, key), content, { mode: 0o600 });
    let config: SidecarConfig;
    try {
      if (!secret.files.has(INSTALLATION_FILE)) {
        throw new ConfigError([`not an installation configuration: it has no ${INSTALLATION_FILE} (a Secret of another purpose, such as the injector's CA keys, is never one)`]);
      }
      // Before anything is read: a file outside the configuration is never opened.
      const escaping = outOfBounds(versionDir);
      if (escaping.length > 0) throw new ConfigError(escaping);
      config = loadSidecarConfig(this.argv, this.env, path.join(versionDir, INSTALLATION_FILE));
    } catch (err) {
      await rm(versionDir, { recursive: true, force: true });
      if (err instanceof ConfigError) throw new ConfigError(err.problems.map((problem) => `${this.ref}: ${problem.replaceAll(`${versionDir}/`, '')}`));
      throw err;
    }
    this.secret = secret;
    const previous = this.loadedDir;
    this.loadedDir = versionDir;
    if (previous === undefined) await removeOtherVersions(this.dir, versionDir);
    else await rm(previous, { recursive: true, force: true });
    return config;
  }
}

/** A YAML mapping, or undefined when it is none (the sidecar's own reading says what is wrong with it). */
function yamlMapping(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = parseDocument(text, { version: '1.1', uniqueKeys: false }).toJS();
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function readYaml(file: string): Record<string, unknown> | undefined {
  try {
    return yamlMapping(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The Services an installation configuration reaches its extra listener through (docs/listeners.md),
 * as the injector issues the serving certificate for them: none unless sidecar.yaml sets both
 * listener keys validly (a configuration that sets them wrongly gets no pod injected anyway).
 */
export function listenerServicesOf(secret: InstallationSecret): string[] {
  const text = secret.files.get(INSTALLATION_FILE)?.toString('utf8');
  const options = text === undefined ? undefined : yamlMapping(text);
  const { extraListen, extraListenServices } = sidecarConfigSpec.options;
  const address = extraListen.type.schema.safeParse(options?.extraListen);
  const services = extraListenServices.type.schema.safeParse(options?.extraListenServices);
  if (!address.success || !services.success) return [];
  return installationListenerProblems({ extraListen: address.data, extraListenServices: services.data }).length === 0 ? services.data : [];
}

/** The options of an installation configuration that name files. */
const FILE_KEYS = ['authenticationConfig', 'oidcCaFile', 'authenticationTokenWebhookConfigFile', 'auditPolicyFile', 'auditWebhookConfigFile'] as const satisfies readonly (keyof SidecarConfig)[];
/** Those that name a webhook kubeconfig, whose own files and credentials are checked too. */
const KUBECONFIG_KEYS = ['authenticationTokenWebhookConfigFile', 'auditWebhookConfigFile'] as const satisfies readonly (typeof FILE_KEYS)[number][];
/** The kubeconfig fields that name files, by where they are. */
const KUBECONFIG_FILE_FIELDS = { users: { key: 'user', fields: ['tokenFile', 'client-certificate', 'client-key'] }, clusters: { key: 'cluster', fields: ['certificate-authority'] } } as const;

/** How files are judged: whether one is inside the configuration, and the refusal of one that is not. */
interface Bounds {
  inside: (file: string) => boolean;
  notOwn: (where: string, file: string) => string;
}

/** A webhook kubeconfig's files outside the configuration, and its exec plugins. */
function kubeconfigFilesOutside(kubeconfig: string, versionDir: string, bounds: Bounds): string[] {
  const root = readYaml(kubeconfig);
  const name = path.relative(versionDir, kubeconfig);
  return Object.entries(KUBECONFIG_FILE_FIELDS).flatMap(([list, { key, fields }]) => {
    const entries = root?.[list];
    return (Array.isArray(entries) ? entries : []).flatMap((entry) => {
      const item = (entry as Record<string, unknown> | null)?.[key] as Record<string, unknown> | undefined;
      const where = { kubeconfig, name, key };
      return [...fields.flatMap((field) => fileOutside(item?.[field], field, where, bounds)), ...execProblems(item, where)];
    });
  });
}

function fileOutside(file: unknown, field: string, where: { kubeconfig: string; name: string; key: string }, { inside, notOwn }: Bounds): string[] {
  if (typeof file !== 'string' || file === '' || inside(path.resolve(path.dirname(where.kubeconfig), file))) return [];
  return [notOwn(`${where.name}: ${where.key}.${field}`, file)];
}

function execProblems(item: Record<string, unknown> | undefined, where: { name: string; key: string }): string[] {
  if (where.key !== 'user' || item?.exec === undefined || item.exec === null) return [];
  return [`${where.name}: user.exec: an installation configuration runs no credential plugin (every sidecar would run its command): give the webhook's credential inline`];
}

function namesFileSink(sinks: unknown): boolean {
  const named: unknown[] = Array.isArray(sinks) ? sinks : typeof sinks === 'string' ? sinks.split(',') : [];
  return named.some((sink) => typeof sink === 'string' && sink.trim() === 'file');
}

/**
 * What an installation configuration reaches beyond itself: a path out of its version's directory
 * (the scoped token's file, say, which a token webhook would then be sent), an exec plugin (a command
 * every sidecar would run), or a file sink (inside the sidecar's container, where nobody reads it).
 * Its credentials are its own keys, or inline.
 */
function outOfBounds(versionDir: string): string[] {
  const inside = (file: string) => {
    const relative = path.relative(versionDir, path.resolve(versionDir, file));
    return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
  };
  const notOwn = (where: string, file: string) => `${where}: ${JSON.stringify(file)} is not a key of the installation configuration: name only its own files (or give the credential inline)`;
  const options = readYaml(path.join(versionDir, INSTALLATION_FILE));
  const problems = FILE_KEYS.flatMap((key) => {
    const file = options?.[key];
    return typeof file === 'string' && !inside(file) ? [notOwn(`${INSTALLATION_FILE}: ${key}`, file)] : [];
  });
  if (namesFileSink(options?.auditSinks)) {
    problems.push(`${INSTALLATION_FILE}: auditSinks: the file sink writes inside the sidecar's container, where nobody reads it: an installation configuration sends audit events to stdout or a webhook`);
  }
  for (const key of KUBECONFIG_KEYS) {
    const named = options?.[key];
    if (typeof named === 'string' && inside(named)) problems.push(...kubeconfigFilesOutside(path.resolve(versionDir, named), versionDir, { inside, notOwn }));
  }
  return problems;
}

export type InstallationCheck = { config: SidecarConfig; problems: readonly [] } | { config?: undefined; problems: readonly string[] };

/**
 * The configuration a sidecar started with these arguments would load from this version of the
 * Secret, or what it would find wrong with it: the same loading, in a directory of its own that is
 * removed after, and the rules of a configuration every injected pod shares (its listener's).
 */
export async function checkInstallation(argv: readonly string[], ref: string, secret: InstallationSecret, scratch: string): Promise<InstallationCheck> {
  const dir = await mkdtemp(path.join(scratch, 'chaperone-installation-'));
  try {
    const config = await new InstallationVersions(ref, argv, {}, dir, secret).configFor(secret);
    const problems = installationListenerProblems(config).map((problem) => `${ref}: ${INSTALLATION_FILE}: ${problem}`);
    return problems.length > 0 ? { problems } : { config, problems: [] };
  } catch (err) {
    if (err instanceof ConfigError) return { problems: [...err.problems] };
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** What a sidecar started with these arguments would find wrong with this version of the Secret (empty: nothing). */
export async function installationProblems(argv: readonly string[], ref: string, secret: InstallationSecret, scratch: string): Promise<string[]> {
  return [...(await checkInstallation(argv, ref, secret, scratch)).problems];
}

/** Versions a previous run of the sidecar left (the directory outlives a restart of the container). */
async function removeOtherVersions(dir: string, keep: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    const full = path.join(dir, entry);
    if (full !== keep) await rm(full, { recursive: true, force: true });
  }
}
