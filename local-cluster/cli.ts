// npm run control-plane:build — build (or find) kube-apiserver and etcd (the pinned release and the oldest one tested), the CEL oracle, the audit checker, promtool, helm, and the real-pods node's kubelet, pause and in-cluster client, ahead of the tests.
import { ensureAuditChecker, ensureCelOracle, ensureControlPlaneBinaries, ensureInClusterClient, ensureKubelet, ensureNodePause, OLDEST_KUBERNETES_VERSION } from './binaries.js';
import { ensureHelm } from './helm.js';
import { ensurePromtool } from './metrics.js';

const [command] = process.argv.slice(2);
if (command !== 'build') {
  process.stderr.write('usage: tsx local-cluster/cli.ts build\n');
  process.exit(2);
}
const started = Date.now();
const binaries = await ensureControlPlaneBinaries();
process.stderr.write(
  `[control-plane] kube-apiserver: ${binaries.kubeApiserver}\n[control-plane] etcd: ${binaries.etcd}\n[control-plane] (${binaries.source}, ${Math.round((Date.now() - started) / 1000)}s)\n`,
);
const oldestStarted = Date.now();
const oldest = await ensureControlPlaneBinaries(undefined, OLDEST_KUBERNETES_VERSION);
process.stderr.write(`[control-plane] kube-apiserver ${OLDEST_KUBERNETES_VERSION}: ${oldest.kubeApiserver} (${oldest.source}, ${Math.round((Date.now() - oldestStarted) / 1000)}s)\n`);
const oracleStarted = Date.now();
const oracle = await ensureCelOracle();
process.stderr.write(`[control-plane] CEL oracle: ${oracle} (${Math.round((Date.now() - oracleStarted) / 1000)}s)\n`);
const checker = await ensureAuditChecker();
process.stderr.write(`[control-plane] audit checker: ${checker}\n`);
const promtoolStarted = Date.now();
const promtool = await ensurePromtool((line) => process.stderr.write(`[control-plane] ${line}\n`));
process.stderr.write(`[control-plane] promtool: ${promtool} (${Math.round((Date.now() - promtoolStarted) / 1000)}s)\n`);
const helmStarted = Date.now();
const helm = await ensureHelm((line) => process.stderr.write(`[control-plane] ${line}\n`));
process.stderr.write(`[control-plane] helm: ${helm} (${Math.round((Date.now() - helmStarted) / 1000)}s)\n`);
const kubeletStarted = Date.now();
const kubelet = await ensureKubelet();
process.stderr.write(`[control-plane] kubelet: ${kubelet} (${Math.round((Date.now() - kubeletStarted) / 1000)}s)\n`);
process.stderr.write(`[control-plane] node pause: ${await ensureNodePause()}\n[control-plane] in-cluster client: ${await ensureInClusterClient()}\n`);
