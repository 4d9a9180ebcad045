// What `chaperone doctor` says: one finding per check, ok, warn or fail, and for every finding that is
// not ok, what to do about it. Rendered as lines for people or JSON for machines.

export type Status = 'ok' | 'warn' | 'fail';

export interface Finding {
  /** The check, as `area/what`, e.g. `namespace/label`. */
  check: string;
  status: Status;
  /** What was found, in plain words. */
  message: string;
  /** What to do about it; every warn and fail has one. */
  fix?: string;
}

export const ok = (check: string, message: string): Finding => ({ check, status: 'ok', message });
export const warn = (check: string, message: string, fix: string): Finding => ({ check, status: 'warn', message, fix });
export const fail = (check: string, message: string, fix: string): Finding => ({ check, status: 'fail', message, fix });

export interface Report {
  namespace: string;
  pod?: string;
  findings: Finding[];
  summary: Record<Status, number>;
}

export function report(namespace: string, pod: string | undefined, findings: Finding[]): Report {
  const summary: Record<Status, number> = { ok: 0, warn: 0, fail: 0 };
  for (const finding of findings) summary[finding.status]++;
  return { namespace, ...(pod !== undefined ? { pod } : {}), findings, summary };
}

/** 0 when nothing failed, 1 otherwise. */
export function exitCode(result: Report): number {
  return result.summary.fail > 0 ? 1 : 0;
}

export function renderText(result: Report): string {
  const width = Math.max(0, ...result.findings.map((f) => f.check.length));
  const lines = [`chaperone doctor: namespace ${result.namespace}${result.pod !== undefined ? `, pod ${result.pod}` : ''}`, ''];
  for (const finding of result.findings) {
    lines.push(`${finding.status.padEnd(4)}  ${finding.check.padEnd(width)}  ${finding.message}`);
    if (finding.fix) lines.push(`${' '.repeat(width + 8)}fix: ${finding.fix}`);
  }
  const { ok: passed, warn: warned, fail: failed } = result.summary;
  lines.push('', `${failed} fail, ${warned} warn, ${passed} ok`);
  return `${lines.join('\n')}\n`;
}

export function renderJson(result: Report): string {
  return `${JSON.stringify(result, null, 2)}\n`;
}
