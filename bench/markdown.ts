// Markdown tables and the number formats the benchmark report uses.

export type Align = 'left' | 'right';

export interface Column {
  title: string;
  align?: Align;
}

/** A GitHub-flavoured markdown table; cells are escaped so a `|` cannot break a row. */
export function markdownTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  for (const [i, row] of rows.entries()) {
    if (row.length !== columns.length) throw new Error(`row ${i} has ${row.length} cells for ${columns.length} columns`);
  }
  const escape = (cell: string) => cell.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
  const header = columns.map((c) => escape(c.title));
  const body = rows.map((row) => row.map(escape));
  const widths = columns.map((_, i) => Math.max(3, header[i]!.length, ...body.map((row) => row[i]!.length)));
  const pad = (cell: string, i: number) => (columns[i]!.align === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!));
  const line = (cells: string[]) => `| ${cells.map(pad).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (columns[i]!.align === 'right' ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), rule, ...body.map(line)].join('\n');
}

/** Milliseconds with a precision that suits their size: 0.42, 3.1, 27, 1234. */
export function ms(value: number): string {
  const abs = Math.abs(value);
  if (abs < 10) return value.toFixed(2);
  if (abs < 100) return value.toFixed(1);
  return value.toFixed(0);
}

/** A difference in milliseconds, always signed: +0.31, -0.05. */
export function signedMs(value: number): string {
  return `${value >= 0 ? '+' : '-'}${ms(Math.abs(value))}`;
}

export function ratio(value: number): string {
  return value.toFixed(2);
}

export function perSecond(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

export function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}
