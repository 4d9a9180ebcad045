// How big the hardening suites run, from one knob: CHAPERONE_HARDENING=long (npm run
// test:hardening) for the long versions, anything else unset for the short ones inside npm test.
// And the fuzzing runner every property shares: a seed chosen per run (or given), printed with the
// exact command that replays a failure.
import path from 'node:path';
import fc from 'fast-check';

const KNOB = 'CHAPERONE_HARDENING';
const level = process.env[KNOB] ?? 'short';
if (level !== 'short' && level !== 'long') throw new Error(`${KNOB} is "short" (the default) or "long", not ${JSON.stringify(level)}`);

export const LONG = level === 'long';

/** The short value inside npm test, the long one under npm run test:hardening. */
export function size<T>(short: T, long: T): T {
  return LONG ? long : short;
}

/** One line for the figures in docs/reliability.md; only the long run prints them. */
export function figure(line: string): void {
  if (LONG) process.stdout.write(`      [hardening] ${line}\n`);
}

const SEED = 'CHAPERONE_FUZZ_SEED';
const SHRINK_PATH = 'CHAPERONE_FUZZ_PATH';

function seedFromEnvironment(): number | undefined {
  const text = process.env[SEED];
  if (text === undefined) return undefined;
  const seed = Number(text);
  if (!Number.isInteger(seed)) throw new Error(`${SEED} must be an integer, not ${JSON.stringify(text)}`);
  return seed;
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export interface FuzzRuns {
  short: number;
  long: number;
}

/**
 * Runs a property for its number of cases. A failure names the seed and the shrink path, and the
 * command that replays exactly that case.
 */
export async function fuzz<T>(test: Mocha.Context, property: fc.IProperty<T> | fc.IAsyncProperty<T>, runs: FuzzRuns): Promise<number> {
  const seed = seedFromEnvironment() ?? (Math.random() * 2 ** 31) | 0;
  const replayPath = process.env[SHRINK_PATH];
  const parameters: fc.Parameters<T> = { seed, numRuns: size(runs.short, runs.long), ...(replayPath ? { path: replayPath, endOnFailure: true } : {}) };
  const details = await fc.check(property as fc.IAsyncProperty<T>, parameters);
  const title = test.test?.fullTitle() ?? '';
  if (details.failed) {
    const file = path.relative(process.cwd(), test.test?.file ?? 'test/hardening');
    const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(
      `${fc.defaultReportMessage(details) ?? 'the property failed'}\nFailure: ${cause}\n` +
        `Replay: ${SEED}=${details.seed} ${SHRINK_PATH}=${details.counterexamplePath ?? ''} CHAPERONE_HARDENING=${level} npx mocha ${file} --fgrep ${shellQuote(test.test?.title ?? '')}`,
    );
  }
  figure(`${title}: ${details.numRuns} cases, seed ${details.seed}`);
  return details.numRuns;
}

/**
 * For properties whose cases are expensive (a certificate shown to two servers): once a failure has
 * been found, shrinking stops after the budget and the smallest counterexample so far is reported.
 */
export function shrinkBudget<A extends unknown[]>(predicate: (...args: A) => Promise<void>, budgetMs = 120_000): (...args: A) => Promise<void> {
  let failedAt: number | undefined;
  return async (...args: A) => {
    fc.pre(failedAt === undefined || Date.now() - failedAt < budgetMs);
    try {
      await predicate(...args);
    } catch (err) {
      failedAt ??= Date.now();
      throw err;
    }
  };
}
