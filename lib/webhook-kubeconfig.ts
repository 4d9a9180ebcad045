// The kubeconfig of a webhook (the audit webhook sink, the token-authentication webhook), read by the
// rules kube-apiserver applies to its own --audit-webhook-config-file and
// --authentication-token-webhook-config-file (webhook.LoadKubeconfig: client-go's clientcmd, then its
// transport); the injector's --kubeconfig is read by the same rules (lib/kube-api/connection.ts). The current context names the server and the credentials; what those rules would
// refuse is refused, and so is anything chaperone cannot honour, each naming its field.
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { boundedCall, type Answer } from './bounded-call.js';
import { watchFile, type WatchedFile } from './watch-file.js';

/** A kubeconfig that cannot be used; the message names the file and the field. */
export class KubeconfigError extends Error {}

/** What goes with one request: headers (Authorization) and a client certificate. */
export interface RequestCredentials {
  headers: Record<string, string>;
  cert?: Buffer;
  key?: Buffer;
}

export interface WebhookKubeconfig {
  /** The server URL, path included. */
  url: URL;
  /** How the server is verified. */
  tls: { ca?: Buffer; servername?: string; rejectUnauthorized?: boolean };
  /** The certificate-authority file tls.ca was read from (resolved), when the CA comes from a file. */
  caFile?: string;
  /** Which credential the user has, for logs and refusals: none, token, tokenFile, basicAuth, clientCertificate, exec. */
  credentialKinds: string[];
  /** The credentials for the next request; may run the exec plugin (its answer is kept until it expires). */
  credentials(): Promise<RequestCredentials>;
  /** The server answered 401 to a request sent with these: an exec plugin is run again, as client-go does. */
  rejected(used: RequestCredentials): void;
  close(): void;
}

type Fields = Record<string, unknown>;

const EXEC_API_VERSIONS = new Set(['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1']);
const EXEC_CLUSTER_EXTENSION = 'client.authentication.k8s.io/exec';

const isFields = (value: unknown): value is Fields => typeof value === 'object' && value !== null && !Array.isArray(value);

class Reader {
  constructor(readonly file: string) {}

  fail(message: string): never {
    throw new KubeconfigError(`${this.file}: ${message}`);
  }

  /** A string field; absent and null are "", as Go decodes them. */
  text(entry: Fields, field: string, at: string): string {
    const value = entry[field];
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string') this.fail(`${at}.${field} is not a string`);
    return value;
  }

  bool(entry: Fields, field: string, at: string): boolean {
    const value = entry[field];
    if (value === undefined || value === null) return false;
    if (typeof value !== 'boolean') this.fail(`${at}.${field} is not a boolean`);
    return value;
  }

