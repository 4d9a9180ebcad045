// A pod the injector will not admit: the message reaches the person who ran kubectl, verbatim.

/** ServiceUnavailable: not yet (a namespace still being provisioned); the same request may succeed soon. */
export type DenialReason = 'BadRequest' | 'Forbidden' | 'InternalError' | 'ServiceUnavailable';

const CODES: Readonly<Record<DenialReason, number>> = { BadRequest: 400, Forbidden: 403, InternalError: 500, ServiceUnavailable: 503 };

export class Denial extends Error {
  readonly code: number;

  constructor(
    readonly reason: DenialReason,
    message: string,
  ) {
    super(message);
    this.name = 'Denial';
    this.code = CODES[reason];
  }
}
