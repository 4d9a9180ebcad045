// A webhook token authenticator, configured as the API server's --authentication-token-webhook-config-file
// (a kubeconfig: the webhook's URL and CA, chaperone's client certificate or token), speaking
// authentication.k8s.io/v1 or v1beta1 TokenReview (pam_hook speaks v1beta1). A webhook that is down,
// slow or answers garbage fails this method with a reason for the audit event; it never lets anyone in.
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { AuthenticationResult } from './chain.js';
import { TokenAuthenticator } from './bearer.js';
import { httpsCall, jsonBody } from './https.js';
import { identityFromUserInfo, ReviewCache, type ReviewCacheOptions, type ReviewVerdict } from './review-cache.js';

export type TokenReviewVersion = 'v1' | 'v1beta1';

export interface WebhookTarget {
  server: string;
  ca?: Buffer;
  serverName?: string;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
}

/** A kubeconfig that cannot be used; the message names the file and the field. */
export class WebhookConfigError extends Error {}

type Named = Record<string, unknown>;

function section(list: unknown, name: string, field: string, file: string): Record<string, unknown> {
  const entries = Array.isArray(list) ? (list as Named[]) : [];
  const entry = entries.find((e) => e?.name === name)?.[field];
  if (typeof entry !== 'object' || entry === null) throw new WebhookConfigError(`${file}: no ${field} named ${JSON.stringify(name)}`);
  return entry as Record<string, unknown>;
}