  /** A []byte field: base64, as Go's encoding/json reads it. */
  data(entry: Fields, field: string, at: string): Buffer | undefined {
    const value = this.text(entry, field, at).replace(/[\r\n]/g, '');
    if (value === '') return undefined;
    if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(value)) this.fail(`${at}.${field} is not base64`);
    return Buffer.from(value, 'base64');
  }

  /** A named list (clusters, users, contexts) as a map; a name twice is refused, as client-go's conversion refuses it. */
  named(config: Fields, list: string, field: string): Map<string, Fields> {
    const value = config[list];
    const entries = new Map<string, Fields>();
    if (value === undefined || value === null) return entries;
    if (!Array.isArray(value)) this.fail(`${list} is not a list`);
    for (const [i, item] of value.entries()) {
      if (!isFields(item)) this.fail(`${list}[${i}] is not an object`);
      const name = this.text(item, 'name', `${list}[${i}]`);
      if (entries.has(name)) this.fail(`${list}: duplicate name ${JSON.stringify(name)}`);
      const inner = item[field] ?? {};
      if (!isFields(inner)) this.fail(`${list}[${i}].${field} is not an object`);
      entries.set(name, inner);
    }
    return entries;
  }

  /** A file the kubeconfig names, relative to the kubeconfig's directory (clientcmd.ResolveLocalPaths). */
  resolve(named: string): string {
    return path.isAbsolute(named) ? named : path.join(path.dirname(path.resolve(this.file)), named);
  }

  read(named: string, at: string): Buffer {
    try {
      return readFileSync(named);
    } catch (err) {
      this.fail(`${at}: cannot read ${named}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
}

/** The fields of the current context's user and cluster chaperone does not honour: a refusal names them. */
const IMPERSONATION = 'impersonation through a kubeconfig is not honoured: give the credentials of the identity itself';
/** Fields chaperone refuses, and what to use instead. */
const UNSUPPORTED_USER_FIELDS: Record<string, string> = {
  'auth-provider': 'use a token, a tokenFile, a client certificate or an exec plugin instead',
  as: IMPERSONATION,
  'as-uid': IMPERSONATION,
  'as-groups': IMPERSONATION,
  'as-user-extra': IMPERSONATION,
};
const UNSUPPORTED_CLUSTER_FIELDS: Record<string, string> = { 'proxy-url': 'the server must be reached directly' };

/** Reads the kubeconfig; throws KubeconfigError, naming the field, when kube-apiserver would refuse it or chaperone cannot honour it. */
export function loadWebhookKubeconfig(file: string): WebhookKubeconfig {
  const reader: Reader = new Reader(file);
  const { cluster, clusterName, user } = currentContext(reader, readKubeconfigDocument(reader));
  refuseUnsupportedFields(reader, cluster, user);
  const { server, url } = serverUrl(reader, cluster, clusterName);
  const { tls, caFile } = serverVerification(reader, cluster);
  const auth = userCredentials(reader, user, url.protocol === 'https:', { cluster, server, tls });
  return { url, tls, ...(caFile ? { caFile } : {}), ...auth };
}

function readKubeconfigDocument(reader: Reader): Fields {
  let text: string;
  try {
    text = readFileSync(reader.file, 'utf8');
  } catch (err) {
    reader.fail(`cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  // sigs.k8s.io/yaml reads with go-yaml v2: YAML 1.1.
  const document = parseDocument(text, { version: '1.1', uniqueKeys: false });
  if (document.errors.length > 0) reader.fail(document.errors[0]!.message.split('\n', 1)[0]!);
  let root: unknown;
  try {
    root = document.toJS() ?? {};
  } catch (err) {
    reader.fail((err as Error).message);
  }
  if (!isFields(root)) reader.fail('not a kubeconfig (not a mapping)');
  return root;
}

/** The cluster and the user the current context names. */
function currentContext(reader: Reader, root: Fields): { cluster: Fields; clusterName: string; user: Fields } {
  const clusters = reader.named(root, 'clusters', 'cluster');
  const users = reader.named(root, 'users', 'user');
  const contexts = reader.named(root, 'contexts', 'context');
  const current = reader.text(root, 'current-context', 'kubeconfig');
  // Without one, client-go finds no configuration ("no configuration has been provided").
  if (current === '') reader.fail('current-context is not set (kube-apiserver requires it)');
  const context = contexts.get(current) ?? reader.fail(`current-context: no context named ${JSON.stringify(current)}`);
  const clusterName = reader.text(context, 'cluster', 'context');
  const userName = reader.text(context, 'user', 'context');
  const cluster = clusters.get(clusterName) ?? reader.fail(`context ${JSON.stringify(current)}: no cluster named ${JSON.stringify(clusterName)}`);
  // A user the context names but the file lacks is no user at all, as in client-go.
  return { cluster, clusterName, user: users.get(userName) ?? {} };
}

function refuseUnsupportedFields(reader: Reader, cluster: Fields, user: Fields): void {
  const set = (value: unknown): boolean => value !== undefined && value !== null;
  for (const [field, instead] of Object.entries(UNSUPPORTED_CLUSTER_FIELDS)) if (set(cluster[field]) && cluster[field] !== '') reader.fail(`cluster.${field}: not supported by chaperone (${instead})`);
  for (const [field, instead] of Object.entries(UNSUPPORTED_USER_FIELDS)) if (set(user[field])) reader.fail(`user.${field}: not supported by chaperone (${instead})`);
}

function serverUrl(reader: Reader, cluster: Fields, clusterName: string): { server: string; url: URL } {
  const server = reader.text(cluster, 'server', 'cluster');
  if (server === '') reader.fail(`cluster ${JSON.stringify(clusterName)}: no server`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    reader.fail(`cluster.server ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') reader.fail(`cluster.server must be an https (or http) URL, not ${JSON.stringify(server)}`);
  // client-go drops the server's query and fragment when it has a path.
  if (url.pathname.length > 1) [url.search, url.hash] = ['', ''];
  return { server, url };
}

/** The cluster's CA: its certificate-authority-data, or its certificate-authority file (and where that is). */
function certificateAuthority(reader: Reader, cluster: Fields): { ca?: Buffer; caFile?: string } {
  const caFileName = reader.text(cluster, 'certificate-authority', 'cluster');
  const caData = reader.data(cluster, 'certificate-authority-data', 'cluster');
  if (caFileName && caData) reader.fail('cluster: certificate-authority-data and certificate-authority are both specified');
  if (caData) return { ca: caData };
  if (!caFileName) return {};
  const caFile = reader.resolve(caFileName);
  return { ca: reader.read(caFile, 'cluster.certificate-authority'), caFile };
}

function serverVerification(reader: Reader, cluster: Fields): Pick<WebhookKubeconfig, 'tls' | 'caFile'> {
  const { ca, caFile } = certificateAuthority(reader, cluster);
  const insecure = reader.bool(cluster, 'insecure-skip-tls-verify', 'cluster');
  if (ca && insecure) reader.fail('cluster: insecure-skip-tls-verify with a certificate authority (client-go refuses a root certificate with the insecure flag)');
  const servername = reader.text(cluster, 'tls-server-name', 'cluster');
  reader.bool(cluster, 'disable-compression', 'cluster'); // chaperone never asks the webhook for a compressed answer
  return { tls: { ...(ca ? { ca } : {}), ...(servername ? { servername } : {}), ...(insecure ? { rejectUnauthorized: false } : {}) }, ...(caFile ? { caFile } : {}) };
}

type Credentials = Pick<WebhookKubeconfig, 'credentialKinds' | 'credentials' | 'rejected' | 'close'>;

interface UserFields {
  token: string;
  tokenFileName: string;
  username: string;
  password: string;
  certFile: string;
  certData: Buffer | undefined;
  keyFile: string;
  keyData: Buffer | undefined;
}

/** How the Authorization header is made, if the user has a token or basic auth. */
interface AuthorizationSource {
  kind: 'tokenFile' | 'token' | 'basicAuth';
  headers(): Record<string, string>;
  close(): void;
}

/**
 * The user's credentials as client-go's transport uses them: a bearer token (token, or tokenFile
 * re-read when it changes, which wins while it can be read), or basic auth (a username), not both;
 * a client certificate beside either; an exec plugin only when none of those is set. Over http
 * client-go sends none of them.
 */
function userCredentials(reader: Reader, user: Fields, secure: boolean, server: ExecCluster): Credentials {
  const fields = readUserFields(reader, user);
  refuseConflictingCredentials(reader, fields);
  const exec = user.exec === undefined || user.exec === null ? undefined : execConfig(reader, user.exec);
  if (!secure) return { credentialKinds: [], credentials: () => Promise.resolve({ headers: {} }), rejected: () => undefined, close: () => undefined };

  const certificate = clientCertificate(reader, fields);
  const authorization = authorizationSource(reader, fields);
  const kinds = [...(certificate ? ['clientCertificate'] : []), ...(authorization ? [authorization.kind] : [])];
  if (exec && kinds.length === 0) {
    const plugin = new ExecPlugin(reader, exec, server);
    return { credentialKinds: ['exec'], credentials: () => plugin.credentials(), rejected: (used) => plugin.rejected(used), close: () => undefined };
  }
  return {
    credentialKinds: kinds,
    credentials: () => Promise.resolve({ headers: authorization?.headers() ?? {}, ...certificate }),
    rejected: () => undefined,
    close: () => authorization?.close(),
  };
}

function readUserFields(reader: Reader, user: Fields): UserFields {
  return {
    token: reader.text(user, 'token', 'user'),
    tokenFileName: reader.text(user, 'tokenFile', 'user'),
    username: reader.text(user, 'username', 'user'),
    password: reader.text(user, 'password', 'user'),
    certFile: reader.text(user, 'client-certificate', 'user'),
    certData: reader.data(user, 'client-certificate-data', 'user'),
    keyFile: reader.text(user, 'client-key', 'user'),
    keyData: reader.data(user, 'client-key-data', 'user'),
  };
}

// What client-go's transport refuses in a user, in the order it checks.
const CREDENTIAL_CONFLICTS: readonly [conflict: (fields: UserFields) => unknown, message: string][] = [
  [(f) => f.token && (f.username || f.password), 'user: more than one authentication method (token and username/password); only one is allowed'],
  [(f) => f.certFile && f.certData, 'user: client-certificate-data and client-certificate are both specified'],
  [(f) => (f.certFile || f.certData) && f.keyFile && f.keyData, 'user: client-key-data and client-key are both specified'],
  [(f) => (f.certFile || f.certData) && !f.keyFile && !f.keyData, 'user: client-key-data or client-key must be specified to use a client certificate'],
  [(f) => f.username && f.tokenFileName, 'user: username/password or a bearer token (tokenFile) may be set, but not both'],
];

function refuseConflictingCredentials(reader: Reader, fields: UserFields): void {
  for (const [conflict, message] of CREDENTIAL_CONFLICTS) if (conflict(fields)) reader.fail(message);
}

function clientCertificate(reader: Reader, fields: UserFields): { cert: Buffer; key: Buffer } | undefined {
  const { certFile, certData, keyFile, keyData } = fields;
  const cert = certData ?? (certFile ? reader.read(reader.resolve(certFile), 'user.client-certificate') : undefined);
  const key = keyData ?? (keyFile ? reader.read(reader.resolve(keyFile), 'user.client-key') : undefined);
  if (cert && !key) reader.fail('user: a client certificate needs its key');
  return cert && key ? { cert, key } : undefined;
}

function authorizationSource(reader: Reader, { token, tokenFileName, username, password }: UserFields): AuthorizationSource | undefined {
  if (tokenFileName) return tokenFileSource(reader, tokenFileName, token);
  if (token) return { kind: 'token', headers: () => ({ authorization: `Bearer ${token}` }), close: () => undefined };
  if (!username) return undefined;
  const basic = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  return { kind: 'basicAuth', headers: () => ({ authorization: basic }), close: () => undefined };
}

function tokenFileSource(reader: Reader, tokenFileName: string, token: string): AuthorizationSource {
  const file = reader.resolve(tokenFileName);
  // client-go reads it at start when it is the only token, and fails if it cannot.
  if (!token) reader.read(file, 'user.tokenFile');
  let last: string | undefined;
  // Watched from the first request on, so that reading a kubeconfig to check it starts nothing.
  let watched: WatchedFile | undefined;
  const headers = (): Record<string, string> => {
    watched ??= watchFile(file);
    const fresh = watched.current()?.toString('utf8').trim();
    if (fresh) last = fresh;
    const bearer = last ?? token;
    return bearer ? { authorization: `Bearer ${bearer}` } : {};
  };
  return { kind: 'tokenFile', headers, close: () => watched?.close() };
}

interface ExecConfig {
  command: string;
  args: string[];
  env: [string, string][];
  apiVersion: string;
  provideClusterInfo: boolean;
  installHint: string;
}

const EXEC_AT = 'user.exec';

function execConfig(reader: Reader, value: unknown): ExecConfig {
  if (!isFields(value)) reader.fail(`${EXEC_AT} is not an object`);
  const command = reader.text(value, 'command', EXEC_AT);
  const apiVersion = reader.text(value, 'apiVersion', EXEC_AT);
  if (command === '') reader.fail(`${EXEC_AT}.command must be specified`);
  if (apiVersion === '') reader.fail(`${EXEC_AT}.apiVersion must be specified`);
  if (!EXEC_API_VERSIONS.has(apiVersion)) reader.fail(`${EXEC_AT}.apiVersion ${JSON.stringify(apiVersion)} is not client.authentication.k8s.io/v1 or v1beta1`);
  const args = execArgs(reader, value);
  const env = execEnv(reader, value);
  checkInteractiveMode(reader, value, apiVersion);
  return {
    // A command with a path separator is relative to the kubeconfig; a bare name is looked up in PATH.
    command: command.includes(path.sep) ? reader.resolve(command) : command,
    args,
    env,
    apiVersion,
    provideClusterInfo: reader.bool(value, 'provideClusterInfo', EXEC_AT),
    installHint: reader.text(value, 'installHint', EXEC_AT),
  };
}

function execArgs(reader: Reader, exec: Fields): string[] {
  const args = exec.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) reader.fail(`${EXEC_AT}.args is not a list of strings`);
  return args;
}

function execEnv(reader: Reader, exec: Fields): [string, string][] {
  const envList = exec.env ?? [];
  if (!Array.isArray(envList)) reader.fail(`${EXEC_AT}.env is not a list`);
  return envList.map((item, i): [string, string] => {
    if (!isFields(item)) reader.fail(`${EXEC_AT}.env[${i}] is not an object`);
    const name = reader.text(item, 'name', `${EXEC_AT}.env[${i}]`);
    if (name === '') reader.fail(`${EXEC_AT}.env[${i}].name must be specified`);
    return [name, reader.text(item, 'value', `${EXEC_AT}.env[${i}]`)];
  });
}

function checkInteractiveMode(reader: Reader, exec: Fields, apiVersion: string): void {
  // v1beta1 defaults to IfAvailable; v1 must say. Without a terminal both IfAvailable and Never run the plugin non-interactively.
  const mode = reader.text(exec, 'interactiveMode', EXEC_AT) || (apiVersion.endsWith('/v1beta1') ? 'IfAvailable' : '');
  if (mode === '') reader.fail(`${EXEC_AT}.interactiveMode must be specified`);
  if (mode === 'Always') reader.fail(`${EXEC_AT}.interactiveMode Always: a webhook client has no terminal (kube-apiserver's plugin would fail the same way)`);
  if (mode !== 'Never' && mode !== 'IfAvailable') reader.fail(`${EXEC_AT}.interactiveMode ${JSON.stringify(mode)} is not Never, IfAvailable or Always`);
}

interface ExecCluster {
  cluster: Fields;
  server: string;
  tls: WebhookKubeconfig['tls'];
}

interface ExecCredential {
  credentials: RequestCredentials;
  /** Milliseconds since the epoch; undefined: no expiry. */
  expires?: number;
}

const EXEC_TIMEOUT_MS = 60_000;

/**
 * A client.authentication.k8s.io credential plugin, run as client-go runs it: KUBERNETES_EXEC_INFO
 * in its environment (interactive false), its ExecCredential read from standard output, kept until
 * its expirationTimestamp, run again when it expired or the server answered 401 to it.
 */
class ExecPlugin {
  private cached: ExecCredential | undefined;
  private running: Promise<ExecCredential> | undefined;

  constructor(
    private readonly reader: Reader,
    private readonly config: ExecConfig,
    private readonly cluster: ExecCluster,
  ) {}

  async credentials(): Promise<RequestCredentials> {
    const cached = this.cached;
    if (cached && (cached.expires === undefined || Date.now() <= cached.expires)) return cached.credentials;
    return (await this.refresh()).credentials;
  }

  rejected(used: RequestCredentials): void {
    if (this.cached?.credentials === used) this.cached = undefined;
  }

  private refresh(): Promise<ExecCredential> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private execInfo(): string {
    const spec: Fields = { interactive: false };
    if (this.config.provideClusterInfo) {
      const { cluster, server, tls } = this.cluster;
      const extension = this.reader.named(cluster, 'extensions', 'extension').get(EXEC_CLUSTER_EXTENSION);
      spec.cluster = {
        server,
        ...(tls.servername ? { 'tls-server-name': tls.servername } : {}),
        ...(tls.rejectUnauthorized === false ? { 'insecure-skip-tls-verify': true } : {}),
        ...(tls.ca ? { 'certificate-authority-data': tls.ca.toString('base64') } : {}),
        ...(cluster['disable-compression'] === true ? { 'disable-compression': true } : {}),
        ...(extension ? { config: extension } : {}),
      };
    }
    return JSON.stringify({ kind: 'ExecCredential', apiVersion: this.config.apiVersion, spec });
  }

  private run(): Promise<ExecCredential> {
    const { command, args, env, apiVersion, installHint } = this.config;
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, {
        env: { ...process.env, ...Object.fromEntries(env), KUBERNETES_EXEC_INFO: this.execInfo() },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), EXEC_TIMEOUT_MS);
      const out: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        child.stdout.destroy();
        reject(new Error(err.code === 'ENOENT' ? `exec: executable ${command} not found${installHint ? `\n\n${installHint}` : ''}` : `exec: ${command}: ${err.message}`));
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (code !== 0) return reject(new Error(`exec: ${command} ${signal ? `was killed (${signal})` : `exited with status ${code}`}`));
        try {
          const credential = readExecCredential(Buffer.concat(out).toString('utf8'), apiVersion);
          this.cached = credential;
          resolve(credential);
        } catch (err) {
          reject(new Error(`exec: ${command}: ${(err as Error).message}`));
        }
      });
    });
  }
}

