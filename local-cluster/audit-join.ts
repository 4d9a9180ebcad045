// The audit join, checked at the end of every run that started a control plane: each request an API
// server executed for a scoped service account (the account a chaperone sidecar forwards under) must
// have exactly one sidecar audit event with the same auditID, the same verb and objectRef, and the
// same impersonated user. A request smuggled past the sidecar runs under the scoped account with an
// auditID, verb or object the sidecar never recorded, so every end-to-end test is also a smuggling
// detector. The rules are in joinAuditLogs; the README (Tests) says them in words.
//
// The registry: control planes and sidecars register their audit logs as they start, and copy them
// here before they remove their directories (tests remove theirs too). Processes started by a test
// (the demo) take part through TEST_CHAPERONE_AUDIT_JOIN_DIR, a directory every process of the run
// writes its registrations and copies to. Outside a test run (npm run demo) nothing is armed and
// registering does nothing.
import { randomUUID } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { copyFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { PROBE_USER } from '../injector/provision/cluster-support.js';
import { checkAuditSchema, formatSchemaProblems } from './audit-schema.js';

// ---- the events, as far as the join reads them ----

export interface JoinUser {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface JoinObjectRef {
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  apiGroup?: string;
  apiVersion?: string;
}

/** An audit.k8s.io/v1 Event, from either log. */
export interface JoinEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  level?: string;
  user?: JoinUser;
  impersonatedUser?: JoinUser;
  objectRef?: JoinObjectRef;
  responseStatus?: { code?: number };
  userAgent?: string;
  annotations?: Record<string, string>;
}

/** A sidecar event and the log it came from. */
export interface SidecarRecord {
  source: string;
  event: JoinEvent;
}

export interface JoinInput {
  /** One API server's log. */
  apiServer: readonly JoinEvent[];
  /** The events of every sidecar whose scoped token belongs to that API server. */
  sidecars: readonly SidecarRecord[];
  /** The events of every other sidecar of the run: never a match, only to say where a missing event went. */
  elsewhere?: readonly SidecarRecord[];
  /** The usernames (system:serviceaccount:<namespace>:<name>) of the sidecars' scoped accounts on that API server. */
  scopedAccounts: ReadonlySet<string>;
  /** auditID -> why no sidecar event is expected (a test used a scoped token straight, or its sidecar's policy audits nothing for it). */
  declared: ReadonlyMap<string, string>;
}

export type MismatchKind =
  | 'no sidecar event'
  | 'more than one sidecar event'
  | 'executed more than once'
  | 'verb'
  | 'objectRef'
  | 'impersonated user'
  | 'not impersonated'
  | 'not forwarded'
  | 'unregistered impersonator';

export interface Mismatch {
  kind: MismatchKind;
  auditID: string;
  detail: string;
  /** The API server's events for the auditID, every stage. */
  apiServer: JoinEvent[];
  sidecar: SidecarRecord[];
}

export interface JoinResult {
  /** Requests run for a scoped account that were joined with their sidecar event. */
  joined: number;
  /** The sidecars' own calls (reviews, /readyz), which have no sidecar event. */
  ownCalls: number;
  /** auditIDs excused by a declaration that were found (under any service account). */
  declaredUsed: string[];
  mismatches: Mismatch[];
  /** The joined requests by verb (and subresource): what the run's sidecars were checked on. */
  verbs: Record<string, number>;
  /**
   * Sidecar events marked forwarded whose auditID the API server never recorded. Not a mismatch (an
   * API server killed mid-request, an upstream that is not one), only said: by sidecar log.
   */
  forwardedUnseen: Record<string, number>;
}

/** The service account username the API server gives a token of that account. */
export function serviceAccountUsername(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

const FORWARDED = 'chaperone.dev/forwarded';
const OBJECT_REF_FIELDS = ['namespace', 'resource', 'subresource', 'name', 'apiGroup', 'apiVersion'] as const;

/**
 * The sidecar's own calls, made under the scoped account with no impersonation and no event of the
 * sidecar's: its SubjectAccessReviews, the cluster TokenReviews (--cluster-token-review) and its
 * readiness probe of the API server. Exactly these URIs and verbs (sidecar/forward/upstream.ts).
 */
const OWN_CALLS: readonly { verb: string; requestURI: string | RegExp; objectRef?: JoinObjectRef }[] = [
  { verb: 'create', requestURI: '/apis/authorization.k8s.io/v1/subjectaccessreviews', objectRef: { apiGroup: 'authorization.k8s.io', apiVersion: 'v1', resource: 'subjectaccessreviews' } },
  { verb: 'create', requestURI: '/apis/authentication.k8s.io/v1/tokenreviews', objectRef: { apiGroup: 'authentication.k8s.io', apiVersion: 'v1', resource: 'tokenreviews' } },
  { verb: 'get', requestURI: '/readyz' },
  // The installation configuration (sidecar/installation.ts), in the injector's namespace
  // (chaperone-system, a test run's chaperone-system-<suffix>): read whole, then watched by name.
  { verb: 'get', requestURI: /^\/api\/v1\/namespaces\/chaperone-system(-[0-9a-f]+)?\/secrets\/[^/?]+$/ },
  { verb: 'watch', requestURI: /^\/api\/v1\/namespaces\/chaperone-system(-[0-9a-f]+)?\/secrets\?fieldSelector=metadata\.name%3D[^&]+&watch=true&/ },
];

const text = (value: string | undefined): string => value ?? '';

function objectRefDifference(theirs: JoinObjectRef | undefined, ours: JoinObjectRef | undefined): string | undefined {
  const differences = OBJECT_REF_FIELDS.filter((field) => text(theirs?.[field]) !== text(ours?.[field])).map(
    (field) => `${field}: API server ${JSON.stringify(text(theirs?.[field]))}, sidecar ${JSON.stringify(text(ours?.[field]))}`,
  );
  return differences.length > 0 ? differences.join('; ') : undefined;
}

function isOwnCall(events: readonly JoinEvent[]): boolean {
  return events.every((event) => {
    if (event.impersonatedUser) return false;
    return OWN_CALLS.some((call) => {
      const uri = typeof call.requestURI === 'string' ? call.requestURI === event.requestURI : call.requestURI.test(event.requestURI);
      if (!uri || call.verb !== event.verb) return false;
      return call.objectRef === undefined ? event.objectRef === undefined || event.objectRef.resource === 'secrets' : objectRefDifference(call.objectRef, event.objectRef) === undefined;
    });
  });
}

/**
 * The injector's probe of constrained impersonation (injector/provision/cluster-support.ts): its own
 * service account impersonates a user that exists for nothing else, to create a SelfSubjectReview.
 * Only ever excused for an account that is no sidecar's.
 */
function isInjectorProbe(events: readonly JoinEvent[]): boolean {
  return events.every((event) => event.verb === 'create' && event.requestURI === '/apis/authentication.k8s.io/v1/selfsubjectreviews' && event.impersonatedUser?.username === PROBE_USER);
}

const sorted = (values: readonly string[] | undefined): string[] => [...(values ?? [])].sort();

/** Where two users differ: username, uid, groups (as a set of names with repeats) and extra (each key's values likewise). */
export function userDifference(theirs: JoinUser | undefined, ours: JoinUser | undefined): string | undefined {
  const differences: string[] = [];
  if (text(theirs?.username) !== text(ours?.username)) differences.push(`username: API server ${JSON.stringify(text(theirs?.username))}, sidecar ${JSON.stringify(text(ours?.username))}`);
  if (text(theirs?.uid) !== text(ours?.uid)) differences.push(`uid: API server ${JSON.stringify(text(theirs?.uid))}, sidecar ${JSON.stringify(text(ours?.uid))}`);
  if (JSON.stringify(sorted(theirs?.groups)) !== JSON.stringify(sorted(ours?.groups))) {
    differences.push(`groups: API server ${JSON.stringify(theirs?.groups ?? [])}, sidecar ${JSON.stringify(ours?.groups ?? [])}`);
  }
  const extra = (user: JoinUser | undefined) => JSON.stringify(Object.keys(user?.extra ?? {}).sort().map((key) => [key, sorted(user!.extra![key])]));
  if (extra(theirs) !== extra(ours)) differences.push(`extra: API server ${JSON.stringify(theirs?.extra ?? {})}, sidecar ${JSON.stringify(ours?.extra ?? {})}`);
  return differences.length > 0 ? differences.join('; ') : undefined;
}

function groupBy<T>(items: Iterable<T>, key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

const isServiceAccount = (username: string | undefined): boolean => username?.startsWith('system:serviceaccount:') === true;

/**
 * Joins one API server's log with the logs of its sidecars. For each auditID the API server ran for a
 * scoped account (its events of every stage are one request):
 *
 * - the sidecar's own calls (OWN_CALLS, without impersonation) need no event; declared auditIDs need
 *   none either, but are checked like any other when one exists;
 * - otherwise there must be sidecar events with that auditID from exactly one sidecar log, at most one
 *   per stage, each marked forwarded, each with the API server's verb and objectRef fields;
 * - the impersonated user (username, uid, groups, extra) must be the API server's. Where the API server
 *   recorded none, the request ran as the scoped account itself: a mismatch, unless the API server
 *   refused it with 403 before impersonating (it records the impersonated user only once impersonation
 *   is allowed) and the sidecar's event says whom it impersonated;
 * - two API server events of one stage for one auditID are two executions: a mismatch.
 *
 * Status codes are not compared: the sidecar records what its client saw (its own 502 or 504 when the
 * upstream failed), the API server what it answered. A service account that impersonates but is no
 * registered sidecar's is reported too (an unregistered sidecar, or a test that should declare), except
 * for the injector's probe of constrained impersonation.
 */
export function joinAuditLogs(input: JoinInput): JoinResult {
  const bySidecarId = groupBy(input.sidecars, (record) => record.event.auditID);
  const elsewhere = groupBy(input.elsewhere ?? [], (record) => record.event.auditID);
  const result: JoinResult = { joined: 0, ownCalls: 0, declaredUsed: [], mismatches: [], verbs: {}, forwardedUnseen: {} };
  const unregistered = new Map<string, JoinEvent[]>();
  const seen = new Set(input.apiServer.map((event) => event.auditID));
  for (const [auditID, records] of bySidecarId) {
    const forwarded = records.find((record) => record.event.annotations?.[FORWARDED] === 'true');
    if (!seen.has(auditID) && forwarded) result.forwardedUnseen[forwarded.source] = (result.forwardedUnseen[forwarded.source] ?? 0) + 1;
  }

  for (const [auditID, events] of groupBy(input.apiServer, (event) => event.auditID)) {
    const username = events[0]!.user?.username;
    if (!username || !input.scopedAccounts.has(username)) {
      if (input.declared.has(auditID)) result.declaredUsed.push(auditID);
      else if (isServiceAccount(username) && events.some((event) => event.impersonatedUser) && !isInjectorProbe(events)) {
        unregistered.set(username!, [...(unregistered.get(username!) ?? []), ...events]);
      }
      continue;
    }
    const sidecar = bySidecarId.get(auditID) ?? [];
    const mismatch = (kind: MismatchKind, detail: string) => result.mismatches.push({ kind, auditID, detail, apiServer: events, sidecar });

    const stages = groupBy(events, (event) => event.stage);
    const repeated = [...stages].filter(([, group]) => group.length > 1).map(([stage, group]) => `${group.length} at ${stage}`);
    if (repeated.length > 0) mismatch('executed more than once', `the API server recorded ${repeated.join(', ')} for one auditID`);

    if (sidecar.length === 0) {
      if (isOwnCall(events)) result.ownCalls++;
      else if (input.declared.has(auditID)) result.declaredUsed.push(auditID);
      else {
        const other = elsewhere.get(auditID);
        mismatch('no sidecar event', other ? `only a sidecar of another API server recorded it: ${[...new Set(other.map((r) => r.source))].join(', ')}` : 'no sidecar recorded this auditID');
      }
      continue;
    }

    const sources = new Set(sidecar.map((record) => record.source));
    const sidecarStages = groupBy(sidecar, (record) => record.event.stage);
    if (sources.size > 1 || [...sidecarStages.values()].some((group) => group.length > 1)) {
      mismatch('more than one sidecar event', `${sidecar.length} sidecar events (${sidecar.map((r) => `${r.event.stage} in ${r.source}`).join(', ')})`);
      continue;
    }

    const theirs = events.find((event) => event.impersonatedUser) ?? events[0]!;
    const before = result.mismatches.length;
    for (const { event: ours } of sidecar) {
      if (ours.annotations?.[FORWARDED] !== 'true') mismatch('not forwarded', `the sidecar's ${ours.stage} event says ${FORWARDED}=${JSON.stringify(ours.annotations?.[FORWARDED])}, yet the API server ran it`);
      if (ours.verb !== theirs.verb) mismatch('verb', `API server ${JSON.stringify(theirs.verb)}, sidecar ${JSON.stringify(ours.verb)} (${ours.stage})`);
      const refDifference = objectRefDifference(theirs.objectRef, ours.objectRef);
      if (refDifference) mismatch('objectRef', `${refDifference} (${ours.stage})`);
      if (theirs.impersonatedUser) {
        const difference = userDifference(theirs.impersonatedUser, ours.impersonatedUser);
        if (difference) mismatch('impersonated user', `${difference} (${ours.stage})`);
      } else {
        const refused = events.some((event) => event.responseStatus?.code === 403);
        if (!refused || !ours.impersonatedUser) {
          mismatch('not impersonated', `the API server ran it as ${username} itself (code ${events.map((e) => e.responseStatus?.code).join('/')}); the sidecar's event names ${ours.impersonatedUser ? JSON.stringify(ours.impersonatedUser.username) : 'no impersonated user'}`);
        }
      }
    }
    if (result.mismatches.length === before) {
      result.joined++;
      const verb = theirs.objectRef?.subresource ? `${theirs.verb} ${theirs.objectRef.subresource}` : theirs.verb;
      result.verbs[verb] = (result.verbs[verb] ?? 0) + 1;
    }
  }

  for (const [username, events] of unregistered) {
    const ids = [...new Set(events.map((event) => event.auditID))];
    result.mismatches.push({
      kind: 'unregistered impersonator',
      auditID: ids[0]!,
      detail: `${username} impersonated in ${ids.length} request(s) but is no registered sidecar's scoped account: register the sidecar's audit log (local-cluster/audit-join.ts), or declare a test's own use of the token`,
      apiServer: events.filter((event) => event.auditID === ids[0]),
      sidecar: [],
    });
  }
  return result;
}

// ---- the report ----

function summary(event: JoinEvent): string {
  const ref = event.objectRef ? OBJECT_REF_FIELDS.filter((f) => event.objectRef![f]).map((f) => `${f}=${event.objectRef![f]}`).join(',') : '-';
  const who = (user: JoinUser | undefined) => (user ? `${text(user.username)}${user.uid ? `(uid ${user.uid})` : ''} groups=${JSON.stringify(user.groups ?? [])}${user.extra && Object.keys(user.extra).length > 0 ? ` extra=${JSON.stringify(user.extra)}` : ''}` : '-');
  const forwarded = event.annotations?.[FORWARDED];
  return [
    `${event.stage} ${event.verb} ${event.requestURI}`,
    `objectRef ${ref}`,
    `user ${who(event.user)}`,
    `impersonated ${who(event.impersonatedUser)}`,
    `code ${event.responseStatus?.code ?? '-'}`,
    ...(forwarded !== undefined ? [`forwarded ${forwarded}`] : []),
    ...(event.userAgent ? [`userAgent ${JSON.stringify(event.userAgent.slice(0, 80))}`] : []),
  ].join(' | ');
}

/** What mismatches of one kind share: the kind, the detail with its values left out, the sidecar logs. */
function shapeOf(m: Mismatch): string {
  const detail = m.detail.replace(/"(?:[^"\\]|\\.)+"/g, '"…"').replace(/\d+/g, 'N');
  return `${m.kind} | ${detail} | ${[...new Set(m.sidecar.map((r) => r.source))].join(', ')}`;
}

/**
 * A readable account of the mismatches: those of one shape together, largest group first, each with
 * how many there are and a few examples with the API server's events and the sidecar's.
 */
export function formatMismatches(mismatches: readonly Mismatch[], examples = 3): string {
  const lines: string[] = [];
  const groups = [...groupBy(mismatches, shapeOf).values()].sort((a, b) => b.length - a.length);
  for (const group of groups) {
    const first = group[0]!;
    const sources = [...new Set(first.sidecar.map((r) => r.source))];
    lines.push(`- ${first.kind}: ${group.length} request${group.length === 1 ? '' : 's'}${sources.length > 0 ? ` through ${sources.join(', ')}` : ''}`);
    for (const m of group.slice(0, examples)) {
      lines.push(`  auditID ${m.auditID}: ${m.detail}`);
      for (const event of m.apiServer) lines.push(`    API server: ${summary(event)}`);
      for (const record of m.sidecar) lines.push(`    sidecar (${record.source}): ${summary(record.event)}`);
    }
    if (group.length > examples) lines.push(`  … and ${group.length - examples} more like these`);
  }
  return lines.join('\n');
}

// ---- the registry ----

export const JOIN_DIR_VARIABLE = 'TEST_CHAPERONE_AUDIT_JOIN_DIR';

interface ControlPlaneEntry {
  kind: 'control-plane';
  id: string;
  label: string;
  url: string;
  /** Its directory: the live audit log (audit.log and lumberjack's rotated audit-*.log) is there. */
  dir: string;
  /** Where its logs were copied when it stopped. */
  preserved?: string;
}

interface SidecarEntry {
  kind: 'sidecar';
  id: string;
  label: string;
  /** The id (directory) of the control plane its scoped token belongs to; none for a stand-in upstream. */
  controlPlane?: string;
  serviceAccount?: string;
  /** The file sink's file (and its rotated <file>.1, <file>.2, …). */
  file?: string;
  preserved?: string;
}

/** An audit webhook receiver of a test: the EventLists it received, one per line, as their bytes. */
interface WebhookReceiverEntry {
  kind: 'webhook-receiver';
  id: string;
  label: string;
  file: string;
}

type Entry = ControlPlaneEntry | SidecarEntry | WebhookReceiverEntry;

interface Registry {
  dir: string;
  entries: Map<string, Entry>;
  /** Event text read at join time, for sidecars whose events are only in memory (an image's standard output). */
  readers: Map<string, () => string>;
  declared: Map<string, string>;
}

// On globalThis: mocha may load this module twice (require and import), and both must share it.
// By directory, so a test of the registry can point it elsewhere for a while.
const KEY = Symbol.for('chaperone.test.auditJoin');
const holder = globalThis as typeof globalThis & { [KEY]?: Map<string, Registry> };

/** Arms the registry for this run (test/setup.ts): child processes inherit the directory. */
export function armAuditJoin(): void {
  process.env[JOIN_DIR_VARIABLE] ??= path.join(tmpdir(), `chaperone-audit-join-${process.pid}-${randomUUID().slice(0, 8)}`);
}

function registry(): Registry | undefined {
  const dir = process.env[JOIN_DIR_VARIABLE];
  if (!dir) return undefined;
  const registries = (holder[KEY] ??= new Map<string, Registry>());
  let reg = registries.get(dir);
  if (!reg) registries.set(dir, (reg = { dir, entries: new Map(), readers: new Map(), declared: new Map() }));
  return reg;
}

function save(reg: Registry, entry: Entry): void {
  reg.entries.set(entry.id, entry);
  mkdirSync(path.join(reg.dir, 'entries'), { recursive: true });
  writeFileSync(path.join(reg.dir, 'entries', `${entry.id}.json`), JSON.stringify(entry));
}

/** The test file (or the demo) that called, for the report. */
function callerLabel(what: string): string {
  const frames = (new Error().stack ?? '').split('\n');
  const frame = frames.find((line) => /\/test\/(e2e|hardening)\/|\/cli\/demo\.ts/.test(line));
  const where = frame ? /([^/\s(]+\/[^/\s(]+\.ts):(\d+)/.exec(frame) : null;
  return where ? `${what} (${where[1]}:${where[2]})` : what;
}

const newId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 13)}`;

/** A control plane's audit log joins its sidecars' at the end of the run. */
export function registerControlPlane(cp: { dir: string; url: string }): void {
  const reg = registry();
  if (!reg) return;
  save(reg, { kind: 'control-plane', id: path.basename(cp.dir), label: callerLabel(`control plane ${cp.url}`), url: cp.url, dir: cp.dir });
}

const isApiServerLog = (name: string) => /^audit(-.+)?\.log$/.test(name);

/** Copies the control plane's audit logs before its directory is removed. */
export async function preserveControlPlaneLog(cp: { dir: string }): Promise<void> {
  const reg = registry();
  const entry = reg?.entries.get(path.basename(cp.dir));
  if (!reg || entry?.kind !== 'control-plane' || !existsSync(cp.dir)) return;
  const target = path.join(reg.dir, entry.id);
  mkdirSync(target, { recursive: true });
  for (const name of readdirSync(cp.dir).filter(isApiServerLog)) await copyFile(path.join(cp.dir, name), path.join(target, name));
  save(reg, { ...entry, preserved: target });
}

export interface SidecarRegistration {
  /** The control plane the sidecar's scoped token belongs to (whatever --upstream it goes through); none for a stand-in. */
  controlPlane?: { dir: string };
  /** Its scoped account's username. */
  serviceAccount?: string;
  /** Its file sink's file. */
  file?: string;
  /** Or, for events only in memory, what reads them at the end (JSON lines; other lines are skipped). */
  read?: () => string;
  what?: string;
}

export interface SidecarHandle {
  id: string;
}

/** A sidecar's audit events join its control plane's log at the end of the run. */
export function registerSidecarAuditLog(registration: SidecarRegistration): SidecarHandle {
  const reg = registry();
  const id = newId('sidecar');
  if (!reg) return { id };
  save(reg, {
    kind: 'sidecar',
    id,
    label: callerLabel(registration.what ?? 'sidecar'),
    ...(registration.controlPlane ? { controlPlane: path.basename(registration.controlPlane.dir) } : {}),
    ...(registration.serviceAccount ? { serviceAccount: registration.serviceAccount } : {}),
    ...(registration.file ? { file: registration.file } : {}),
  });
  if (registration.read) reg.readers.set(id, registration.read);
  return { id };
}

function sidecarFiles(file: string): string[] {
  const backups: string[] = [];
  for (let n = 1; existsSync(`${file}.${n}`); n++) backups.unshift(`${file}.${n}`);
  return [...backups, ...(existsSync(file) ? [file] : [])];
}

/** Copies a sidecar's audit file (and its rotated ones) before it is removed; call after the sidecar stopped. */
export async function preserveSidecarAuditLog(handle: SidecarHandle): Promise<void> {
  const reg = registry();
  const entry = reg?.entries.get(handle.id);
  if (!reg || entry?.kind !== 'sidecar' || !entry.file) return;
  const files = sidecarFiles(entry.file);
  if (files.length === 0) return;
  const target = path.join(reg.dir, entry.id);
  mkdirSync(target, { recursive: true });
  await writeFile(path.join(target, 'audit.jsonl'), files.map((file) => readFileSync(file, 'utf8')).join(''));
  save(reg, { ...entry, preserved: path.join(target, 'audit.jsonl') });
}

/**
 * An audit webhook receiver of this run: it appends every request body it receives to the file this
 * returns, one per line, and at the end of the run each must be an EventList the API server's Go
 * types decode strictly. Undefined outside a test run (nothing to append to).
 */
export function registerAuditWebhookReceiver(what = 'audit webhook receiver'): string | undefined {
  const reg = registry();
  if (!reg) return undefined;
  const id = newId('webhook');
  const file = path.join(reg.dir, id, 'eventlists.jsonl');
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '');
  save(reg, { kind: 'webhook-receiver', id, label: callerLabel(what), file });
  return file;
}

/**
 * Says that no sidecar event is expected for this auditID: a test used a scoped token straight
 * against the API server, or its sidecar's audit policy records nothing for the request. Exactly one
 * request; a sidecar event, if there is one, is still checked.
 */
export function declareNoSidecarEvent(auditID: string | string[] | undefined, reason: string): void {
  const reg = registry();
  if (!reg) return;
  const id = Array.isArray(auditID) ? auditID[0] : auditID;
  if (!id) throw new Error(`declareNoSidecarEvent: no auditID (${reason}); the API server answers every request it audits with an Audit-Id header`);
  reg.declared.set(id, reason);
  mkdirSync(path.join(reg.dir, 'declared'), { recursive: true });
  writeFileSync(path.join(reg.dir, 'declared', `${id}.json`), JSON.stringify({ auditID: id, reason }));
}

// ---- reading the logs, and the join of the whole run ----

async function* jsonLines(files: readonly string[]): AsyncGenerator<unknown> {
  for (const file of files) {
    const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
    for await (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        yield JSON.parse(line) as unknown;
      } catch {
        // a line cut short by a process that was killed: it is not an event
      }
    }
  }
}

function asEvent(value: unknown): JoinEvent | undefined {
  const event = value as Partial<JoinEvent> & { apiVersion?: string; kind?: string };
  return event?.kind === 'Event' && event.apiVersion === 'audit.k8s.io/v1' && typeof event.auditID === 'string' ? (event as JoinEvent) : undefined;
}

async function readEvents(files: readonly string[], keep: (event: JoinEvent) => boolean = () => true): Promise<JoinEvent[]> {
  const events: JoinEvent[] = [];
  for await (const value of jsonLines(files)) {
    const event = asEvent(value);
    if (event && keep(event)) events.push(event);
  }
  return events;
}

function apiServerFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  // lumberjack's backups (audit-<time>.log) are older than audit.log and sort by time.
  return readdirSync(dir).filter(isApiServerLog).sort((a, b) => (a === 'audit.log' ? 1 : b === 'audit.log' ? -1 : a.localeCompare(b))).map((name) => path.join(dir, name));
}

function loadEntries(reg: Registry): Entry[] {
  const entries = new Map<string, Entry>();
  const dir = path.join(reg.dir, 'entries');
  if (existsSync(dir)) for (const name of readdirSync(dir)) {
    const entry = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as Entry;
    entries.set(entry.id, entry);
  }
  for (const [id, entry] of reg.entries) entries.set(id, entry);
  return [...entries.values()];
}

function loadDeclared(reg: Registry): Map<string, string> {
  const declared = new Map(reg.declared);
  const dir = path.join(reg.dir, 'declared');
  if (existsSync(dir)) for (const name of readdirSync(dir)) {
    const { auditID, reason } = JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as { auditID: string; reason: string };
    declared.set(auditID, reason);
  }
  return declared;
}

async function sidecarRecords(reg: Registry, entry: SidecarEntry): Promise<SidecarRecord[]> {
  const reader = reg.readers.get(entry.id);
  if (reader) {
    // Kept with the other copies, so a failed run's directory holds every log.
    const target = path.join(reg.dir, entry.id);
    mkdirSync(target, { recursive: true });
    await writeFile(path.join(target, 'audit.jsonl'), reader());
    entry = { ...entry, preserved: path.join(target, 'audit.jsonl') };
    save(reg, entry);
  }
  const events = await readEvents(entry.preserved ? [entry.preserved] : entry.file ? sidecarFiles(entry.file) : []);
  return events.map((event) => ({ source: entry.label, event }));
}

export interface RunJoinResult {
  ok: boolean;
  /** What was joined, and every mismatch. */
  report: string;
  /** Where the copies are (kept when the join failed). */
  dir: string;
}

/** The files a sidecar's events are in, once sidecarRecords has read them. */
function sidecarEventFiles(reg: Registry, entry: SidecarEntry): string[] {
  if (reg.readers.has(entry.id)) return [path.join(reg.dir, entry.id, 'audit.jsonl')];
  return entry.preserved ? [entry.preserved] : entry.file ? sidecarFiles(entry.file) : [];
}

/**
 * Joins every control plane's audit log of this run with its sidecars' logs, and decodes every
 * sidecar event strictly with the API server's Go types (audit-schema.ts; checkSchema: false leaves
 * that out); undefined when no control plane ran.
 */
export async function runAuditJoin(options: { checkSchema?: boolean } = {}): Promise<RunJoinResult | undefined> {
  const reg = registry();
  if (!reg) return undefined;
  const entries = loadEntries(reg);
  const controlPlanes = entries.filter((e): e is ControlPlaneEntry => e.kind === 'control-plane');
  if (controlPlanes.length === 0) return undefined;
  const sidecars = entries.filter((e): e is SidecarEntry => e.kind === 'sidecar');
  const declared = loadDeclared(reg);
  const records = new Map<string, SidecarRecord[]>();
  for (const sidecar of sidecars) records.set(sidecar.id, await sidecarRecords(reg, sidecar));

  const lines: string[] = [];
  const every: string[] = [];
  let ok = true;
  const declaredUsed = new Set<string>();
  for (const cp of controlPlanes) {
    const files = apiServerFiles(cp.preserved ?? cp.dir);
    const mine = sidecars.filter((s) => s.controlPlane === cp.id);
    const scopedAccounts = new Set(mine.flatMap((s) => (s.serviceAccount ? [s.serviceAccount] : [])));
    if (files.length === 0) {
      ok = false;
      lines.push(`${cp.label}: its audit log is gone (it was neither copied when it stopped nor left in ${cp.dir}); nothing could be joined`);
      continue;
    }
    // Only what the join reads: requests by service accounts (the scoped ones, and any that impersonates).
    const apiServer = await readEvents(files, (event) => isServiceAccount(event.user?.username));
    const result = joinAuditLogs({
      apiServer,
      sidecars: mine.flatMap((s) => records.get(s.id) ?? []),
      elsewhere: sidecars.filter((s) => s.controlPlane !== cp.id).flatMap((s) => records.get(s.id) ?? []),
      scopedAccounts,
      declared,
    });
    result.declaredUsed.forEach((id) => declaredUsed.add(id));
    lines.push(
      `${cp.label}: ${result.joined} requests under ${scopedAccounts.size} scoped accounts joined with ${mine.length} sidecar logs; ` +
        `${result.ownCalls} of the sidecars' own calls; ${result.declaredUsed.length} declared; ${result.mismatches.length} mismatches`,
    );
    const unseen = Object.entries(result.forwardedUnseen);
    if (unseen.length > 0) lines.push(`  forwarded by a sidecar, never recorded by this API server (not checked): ${unseen.map(([source, n]) => `${n} through ${source}`).join(', ')}`);
    const verbs = Object.entries(result.verbs).sort(([a], [b]) => a.localeCompare(b));
    if (verbs.length > 0) lines.push(`  joined by verb: ${verbs.map(([verb, n]) => `${verb} ${n}`).join(', ')}`);
    if (result.mismatches.length > 0) {
      ok = false;
      lines.push(formatMismatches(result.mismatches));
      every.push(`${cp.label}:`, formatMismatches(result.mismatches, Infinity));
    }
  }
  if (options.checkSchema !== false) {
    const receivers = entries.filter((e): e is WebhookReceiverEntry => e.kind === 'webhook-receiver');
    const schema = await checkAuditSchema(sidecars.flatMap((sidecar) => sidecarEventFiles(reg, sidecar)));
    const batches = await checkAuditSchema(receivers.map((receiver) => receiver.file), { eventLists: true });
    for (const [result, what] of [
      [schema, `${schema.events} sidecar events decoded strictly with the API server's Go types (test/fixtures/audit-checker)`],
      [batches, `${batches.lists} EventLists (${batches.events} events) that ${receivers.length} audit webhook receivers got, decoded strictly the same way`],
    ] as const) {
      lines.push(`${what}: ${result.problems.length} problems`);
      if (result.problems.length > 0) {
        ok = false;
        lines.push(formatSchemaProblems(result.problems));
      }
    }
  }
  const unused = [...declared].filter(([id]) => !declaredUsed.has(id));
  if (unused.length > 0) lines.push(`${unused.length} declared auditIDs were not found under a service account (not audited, or the request never reached an API server): ${unused.slice(0, 5).map(([id, why]) => `${id} (${why})`).join('; ')}`);
  const report = lines.join('\n');
  await writeFile(path.join(reg.dir, 'report.txt'), `${report}\n${every.length > 0 ? `\nEvery mismatch:\n${every.join('\n')}\n` : ''}`).catch(() => undefined);
  return { ok, report, dir: reg.dir };
}

/** Removes the run's copies. */
export async function removeAuditJoinCopies(): Promise<void> {
  const dir = process.env[JOIN_DIR_VARIABLE];
  if (dir) await rm(dir, { recursive: true, force: true });
}
