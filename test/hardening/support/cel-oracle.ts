// The CEL oracle (test/fixtures/cel-oracle, built by local-cluster/binaries.ts) driven from tests:
// cases in, the API server's answers out, in order; and chaperone's own answer to the same case,
// encoded the same way, so the two can be compared whole.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ensureCelOracle } from '../../../local-cluster/binaries.js';
import { CelCompileError, compile, type ReturnType, type Variable } from '../../../lib/cel/expressions.js';
import {
  CelList,
  CelMap,
  CelType,
  claimsRoot,
  CostLimitExceeded,
  Err,
  evaluate,
  formatDouble,
  Optional,
  Root,
  Uint,
  Unmatched,
  userRoot,
  type UserInput,
  type Val,
} from '../../../lib/cel/runtime.js';

export interface CelCase {
  variable: Variable;
  expression: string;
  returns: ReturnType;
  claims?: Record<string, unknown>;
  user?: UserInput;
}

/** An answer, the oracle's or chaperone's. */
export interface CelAnswer {
  compiled: boolean;
  compileError?: string;
  error?: string;
  costExceeded?: boolean;
  /** chaperone only: it refused the token rather than evaluate it otherwise than the API server. */
  unmatched?: string;
  value?: unknown;
  cost: number;
}

export class CelOracle {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: ((line: string) => void)[] = [];
  private stderr = '';

  private constructor(binary: string) {
    this.child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    createInterface({ input: this.child.stdout }).on('line', (line) => this.waiting.shift()?.(line));
    this.child.on('exit', (code) => {
      for (const resolve of this.waiting.splice(0)) resolve(JSON.stringify({ oracleExited: code, stderr: this.stderr }));
    });
  }

  static async start(): Promise<CelOracle> {
    return new CelOracle(await ensureCelOracle());
  }

  /** The API server's answers, in the order of the cases. */
  async ask(cases: readonly CelCase[]): Promise<CelAnswer[]> {
    const answers = cases.map(
      () =>
        new Promise<CelAnswer>((resolve, reject) =>
          this.waiting.push((line) => {
            const parsed = JSON.parse(line) as CelAnswer & { oracleExited?: number; stderr?: string };
            if (parsed.oracleExited !== undefined) reject(new Error(`the CEL oracle exited (${parsed.oracleExited}): ${parsed.stderr}`));
            else resolve({ ...parsed, cost: parsed.cost ?? 0 });
          }),
        ),
    );
    this.child.stdin.write(cases.map((c) => `${toJson(c)}\n`).join(''));
    return Promise.all(answers);
  }

  close(): void {
    this.child.stdin.end();
  }
}

/** chaperone's answer to a case: compiled (or refused) by cel.ts, evaluated by cel-runtime.ts. */
export function chaperoneAnswer(c: CelCase): CelAnswer {
  let compiled;
  try {
    compiled = compile(c.variable, c.expression, c.returns);
  } catch (err) {
    if (!(err instanceof CelCompileError)) throw err;
    return { compiled: false, compileError: err.message, cost: 0 };
  }
  const root = c.variable === 'claims' ? claimsRoot(c.claims ?? {}) : userRoot(c.user ?? { username: '', uid: '', groups: [], extra: {} });
  try {
    const { value, cost } = evaluate(compiled.ast, c.variable, root);
    if (value instanceof Err) return { compiled: true, error: value.message, cost };
    return { compiled: true, value: encode(value), cost };
  } catch (err) {
    if (err instanceof CostLimitExceeded) return { compiled: true, error: err.message, costExceeded: true, cost: Infinity };
    if (err instanceof Unmatched) return { compiled: true, unmatched: err.message, cost: 0 };
    throw err;
  }
}

const GO_SLICES = { any: '[]interface {}', refval: '[]ref.Val', strings: '[]string' } as const;

/** The oracle's encoding of a value (test/fixtures/cel-oracle/main.go, encode). */
export function encode(v: Val): unknown {
  if (v === null) return { null: true };
  if (typeof v === 'boolean') return { bool: v };
  if (typeof v === 'bigint') return { int: v.toString() };
  if (v instanceof Uint) return { uint: v.value.toString() };
  if (typeof v === 'number') return { double: formatDouble(v) };
  if (typeof v === 'string') return { string: v };
  if (v instanceof CelList) return { list: v.items.map(encode), go: GO_SLICES[v.native] };
  if (v instanceof CelMap) {
    const pairs = [...v.entries].map(([k, item]) => [encode(k), encode(item)] as const);
    pairs.sort((a, b) => compareJson(JSON.stringify(a[0]), JSON.stringify(b[0])));
    return { map: pairs };
  }
  if (v instanceof Optional) return { optional: v.value === undefined ? null : encode(v.value) };
  if (v instanceof CelType) return { type: v.name };
  if (v instanceof Root) return { object: v.typeName };
  throw new Error('unknown value');
}

/** Go's sort of the oracle's JSON keys compares bytes: UTF-8 order, not UTF-16's. */
function compareJson(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Why chaperone's answer breaks its promise (the API server's result, or a refusal), or undefined
 * when it keeps it. A refusal (at compile time, or of the token) is allowed; a different result,
 * a result where the API server fails, or a cost below the API server's, is not.
 */
export function disagreement(api: CelAnswer, ours: CelAnswer): string | undefined {
  if (!api.compiled) return ours.compiled ? `the API server refuses the expression (${api.compileError?.split('\n', 1)[0]}), chaperone accepts it` : undefined;
  if (!ours.compiled || ours.unmatched !== undefined) return undefined;
  if (api.costExceeded) return ours.costExceeded ? undefined : `the API server stops at its cost limit, chaperone does not (cost ${ours.cost})`;
  if (ours.costExceeded) return undefined;
  if (ours.cost < api.cost) return `chaperone's cost ${ours.cost} is below the API server's ${api.cost}`;
  if (api.error !== undefined || ours.error !== undefined) {
    if (api.error !== undefined && ours.error !== undefined) return undefined;
    return api.error !== undefined ? `the API server fails (${api.error}), chaperone gives ${JSON.stringify(ours.value)}` : `chaperone fails (${ours.error}), the API server gives ${JSON.stringify(api.value)}`;
  }
  const [a, b] = [canonical(api.value), canonical(ours.value)];
  return a === b ? undefined : `the API server gives ${a}, chaperone ${b}`;
}

/** JSON with the members of every object in one order, to compare encodings whole. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : 1))) : v,
  );
}

/** JSON.stringify, except that -0 stays -0 (a token may say -0; JSON.stringify writes 0). */
export function toJson(value: unknown): string {
  if (Object.is(value, -0)) return '-0';
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}