/** The plugin's ExecCredential, checked as client-go checks it. */
export function readExecCredential(stdout: string, apiVersion: string): ExecCredential {
  const status = execCredentialStatus(stdout, apiVersion);
  const field = (name: string): string => {
    const value = status[name];
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string') throw new Error(`decoding stdout: status.${name} is not a string`);
    return value;
  };
  const [token, cert, key, expiration] = [field('token'), field('clientCertificateData'), field('clientKeyData'), field('expirationTimestamp')];
  if (!token && !cert && !key) throw new Error("the plugin didn't return a token or cert/key pair");
  if (!cert !== !key) throw new Error('the plugin returned only a certificate or a key, not both');
  const expires = expiration ? expiryOf(expiration) : undefined;
  if (cert) checkCertificate(cert);
  const credentials: RequestCredentials = { headers: token ? { authorization: `Bearer ${token}` } : {}, ...(cert ? { cert: Buffer.from(cert), key: Buffer.from(key) } : {}) };
  return { credentials, ...(expires !== undefined ? { expires } : {}) };
}

function execCredentialStatus(stdout: string, apiVersion: string): Fields {
  let document: unknown;
  try {
    document = parseDocument(stdout, { version: '1.1' }).toJS();
  } catch (err) {
    throw new Error(`decoding stdout: ${(err as Error).message}`, { cause: err });
  }
  if (!isFields(document)) throw new Error('decoding stdout: not an ExecCredential');
  if (document.kind !== 'ExecCredential') throw new Error(`decoding stdout: kind ${JSON.stringify(document.kind)} is not ExecCredential`);
  if (document.apiVersion !== apiVersion) throw new Error(`the plugin is configured to use API version ${apiVersion}, it returned ${JSON.stringify(document.apiVersion)}`);
  const status = document.status;
  if (status === undefined || status === null) throw new Error("the plugin didn't return a status field");
  if (!isFields(status)) throw new Error('decoding stdout: status is not an object');
  return status;
}

