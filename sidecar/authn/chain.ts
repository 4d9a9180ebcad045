// The authenticator chain, like the API server's union authenticator: the first success wins, and a
// failure never says which method came close.
import { ANONYMOUS, type Authenticated, type AuthenticationMethod } from '../identity.js';
import { StatusError } from '../../lib/status.js';
import type { ClientRequest } from '../../lib/client-exchange.js';

export type AuthenticationResult =
  | { outcome: 'success'; authenticated: Authenticated }
  /** The request carried nothing this method reads. */
  | { outcome: 'no-credential' }
  /** It carried a credential for this method, and the credential was bad. The reason is for logs and audit only. */
  | { outcome: 'failure'; reason: string };

export interface Authenticator {
  readonly method: AuthenticationMethod;
  authenticate(req: ClientRequest): Promise<AuthenticationResult>;
  /** Why this method cannot serve yet (keys not fetched, say); undefined when it can. */
  notReady?(): string | undefined;
}

export interface ChainOutcome {
  authenticated: Authenticated;
  /** Failures of earlier methods, e.g. a bad certificate before a good token. */
  failures: { method: AuthenticationMethod; reason: string }[];
}

/** The API server's 401; why is for the audit event and the log, never for the client. */
export class AuthenticationFailed extends StatusError {
  constructor(readonly failures: { method: AuthenticationMethod; reason: string }[]) {
    const why = failures.length > 0 ? failures.map((f) => `${f.method}: ${f.reason}`).join('; ') : 'no credentials';
    super(401, 'Unauthorized', 'Unauthorized', { internal: `authentication failed: ${why}` });
  }
}

export class AuthenticatorChain {
  constructor(
    private authenticators: readonly Authenticator[],
    private anonymous: boolean,
  ) {}

  /** Another configuration's methods, for the requests that arrive from now on (those under way finish with the old ones). */
  replace(authenticators: readonly Authenticator[], anonymous: boolean): void {
    this.authenticators = authenticators;
    this.anonymous = anonymous;
  }

  /** Each method and why it cannot serve yet (undefined when it can). */
  readiness(): { method: string; notReady: string | undefined }[] {
    return this.authenticators.map((a) => ({ method: a.method, notReady: a.notReady?.() }));
  }

  async authenticate(req: ClientRequest): Promise<ChainOutcome> {
    const failures: ChainOutcome['failures'] = [];
    for (const authenticator of this.authenticators) {
      const result = await authenticator.authenticate(req);
      if (result.outcome === 'success') return { authenticated: withAuthenticatedGroup(result.authenticated), failures };
      if (result.outcome === 'failure') failures.push({ method: authenticator.method, reason: result.reason });
    }
    if (failures.length === 0 && this.anonymous) return { authenticated: { identity: ANONYMOUS, method: 'anonymous' }, failures };
    throw new AuthenticationFailed(failures);
  }
}

/** Every authenticated identity is in system:authenticated, as the API server adds it. */
function withAuthenticatedGroup(authenticated: Authenticated): Authenticated {
  const { identity } = authenticated;
  if (identity.groups.includes('system:authenticated')) return authenticated;
  return { ...authenticated, identity: { ...identity, groups: [...identity.groups, 'system:authenticated'] } };
}
