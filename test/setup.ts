// Loaded by mocha before any test (see .mocharc.json).
import { stopSharedControlPlane } from './cluster/shared.js';

const REQUIRED_NODE_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major !== REQUIRED_NODE_MAJOR) {
  throw new Error(
    `The tests run on Node.js ${REQUIRED_NODE_MAJOR} (the runtime chaperone ships), but this is ${process.version}. ` +
      'Run them through npm (npm test), which puts the pinned node from node_modules/.bin first on PATH, or run npx mocha.',
  );
}

export async function mochaGlobalTeardown(): Promise<void> {
  await stopSharedControlPlane();
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void stopSharedControlPlane().finally(() => process.exit(130));
  });
}