function expiryOf(expiration: string): number {
  const expires = Date.parse(expiration);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$/.test(expiration) || Number.isNaN(expires)) throw new Error(`decoding stdout: status.expirationTimestamp ${JSON.stringify(expiration)} is not RFC 3339`);
  return expires;
}

function checkCertificate(cert: string): void {
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new Error(`failed parsing client key/certificate: ${(err as Error).message}`, { cause: err });
  }
}

export interface WebhookCall {
  body: string;
  timeoutMs: number;
  /** The most bytes of answer read; more is an error. */
  maxBytes?: number;
  headers?: Record<string, string>;
}

/** Milliseconds as Go's time.Duration prints them: 30s, 1m30s, 2.5s, 500ms. */
export function goDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor((ms % 3_600_000) / 60_000);
  const seconds = (ms % 60_000) / 1000;
  return `${hours ? `${hours}h` : ''}${hours || minutes ? `${minutes}m` : ''}${seconds}s`;
}

/** POSTs JSON to a webhook over keep-alive connections, with the kubeconfig's credentials. */
export class WebhookClient {
  private readonly agent: HttpAgent | HttpsAgent;
  readonly secure: boolean;

  constructor(readonly config: WebhookKubeconfig) {
    this.secure = config.url.protocol === 'https:';
    this.agent = this.secure ? new HttpsAgent({ keepAlive: true, ...config.tls }) : new HttpAgent({ keepAlive: true });
  }

  async post(call: WebhookCall): Promise<Answer> {
    const credentials = await this.config.credentials();
    const answer = await this.send(call, credentials);
    if (answer.status === 401) this.config.rejected(credentials);
    return answer;
  }

  private send(call: WebhookCall, credentials: RequestCredentials): Promise<Answer> {
    // As client-go's REST client says how long it waits: ?timeout=, a Go duration.
    const url = new URL(this.config.url);
    url.searchParams.set('timeout', goDuration(call.timeoutMs));
    return boundedCall(url, {
      method: 'POST',
      agent: this.agent,
      timeoutMs: call.timeoutMs,
      body: call.body,
      ...(call.maxBytes !== undefined ? { maxBytes: call.maxBytes } : {}),
      ...(this.secure ? { tls: { ...this.config.tls, ...(credentials.cert ? { cert: credentials.cert, key: credentials.key } : {}) } } : {}),
      headers: { accept: 'application/json, */*', ...call.headers, ...credentials.headers },
    });
  }

  close(): void {
    this.agent.destroy();
    this.config.close();
  }
}
