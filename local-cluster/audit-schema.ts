// Every sidecar audit event a test run produced (and every EventList its audit webhook receivers got), decoded strictly with the API server's Go types
// (test/fixtures/audit-checker: k8s.io/apiserver/pkg/apis/audit/v1, unknown and duplicate fields
// refused), so that the format cannot drift from what a security team's pipeline reads. Run at the
// end of the audit join (audit-join.ts), over the same files.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ensureAuditChecker } from './binaries.js';

export interface SchemaProblem {
  file: string;
  line: number;
  auditID?: string;
  problem: string;
}

export interface SchemaResult {
  events: number;
  /** How many lines were EventLists. */
  lists: number;
  problems: SchemaProblem[];
}

/**
 * Decodes every event in these files (JSON lines: Events, or EventLists) with the Go types; the
 * problems found. `eventLists`: every line must be an EventList (what an audit webhook receives).
 */
export async function checkAuditSchema(files: readonly string[], options: { eventLists?: boolean } = {}): Promise<SchemaResult> {
  const present = files.filter((file) => existsSync(file));
  if (present.length === 0) return { events: 0, lists: 0, problems: [] };
  const checker = await ensureAuditChecker();
  const args = [...(options.eventLists ? ['-eventlists'] : []), ...present];
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(checker, args, { maxBuffer: 256 * 1024 * 1024 }, (err, out, stderr) => (err ? reject(new Error(`the audit checker failed: ${err.message} ${stderr}`)) : resolve(out))),
  );
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as SchemaProblem | { events: number; lists: number; problems: number });
  const summary = lines.pop() as { events: number; lists: number };
  return { events: summary.events, lists: summary.lists, problems: lines as SchemaProblem[] };
}

/** The problems, a few of each kind, for the run's report. */
export function formatSchemaProblems(problems: readonly SchemaProblem[], examples = 5): string {
  const byKind = new Map<string, SchemaProblem[]>();
  for (const p of problems) {
    const kind = p.problem.replace(/"(?:[^"\\]|\\.)*"/g, '"…"');
    byKind.set(kind, [...(byKind.get(kind) ?? []), p]);
  }
  return [...byKind.values()]
    .map((group) => [`- ${group.length} × ${group[0]!.problem}`, ...group.slice(0, examples).map((p) => `  ${p.file}:${p.line}${p.auditID ? ` (auditID ${p.auditID})` : ''}`)].join('\n'))
    .join('\n');
}
