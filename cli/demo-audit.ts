// The sidecar's audit events for people watching the demo: one line each (who, verb, resource,
// decision, auditID), taken from its container's log as they are written.
import { ANNOTATIONS } from '../sidecar/audit/event.js';
import type { Event } from '../sidecar/audit/types.js';

/** The person, how they signed in (certificates are the demo's default), and whom they act as. */
function who(event: Event): string {
  const person = event.user.username ?? '(nobody)';
  const method = event.annotations?.[ANNOTATIONS.authenticationMethod];
  const signedIn = method && method !== 'x509' ? `${person} (${method})` : person;
  const as = event.impersonatedUser?.username;
  return as !== undefined && as !== person ? `${signedIn} as ${as}` : signedIn;
}

function what(event: Event): string {
  const ref = event.objectRef;
  if (!ref?.resource) return `${event.verb} ${event.requestURI.split('?')[0]}`;
  const resource = [ref.resource, ref.subresource].filter(Boolean).join('/');
  return [event.verb, resource, ref.name, ref.namespace ? `-n ${ref.namespace}` : undefined].filter(Boolean).join(' ');
}

/** allow or forbid when a SubjectAccessReview decided; the response code (and reason, on failure) always. */
function outcome(event: Event): string {
  const decision = event.annotations?.[ANNOTATIONS.authorizationDecision];
  const status = event.responseStatus;
  const code = status?.code === undefined ? '' : status.reason && !decision ? `${status.code} ${status.reason}` : String(status.code);
  return [decision, code].filter(Boolean).join(' ');
}

/** `15:04:05  alice  list pods -n demo  allow 200  auditID=…`, plus the stage when it is not the last. */
export function auditLine(event: Event): string {
  const time = event.stageTimestamp.slice(11, 19);
  const stage = event.stage === 'ResponseComplete' ? '' : `  (${event.stage})`;
  return `${time}  ${who(event).padEnd(8)}  ${what(event).padEnd(30)}  ${outcome(event).padEnd(18)}  auditID=${event.auditID}${stage}`;
}

/**
 * The audit event a line of the sidecar's container log holds, if it holds one: the sidecar writes
 * its events to standard output and its log lines to standard error, which `kubectl logs` merges.
 */
export function auditEventIn(line: string): Event | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const parsed = JSON.parse(line) as Partial<Event>;
    return parsed.kind === 'Event' && parsed.apiVersion === 'audit.k8s.io/v1' ? (parsed as Event) : undefined;
  } catch {
    return undefined;
  }
}

/** Events held until the first flush(), then passed on as they come. */
export class AuditPrinter {
  private held: Event[] | undefined = [];

  constructor(private readonly print: (event: Event) => void) {}

  /** How many events are held. */
  get waiting(): number {
    return this.held?.length ?? 0;
  }

  readonly add = (event: Event): void => {
    if (this.held) this.held.push(event);
    else this.print(event);
  };

  /** Prints what was held; from now on events print as they come. */
  flush(): number {
    const held = this.held ?? [];
    this.held = undefined;
    held.forEach(this.print);
    return held.length;
  }
}
