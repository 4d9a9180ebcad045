// Revoked client certificates (the installation key clientCertificateRevocations), as the sidecar's
// certificate authenticator refuses them and `chaperone revoke` writes them:
//
//   serial:<hex>                    one certificate, by its serial number (colons and case ignored)
//   user:<name> until <RFC 3339>    every certificate whose CN is <name>, until then (after it, those
//                                   issued before the revocation have expired: their lifetime is capped)
//   user:<name>                     every certificate whose CN is <name>, for as long as the entry stays
const SERIAL = /^serial:([0-9a-fA-F:]+)$/;
const USER = /^user:(.+?)(?: until (\S+))?$/;

export interface Revocations {
  /** Lower-case hex without leading zeros. */
  serials: ReadonlySet<string>;
  /** Username -> until when (ms since the epoch; Infinity for no end). */
  users: ReadonlyMap<string, number>;
}

export const NO_REVOCATIONS: Revocations = { serials: new Set(), users: new Map() };

/** A serial number as the revocation list compares it: lower-case hex, no colons, no leading zeros. */
export function normaliseSerial(hex: string): string {
  return hex.replace(/:/g, '').toLowerCase().replace(/^0+(?=.)/, '');
}

type Entry = { serial: string } | { user: string; until: number };

function parseEntry(text: string): Entry | string {
  const serial = SERIAL.exec(text);
  if (serial) return { serial: normaliseSerial(serial[1]!) };
  const user = USER.exec(text);
  if (!user) return `"${text}" is neither serial:<hex> nor user:<name> [until <RFC 3339 time>]`;
  if (user[2] === undefined) return { user: user[1]!, until: Infinity };
  const until = Date.parse(user[2]);
  if (Number.isNaN(until)) return `"${text}": "${user[2]}" is not an RFC 3339 time (example: 2026-12-14T09:00:00Z)`;
  return { user: user[1]!, until };
}

/** Each entry's problem, naming the option. */
export function revocationProblems(entries: readonly string[]): string[] {
  return entries.flatMap((entry) => {
    const parsed = parseEntry(entry);
    return typeof parsed === 'string' ? [`clientCertificateRevocations: ${parsed}`] : [];
  });
}

/** Throws on an entry revocationProblems names (the configuration was checked when loaded). */
export function parseRevocations(entries: readonly string[]): Revocations {
  const serials = new Set<string>();
  const users = new Map<string, number>();
  for (const text of entries) {
    const entry = parseEntry(text);
    if (typeof entry === 'string') throw new Error(entry);
    if ('serial' in entry) serials.add(entry.serial);
    else users.set(entry.user, Math.max(users.get(entry.user) ?? 0, entry.until));
  }
  return { serials, users };
}

/** Why a certificate is refused as revoked, or undefined. serial: as X509Certificate.serialNumber gives it. */
export function revokedBecause(revocations: Revocations, serial: string, username: string, now: number): string | undefined {
  const normalised = normaliseSerial(serial);
  if (revocations.serials.has(normalised)) return `certificate revoked (serial ${normalised})`;
  const until = revocations.users.get(username);
  if (until !== undefined && now < until) return `certificates of ${username} revoked${until === Infinity ? '' : ` until ${new Date(until).toISOString()}`}`;
  return undefined;
}

/** The entry for a serial, as revocationProblems accepts it. */
export function serialEntry(hex: string): string {
  return `serial:${normaliseSerial(hex)}`;
}

/** The entry for a username, until a time or for good. */
export function userEntry(user: string, until?: Date): string {
  return until ? `user:${user} until ${until.toISOString().replace(/\.\d{3}Z$/, 'Z')}` : `user:${user}`;
}

/** The entries still in force at `now`: a user's whose time has passed is dropped. */
export function entriesInForce(entries: readonly string[], now: number): string[] {
  return entries.filter((text) => {
    const entry = parseEntry(text);
    return typeof entry === 'string' || 'serial' in entry || entry.until > now;
  });
}