/** Reads a file or base64 data field; relative paths are relative to the kubeconfig, as client-go reads them. */
function material(entry: Record<string, unknown>, fileField: string, dataField: string, dir: string, file: string): Buffer | undefined {
  const data = entry[dataField];
  if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64');
  const named = entry[fileField];
  if (typeof named !== 'string' || named === '') return undefined;
  const resolved = path.resolve(dir, named);
  try {
    return readFileSync(resolved);
  } catch (err) {
    throw new WebhookConfigError(`${file}: ${fileField}: cannot read ${resolved}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The webhook and the credentials to reach it, from the kubeconfig's current context. */
export function loadWebhookKubeconfig(file: string): WebhookTarget {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new WebhookConfigError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const document = parseDocument(text);
  if (document.errors.length > 0) throw new WebhookConfigError(`${file}: ${document.errors[0]!.message.split('\n', 1)[0]!}`);
  const config = (document.toJS() ?? {}) as Record<string, unknown>;
  const contexts = Array.isArray(config.contexts) ? (config.contexts as Named[]) : [];
  const current = typeof config['current-context'] === 'string' && config['current-context'] !== '' ? config['current-context'] : contexts.length === 1 ? contexts[0]?.name : undefined;
  if (typeof current !== 'string') throw new WebhookConfigError(`${file}: current-context is not set and there is not exactly one context`);
  const context = section(contexts, current, 'context', file);
  const cluster = section(config.clusters, typeof context.cluster === 'string' ? context.cluster : '', 'cluster', file);
  const user = typeof context.user === 'string' && context.user !== '' ? section(config.users, context.user, 'user', file) : {};
  const dir = path.dirname(path.resolve(file));

  const server = cluster.server;
  if (typeof server !== 'string' || !server.startsWith('https://')) throw new WebhookConfigError(`${file}: cluster.server must be an https URL, not ${JSON.stringify(server)}`);
  if (cluster['insecure-skip-tls-verify'] === true) throw new WebhookConfigError(`${file}: insecure-skip-tls-verify: chaperone always verifies the webhook's certificate`);
  const target: WebhookTarget = { server };
  const ca = material(cluster, 'certificate-authority', 'certificate-authority-data', dir, file);
  if (ca) target.ca = ca;
  if (typeof cluster['tls-server-name'] === 'string' && cluster['tls-server-name'] !== '') target.serverName = cluster['tls-server-name'];
  const cert = material(user, 'client-certificate', 'client-certificate-data', dir, file);
  const key = material(user, 'client-key', 'client-key-data', dir, file);
  if ((cert === undefined) !== (key === undefined)) throw new WebhookConfigError(`${file}: user: a client certificate needs its key, and a key its certificate`);
  if (cert && key) Object.assign(target, { cert, key });
  const token = typeof user.token === 'string' && user.token !== '' ? user.token : material(user, 'tokenFile', '', dir, file)?.toString('utf8').trim();
  if (token) target.token = token;
  return target;
}

export interface WebhookOptions {
  target: WebhookTarget;
  version: TokenReviewVersion;
  cache: ReviewCacheOptions;
  timeoutMs: number;
  /** Audiences asked for; when the webhook names audiences, one of these must be among them. */
  audiences: readonly string[];
}

export class WebhookTokenAuthenticator extends TokenAuthenticator {
  readonly method = 'webhook' as const;
  private readonly agent: Agent;
  private readonly cache: ReviewCache;

  constructor(private readonly options: WebhookOptions) {
    super();
    const { target } = options;
    this.agent = new Agent({
      keepAlive: true,
      ...(target.ca ? { ca: target.ca } : {}),
      ...(target.cert && target.key ? { cert: target.cert, key: target.key } : {}),
      ...(target.serverName ? { servername: target.serverName } : {}),
    });
    this.cache = new ReviewCache(options.cache);
  }

  async authenticateToken(token: string): Promise<AuthenticationResult> {
    try {
      const verdict = await this.cache.get(token, () => this.review(token));
      return verdict.authenticated
        ? { outcome: 'success', authenticated: { method: 'webhook', identity: verdict.identity } }
        : { outcome: 'failure', reason: verdict.reason };
    } catch (err) {
      return { outcome: 'failure', reason: `the token webhook could not be asked: ${(err as Error).message}` };
    }
  }

  private async review(token: string): Promise<ReviewVerdict> {
    const { version, target, audiences, timeoutMs } = this.options;
    const apiVersion = `authentication.k8s.io/${version}`;
    const body = JSON.stringify({ apiVersion, kind: 'TokenReview', spec: { token, ...(audiences.length > 0 ? { audiences } : {}) } });
    const answer = await httpsCall(target.server, {
      method: 'POST',
      agent: this.agent,
      timeoutMs,
      body,
      ...(target.token ? { headers: { authorization: `Bearer ${target.token}` } } : {}),
    });
    if (answer.status < 200 || answer.status > 299) throw new Error(`the webhook answered ${answer.status}`);
    return verdictOf(jsonBody(answer, 'the webhook'), audiences);
  }

  close(): void {
    this.agent.destroy();
  }
}

/** A TokenReview answer judged as the API server's webhook authenticator judges it. */
export function verdictOf(review: unknown, audiences: readonly string[]): ReviewVerdict {
  const { apiVersion, kind, status } = (review ?? {}) as { apiVersion?: unknown; kind?: unknown; status?: Record<string, unknown> };
  if (kind !== 'TokenReview' || (apiVersion !== 'authentication.k8s.io/v1' && apiVersion !== 'authentication.k8s.io/v1beta1')) {
    throw new Error(`the answer is not an authentication.k8s.io TokenReview (apiVersion ${JSON.stringify(apiVersion)}, kind ${JSON.stringify(kind)})`);
  }
  if (typeof status !== 'object' || status === null) throw new Error('the TokenReview came back without a status');
  if (audiences.length > 0 && Array.isArray(status.audiences) && status.audiences.length > 0 && !status.audiences.some((a) => audiences.includes(a as string))) {
    return { authenticated: false, reason: `the token is for ${JSON.stringify(status.audiences)}, not for ${JSON.stringify(audiences)}` };
  }
  if (status.authenticated !== true) {
    return { authenticated: false, reason: typeof status.error === 'string' && status.error !== '' ? `the token was not authenticated: ${status.error}` : 'the token was not authenticated' };
  }
  const identity = identityFromUserInfo(status.user);
  if (!identity) throw new Error('the TokenReview authenticated the token but its user is malformed or has no username');
  return { authenticated: true, identity };
}
