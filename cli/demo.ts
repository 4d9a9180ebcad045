// The demo: a local control plane to try chaperone against. It stays up until Ctrl-C.
import { startControlPlane } from '../test/cluster/control-plane.js';

export async function runDemo(): Promise<void> {
  const cp = await startControlPlane({ log: (line) => process.stdout.write(`[demo] ${line}\n`) });
  process.stdout.write(
    [
      '',
      'A real kube-apiserver and etcd are running on 127.0.0.1. Try, in another terminal:',
      '',
      `  export KUBECONFIG=${cp.adminKubeconfig}`,
      '  kubectl version',
      '  kubectl get namespaces',
      '',
      `The API server's audit log: ${cp.auditLog}`,
      'Press Ctrl-C to stop and clean up.',
      '',
    ].join('\n'),
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stdout.write('\n[demo] stopping the control plane\n');
  await cp.stop();
}
