// A pod the injector will not admit: the message reaches the person who ran kubectl, verbatim.
import { StatusError } from '../lib/status.js';

/** ServiceUnavailable: not yet (a namespace still being provisioned); the same request may succeed soon. */
export type DenialReason = 'BadRequest' | 'Forbidden' | 'InternalError' | 'ServiceUnavailable';

const CODES: Readonly<Record<DenialReason, number>> = { BadRequest: 400, Forbidden: 403, InternalError: 500, ServiceUnavailable: 503 };

export class Denial extends StatusError {
  constructor(reason: DenialReason, message: string) {
    super(CODES[reason], reason, message);
  }
}
