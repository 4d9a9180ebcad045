// The namespace's access policy, enforced in the sidecar: what the impersonator role the injector
// generated from the same policy would have the API server refuse, refused here first with a Status
// that says which policy, and a local read-only narrowing for one pod. The policy file comes from the
// namespace's CA ConfigMap and is re-read when the kubelet updates it; when one is configured but cannot
// be read, every request is refused (fail closed), never served without a policy.
import {
  describePolicy,
  groupAllowed,
  isReadOnlyRequest,
  parsePolicy,
  policyAllows,
  type AccessPolicy,
  type ImpersonationMode,
} from '../lib/access-policy.js';
import { watchFile, type WatchedFile } from '../lib/watch-file.js';
import type { Logger } from '../lib/log.js';
import type { RequestInfo } from './authz/request-info.js';
import type { Identity } from './identity.js';
import { isServiceAccount, type ImpersonationRequest } from './impersonation.js';
import { forbiddenBecause, serviceUnavailable } from '../lib/status.js';
import { forbidden } from './authz/forbidden.js';

export interface AccessGateOptions {
  /** The policy file; without one there is no namespace policy (a sidecar run by hand), and the mode is classic. */
  policyFile?: string | undefined;
  readOnly: boolean;
  log: Logger;
}

type Loaded = { policy: AccessPolicy } | { problem: string };

export class AccessGate {
  private loaded: Loaded | undefined;
  private readonly file: WatchedFile | undefined;

  constructor(private readonly options: AccessGateOptions) {
    const { policyFile, log } = options;
    if (!policyFile) return;
    const load = (content: Buffer | undefined) => {
      const before = this.loaded && 'policy' in this.loaded ? describePolicy(this.loaded.policy) : undefined;
      const loaded = readPolicy(policyFile, content);
      this.loaded = loaded;
      if ('problem' in loaded) log.error({ file: policyFile, problem: loaded.problem }, 'no valid access policy: refusing every request');
      else if (describePolicy(loaded.policy) !== before) log.info({ policy: describePolicy(loaded.policy) }, 'access policy in force');
    };
    this.file = watchFile(policyFile, { onChange: load, onError: (err) => log.warn({ err: err.message, file: policyFile }, 'could not read the access policy file') });
    load(this.file.current());
  }

  /** How the API server sees the impersonation: the policy's mode, or classic without a policy. */
  mode(): ImpersonationMode {
    return this.loaded && 'policy' in this.loaded ? this.loaded.policy.mode : 'classic';
  }

  /** For /readyz: undefined when requests can be judged. */
  problem(): string | undefined {
    return this.loaded && 'problem' in this.loaded ? this.loaded.problem : undefined;
  }

  describe(): string {
    if (!this.loaded) return `no access policy file: impersonation mode classic${this.options.readOnly ? ', read-only' : ''}`;
    if ('problem' in this.loaded) return this.loaded.problem;
    return `${describePolicy(this.loaded.policy)}${this.options.readOnly ? ', this pod read-only' : ''}`;
  }

  /**
   * Under constrained impersonation the API server impersonates a service account by its name alone,
   * with the groups every service account has: a client asking for more would be authorized for one
   * identity and run as another, so it is refused.
   */
  checkNested(request: ImpersonationRequest): void {
    if (this.mode() !== 'constrained' || !isServiceAccount(request.username)) return;
    if (request.groups.length > 0 || request.uid !== undefined || Object.keys(request.extra).length > 0) {
      throw forbiddenBecause(`under constrained impersonation a service account is impersonated by its name alone: ${request.username} cannot be given groups, a uid or extras`);
    }
  }

  /** Throws the Status that refuses the request, when the policy does not allow it. */
  check(identity: Identity, info: RequestInfo, upgrade = false): void {
    if (this.loaded && 'problem' in this.loaded) throw serviceUnavailable(`chaperone has no valid access policy: ${this.loaded.problem}`);
    const policy = this.loaded?.policy;
    if (this.options.readOnly && !isReadOnlyRequest(info, upgrade)) {
      throw forbidden(identity.username, info, 'this pod is read-only (chaperone.dev/read-only)');
    }
    if (!policy) return;
    if (policy.access === 'read-only' && upgrade && !isReadOnlyRequest(info, true)) {
      throw forbidden(identity.username, info, "the namespace's chaperone access policy (read-only) upgrades a connection only to watch or to read a log");
    }
    // A service account is impersonated by name: the API server gives it its own groups and no extras.
    if (!(policy.mode === 'constrained' && isServiceAccount(identity.username))) checkIdentityFits(policy, identity);
    if (!policyAllows(policy, info)) throw forbidden(identity.username, info, `the namespace's chaperone access policy (${policy.access}) does not allow it`);
  }

  close(): void {
    this.file?.close();
  }
}

/** The groups and extras the policy lets the sidecar pass on for this identity. */
function checkIdentityFits(policy: AccessPolicy, identity: Identity): void {
  const group = identity.groups.find((g) => !groupAllowed(policy, g));
  if (group !== undefined) throw forbiddenBecause(`chaperone's access policy for this namespace does not let it act for group ${JSON.stringify(group)}`);
  const extra = Object.keys(identity.extra).find((key) => !policy.extras.includes(key));
  if (extra !== undefined) {
    throw forbiddenBecause(`chaperone's access policy for this namespace does not let it pass on the user extra ${JSON.stringify(extra)} (the injector's --impersonation-extras)`);
  }
}

function readPolicy(file: string, content: Buffer | undefined): Loaded {
  if (!content) return { problem: `the access policy file ${file} is missing or empty` };
  try {
    return { policy: parsePolicy(content.toString('utf8'), `the access policy file ${file}`) };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}
