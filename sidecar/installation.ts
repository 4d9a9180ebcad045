// The installation's sidecar configuration (--installation-config): a Secret in a namespace that
// only cluster administrators and the injector can write (the injector's own), read from the API
// server with the scoped token. Nobody in the pod's namespace can read or change it: a ConfigMap or
// Secret mounted from the pod's namespace could be, by anyone with `edit` there, and what decides
// who a person is must not be theirs to choose.
//
// Each version is written to a directory of the sidecar's own and loaded from there
// (lib/sidecar-config/installation.ts); this follows the Secret with a watch.
import type { ClientHttp2Stream } from 'node:http2';
import { ConfigError, loadConfig, type Env } from '../lib/config.js';
import type { Logger } from '../lib/log.js';
import { InstallationVersions, secretFromObject, type InstallationSecret, type SecretObject } from '../lib/sidecar-config/installation.js';
import { loadSidecarConfig, sidecarConfigSpec, type SidecarConfig } from '../lib/sidecar-config/options.js';
import { Upstream } from './forward/upstream.js';

const RETRY_MS = 2000;
const WATCH_SECONDS = 300;

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
  return secretFromObject(body as SecretObject);
}

/**
 * The installation configuration, loaded: what the sidecar was started with, and how to load a newer
 * version of the Secret the same way.
 */
export class Installation extends InstallationVersions {
  /**
   * The configuration as flags, environment and the installation Secret give it; waits (retrying, and
   * saying why in the log) until the Secret can be read. Without --installation-config, flags and
   * environment (and --config) alone.
   */
  static async load(argv: readonly string[], env: Env, log: Logger): Promise<{ config: SidecarConfig; installation?: Installation }> {
    // Each option checked alone: what they must be together is checked once the installation's are in.
    const base = loadConfig(sidecarConfigSpec, { argv, env });
    if (base.installationConfig === undefined) return { config: loadSidecarConfig(argv, env) };
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
   * Follows the Secret with a watch (re-established after it ends or fails) and calls onChange with
   * each new version. Returns a function that stops following, resolving once the version being
   * applied, if any, is (none is applied after).
   */
  follow(upstream: Upstream, log: Logger, onChange: (secret: InstallationSecret) => Promise<void>): () => Promise<void> {
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
      const secret = secretFromObject(event.object ?? {});
      if (secret.resourceVersion === seen) return;
      seen = secret.resourceVersion;
      changes = changes.then(() => (stopped ? undefined : onChange(secret))).catch((err: unknown) => log.error({ err }, 'applying the installation configuration failed'));
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
      return changes;
    };
  }
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
