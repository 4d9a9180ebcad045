// How the demo talks to the person running it: numbered steps with their timings, indented details,
// colour only where the terminal takes it.
import { styleText } from 'node:util';

export const INDENT = '   ';

export function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

export const bold = (text: string): string => styleText('bold', text);
export const dim = (text: string): string => styleText('dim', text);
export const good = (text: string): string => styleText('green', text);
export const bad = (text: string): string => styleText('red', text);

export function duration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const seconds = Math.round(ms / 1000);
  return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
}

export interface Step {
  /** A line under the step's title. */
  say(line: string): void;
  /** The step's outcome, with how long it took. */
  done(summary: string): void;
}

export function stepper(): (title: string) => Step {
  let count = 0;
  return (title) => {
    count += 1;
    const started = Date.now();
    say(bold(`${count}. ${title}`));
    return {
      say: (line) => say(`${INDENT}${line}`),
      done: (summary) => say(`${INDENT}${good('✓')} ${summary} ${dim(`(${duration(Date.now() - started)})`)}`),
    };
  };
}
