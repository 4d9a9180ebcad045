// A run's results with nothing measured, for the report's tests to add their sections to.
import type { BenchResults } from '../../../bench/results.js';
import { FULL } from '../../../bench/settings.js';

export function benchResults(overrides: Partial<BenchResults>): BenchResults {
  return {
    startedAt: '',
    finishedAt: '',
    command: 'npm run bench',
    machine: { cpus: 2, cpuModel: 'test', memoryBytes: 0, os: 'test', node: 'v24' },
    busyBefore: { load: [0, 0, 0], processes: {} },
    busyAfter: { load: [0, 0, 0], processes: {} },
    kubernetes: 'v1.37.2',
    settings: FULL,
    sections: [],
    ...overrides,
  };
}
