// The sidecar's audit events for people watching the demo: one line each (who, verb, resource,
// decision, auditID), read from its file sink as they are written.
import { open } from 'node:fs/promises';
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

export interface AuditFollower {
  /** Reads what was appended since the last read; calls onEvent for each whole line. */
  poll(): Promise<void>;
  /** Polls every intervalMs until stop(). */
  follow(intervalMs: number): void;
  stop(): Promise<void>;
}

/** Follows a JSON-lines audit file from its start; a file that shrank (rotated) is read again from its start. */
export function followAuditFile(file: string, onEvent: (event: Event) => void, onError: (err: Error) => void): AuditFollower {
  let offset = 0;
  let partial = '';
  let timer: NodeJS.Timeout | undefined;
  let polling: Promise<void> = Promise.resolve();

  const read = async () => {
    const handle = await open(file, 'r').catch(() => undefined);
    if (!handle) return;
    try {
      const { size } = await handle.stat();
      if (size < offset) [offset, partial] = [0, ''];
      if (size === offset) return;
      const buffer = Buffer.alloc(size - offset);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      offset += bytesRead;
      const lines = (partial + buffer.subarray(0, bytesRead).toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines.filter((l) => l.trim() !== '')) {
        let parsed: Event;
        try {
          parsed = JSON.parse(line) as Event;
        } catch {
          onError(new Error(`a line that is not an event: ${line.slice(0, 80)}`));
          continue;
        }
        onEvent(parsed);
      }
    } finally {
      await handle.close();
    }
  };
  const poll = () => (polling = polling.then(read).catch(onError));
  return {
    poll,
    follow: (intervalMs) => {
      timer = setInterval(() => void poll(), intervalMs);
    },
    stop: async () => {
      clearInterval(timer);
      await polling;
    },
  };
}
