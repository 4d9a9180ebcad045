// Loaded by mocha before any test (see .mocharc.json).
import { armAuditJoin, removeAuditJoinCopies, runAuditJoin } from '../local-cluster/audit-join.js';
import { stopSharedControlPlane } from './support/shared.js';

const REQUIRED_NODE_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major !== REQUIRED_NODE_MAJOR) {
  throw new Error(
    `The tests run on Node.js ${REQUIRED_NODE_MAJOR} (the runtime chaperone ships), but this is ${process.version}. ` +
      'Run them through npm (npm test), which puts the pinned node from node_modules/.bin first on PATH, or run npx mocha.',
  );
}

const EXIT_GRACE_MS = 30_000;

// Every control plane and sidecar of the run registers its audit log; after the last test, each API
// server's log is joined with its sidecars' (local-cluster/audit-join.ts, the README's Tests). A run
// that started no control plane (the unit tests) joins nothing.
armAuditJoin();

export const mochaHooks = {
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(10 * 60_000);
    await stopSharedControlPlane(); // its log, complete and copied
    const join = await runAuditJoin();
    if (join && !join.ok) {
      throw new Error(
        'The audit join failed: requests an API server ran for a scoped service account do not match the sidecars\' audit events one to one ' +
          `(local-cluster/audit-join.ts, joinAuditLogs, says what must match).\n${join.report}\nEvery log of the run is kept in ${join.dir}`,
      );
    }
    if (join) process.stderr.write(`[audit join] ${join.report.replaceAll('\n', '\n[audit join] ')}\n`);
    await removeAuditJoinCopies();
  },
};

export async function mochaGlobalTeardown(): Promise<void> {
  await stopSharedControlPlane();
  // A test that leaves a server or socket open keeps mocha from exiting, and CI would hang until its
  // time limit. Fail instead, quickly, naming what is still open.
  setTimeout(() => {
    process.stderr.write(`mocha had not exited ${EXIT_GRACE_MS / 1000}s after the last test; still open: ${process.getActiveResourcesInfo().join(', ')}\n`);
    process.exit(1);
  }, EXIT_GRACE_MS).unref();
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void stopSharedControlPlane().finally(() => process.exit(130));
  });
}
