// The installation's sidecar configuration (--installation-config): a Secret in a namespace that
// only cluster administrators and the injector can write (the injector's own), read from the API
// server with the scoped token. Nobody in the pod's namespace can read or change it: a ConfigMap or
// Secret mounted from the pod's namespace could be, by anyone with `edit` there, and what decides
// who a person is must not be theirs to choose.
//
// Its sidecar.yaml (authentication options, keyed as in the config file) and the files it names
// (an AuthenticationConfiguration, a token-webhook kubeconfig, CA bundles; relative paths are read
// relative to sidecar.yaml) are written to a directory of the sidecar's own, one directory per
// version of the Secret, so that a version is read whole and a bad new one never replaces a good one.
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ClientHttp2Stream } from 'node:http2';
import { parseDocument } from 'yaml';
import { ConfigError, type Env } from '../lib/config.js';
import type { Logger } from '../lib/log.js';
import { loadSidecarConfig, type SidecarConfig } from './config.js';
import { Upstream } from './forward/upstream.js';

/** The key of the installation Secret read as the sidecar's config file. */
export const INSTALLATION_FILE = 'sidecar.yaml';

const RETRY_MS = 2000;
const WATCH_SECONDS = 300;

export interface InstallationSecret {
  resourceVersion: string;
  /** Key -> content, as the Secret's data holds them (decoded). */
  files: ReadonlyMap<string, Buffer>;
}

export interface SecretObject {
  metadata?: { resourceVersion?: string };
  data?: Record<string, string>;
}

function secretOf(object: SecretObject): InstallationSecret {
  const files = new Map<string, Buffer>();
  for (const [key, value] of Object.entries(object.data ?? {})) files.set(key, Buffer.from(value, 'base64'));
  return { resourceVersion: object.metadata?.resourceVersion ?? '', files };
}

function splitRef(ref: string): { namespace: string; name: string } {
  const [namespace, name] = ref.split('/') as [string, string];
  return { namespace, name };
}

/** One GET of the Secret; throws an Error saying why it could not be read (the API server's message included). */
export async function readInstallationSecret(upstream: Upstream, ref: string): Promise<InstallationSecret> {
  const { namespace, name } = splitRef(ref);
  const { status, body } = await upstream.json('GET', `/api/v1/namespaces/${namespace}/secrets/${name}`, undefined);
  if (status !== 200) {
    const message = (body as { message?: string }).message ?? 'no message';
    throw new Error(`the installation configuration ${ref} could not be read (HTTP ${status}): ${message}`);
  }
  return secretOf(body as SecretObject);
}

/**
 * The installation configuration, loaded: what the sidecar was started with, and how to load a newer
 * version of the Secret the same way.
 */
export class Installation {
  private loadedDir: string | undefined;

  constructor(
    readonly ref: string,
    private readonly argv: readonly string[],
    private readonly env: Env,
    private readonly dir: string,
    public secret: InstallationSecret,
  ) {}

  /**
   * The configuration as flags, environment and the installation Secret give it; waits (retrying, and
   * saying why in the log) until the Secret can be read. Without --installation-config, flags and
   * environment (and --config) alone.
   */
  static async load(argv: readonly string[], env: Env, log: Logger): Promise<{ config: SidecarConfig; installation?: Installation }> {
    const base = loadSidecarConfig(argv, env);
    if (base.installationConfig === undefined) return { config: base };
    if (argv.some((arg) => arg === '--config' || arg.startsWith('--config=')) || env.CHAPERONE_CONFIG !== undefined) {
      throw new ConfigError(['installationConfig: the installation configuration is the config file: not together with --config or CHAPERONE_CONFIG']);
    }
    const upstream = new Upstream({ url: base.upstream, caFile: base.upstreamCaFile, tokenFile: base.tokenFile, timeoutMs: base.upstreamTimeout });
    try {
      const secret = await untilRead(upstream, base.installationConfig, log);
      const installation = new Installation(base.installationConfig, argv, env, base.installationConfigDir, secret);
      return { config: await installation.configFor(secret), installation };
    } finally {
      upstream.close();
    }
  }

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
      const escaping = filesOutside(versionDir);
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

