// The sizes and durations of a full run (about 12 minutes on two cores) and of a --quick one, which
// only shows that the harness works.
import { InvalidArgumentError } from 'commander';
import type { BenchSettings } from './results.js';

export const FULL: BenchSettings = {
  quick: false,
  seconds: 4,
  warmupSeconds: 1,
  concurrencies: [1, 16, 64],
  http2Shapes: [
    { connections: 1, streams: 1 },
    { connections: 1, streams: 16 },
    { connections: 4, streams: 16 },
  ],
  objects: { list: 500, paged: 5000, pageSize: 500 },
  watches: 1000,
  watchUpdates: 20,
  startupRuns: 5,
  warmup: { seconds: 40, compared: 10 },
  soakSeconds: 240,
  soakPhaseSeconds: 10,
  soakWatches: 200,
  admissionConcurrencies: [1, 50],
  podCreateConcurrencies: [1, 16],
};

export const QUICK: BenchSettings = {
  ...FULL,
  quick: true,
  seconds: 2,
  warmupSeconds: 0.5,
  objects: { list: 100, paged: 1000, pageSize: 100 },
  watches: 100,
  watchUpdates: 5,
  startupRuns: 2,
  warmup: { seconds: 15, compared: 5 },
  soakSeconds: 30,
  soakPhaseSeconds: 3,
  soakWatches: 50,
};

/** A command-line value that must be a whole number above 0. */
export function positiveInteger(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0) throw new InvalidArgumentError(`${value} is not a whole number above 0`);
  return number;
}