  /**
   * Follows the Secret with a watch (re-established after it ends or fails) and calls onChange with
   * each new version. Returns a function that stops following.
   */
  follow(upstream: Upstream, log: Logger, onChange: (secret: InstallationSecret) => Promise<void>): () => void {
    const { namespace, name } = splitRef(this.ref);
    let stopped = false;
    let stream: ClientHttp2Stream | undefined;
    let timer: NodeJS.Timeout | undefined;
    let changes = Promise.resolve();
    // The version last seen, applied or refused: a refused one is not tried again until it changes.
    let seen = this.secret.resourceVersion;
    const handle = (event: { type?: string; object?: SecretObject }) => {
      if (event.type === 'ERROR') throw new Error(`watch error: ${JSON.stringify(event.object)}`);
      if (event.type === 'DELETED') {
        log.error({ installationConfig: this.ref }, 'the installation configuration was deleted: keeping the one in use; new pods will not start until it exists again');
        return;
      }
      if (event.type !== 'ADDED' && event.type !== 'MODIFIED') return;
      const secret = secretOf(event.object ?? {});
      if (secret.resourceVersion === seen) return;
      seen = secret.resourceVersion;
      changes = changes.then(() => onChange(secret)).catch((err: unknown) => log.error({ err }, 'applying the installation configuration failed'));
    };
    const watch = () => {
      if (stopped) return;
      const token = upstream.bearerToken();
      const query = new URLSearchParams({ fieldSelector: `metadata.name=${name}`, watch: 'true', resourceVersion: seen, timeoutSeconds: String(WATCH_SECONDS) });
      const again = (why?: string) => {
        if (why) log.warn({ installationConfig: this.ref }, `following the installation configuration: ${why}; trying again`);
        stream = undefined;
        if (!stopped) timer = setTimeout(watch, why ? RETRY_MS : 0);
      };
      if (!token) return again('no service-account token');
      let buffered = '';
      let failed: string | undefined;
      const current = upstream.sessions.request({ ':method': 'GET', ':path': `/api/v1/namespaces/${namespace}/secrets?${query.toString()}`, authorization: `Bearer ${token}`, accept: 'application/json' }, true);
      stream = current;
      current.on('response', (headers) => {
        if (headers[':status'] !== 200) failed = `HTTP ${String(headers[':status'])}`;
      });
      current.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        let end: number;
        while ((end = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 1);
          if (line.trim() === '' || failed) continue;
          try {
            handle(JSON.parse(line) as { type?: string; object?: SecretObject });
          } catch (err) {
            failed = (err as Error).message;
            // An expired resourceVersion (410 Gone) or any error: read the Secret whole, then watch from there.
            void readInstallationSecret(upstream, this.ref).then((secret) => handle({ type: 'MODIFIED', object: { metadata: { resourceVersion: secret.resourceVersion }, data: encode(secret.files) } }), () => {});
            current.close();
          }
        }
      });
      current.on('error', (err: Error) => (failed ??= err.message));
      current.on('close', () => {
        if (stream === current) again(failed ?? (buffered.trim() ? 'the watch ended mid-event' : undefined));
      });
    };
    watch();
    return () => {
      stopped = true;
      clearTimeout(timer);
      stream?.close();
    };
  }
}

/** A YAML mapping, or undefined when it is none (the sidecar's own reading says what is wrong with it). */
function readYaml(file: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = parseDocument(readFileSync(file, 'utf8'), { version: '1.1', uniqueKeys: false }).toJS();
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The options of an installation configuration that name files. */
const FILE_KEYS = ['authenticationConfig', 'oidcCaFile', 'authenticationTokenWebhookConfigFile'] as const satisfies readonly (keyof SidecarConfig)[];
/** The kubeconfig fields that name files, by where they are. */
const KUBECONFIG_FILE_FIELDS = { users: { key: 'user', fields: ['tokenFile', 'client-certificate', 'client-key'] }, clusters: { key: 'cluster', fields: ['certificate-authority'] } } as const;

/**
 * What an installation configuration names beyond its own files: a path out of its version's
 * directory (the scoped token's file, say, which a token webhook would then be sent), or an exec
 * plugin (a command every sidecar would run). Its credentials are its own keys, or inline.
 */
function filesOutside(versionDir: string): string[] {
  const inside = (file: string) => {
    const relative = path.relative(versionDir, path.resolve(versionDir, file));
    return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
  };
  const problems: string[] = [];
  const notOwn = (where: string, file: string) => `${where}: ${JSON.stringify(file)} is not a key of the installation configuration: name only its own files (or give the credential inline)`;
  const options = readYaml(path.join(versionDir, INSTALLATION_FILE));
  for (const key of FILE_KEYS) {
    const file = options?.[key];
    if (typeof file === 'string' && !inside(file)) problems.push(notOwn(`${INSTALLATION_FILE}: ${key}`, file));
  }
  const named = options?.authenticationTokenWebhookConfigFile;
  if (typeof named !== 'string' || !inside(named)) return problems;
  const kubeconfig = path.resolve(versionDir, named);
  const root = readYaml(kubeconfig);
  const name = path.relative(versionDir, kubeconfig);
  for (const [list, { key, fields }] of Object.entries(KUBECONFIG_FILE_FIELDS)) {
    const entries = root?.[list];
    for (const entry of Array.isArray(entries) ? entries : []) {
      const item = (entry as Record<string, unknown> | null)?.[key] as Record<string, unknown> | undefined;
      for (const field of fields) {
        const file = item?.[field];
        if (typeof file === 'string' && file !== '' && !inside(path.resolve(path.dirname(kubeconfig), file))) problems.push(notOwn(`${name}: ${key}.${field}`, file));
      }
      if (key === 'user' && item?.exec !== undefined && item.exec !== null) {
        problems.push(`${name}: user.exec: an installation configuration runs no credential plugin (every sidecar would run its command): give the webhook's credential inline`);
      }
    }
  }
  return problems;
}

/**
 * What a sidecar started with these arguments would find wrong with this version of the Secret
 * (empty: nothing): the same loading, in a directory of its own that is removed after.
 */
export async function installationProblems(argv: readonly string[], ref: string, secret: InstallationSecret, scratch: string): Promise<string[]> {
  const dir = await mkdtemp(path.join(scratch, 'chaperone-installation-'));
  try {
    await new Installation(ref, argv, {}, dir, secret).configFor(secret);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function secretFromObject(object: SecretObject): InstallationSecret {
  return secretOf(object);
}

function encode(files: ReadonlyMap<string, Buffer>): Record<string, string> {
  return Object.fromEntries([...files].map(([key, content]) => [key, content.toString('base64')]));
}

async function untilRead(upstream: Upstream, ref: string, log: Logger): Promise<InstallationSecret> {
  let said: string | undefined;
  for (;;) {
    try {
      return await readInstallationSecret(upstream, ref);
    } catch (err) {
      const message = (err as Error).message;
      if (message !== said) log.warn({ installationConfig: ref }, `${message}; waiting for it before serving`);
      said = message;
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

/** Versions a previous run of the sidecar left (the directory outlives a restart of the container). */
async function removeOtherVersions(dir: string, keep: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    const full = path.join(dir, entry);
    if (full !== keep) await rm(full, { recursive: true, force: true });
  }
}
