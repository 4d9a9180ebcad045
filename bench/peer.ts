// A peer proxy a user points the bench at (--peer kube-oidc-proxy=<binary>), run on the bench's
// control plane with the same OpenID provider and person as the sidecar, and with kube-oidc-proxy's
// flags: its own service account with impersonate rights (the sidecar's role), the ID token's `sub`
// as the username and its `groups` as groups. chaperone neither builds nor ships peers.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { kubeconfigYaml } from '../lib/kubeconfig.js';
import { freePort, type ControlPlane } from '../local-cluster/control-plane.js';
import type { AdminClients } from '../local-cluster/kube.js';
import type { People } from './people.js';
import { residentBytes, waitUntilOk, type BundleProcess } from './processes.js';
import { impersonatingServiceAccount } from './sidecar.js';

export interface PeerSpec {
  name: string;
  binary: string;
}

export interface BenchPeer extends BundleProcess {
  name: string;
  /** https://127.0.0.1:<port> */
  url: string;
}

/** --peer name=binary */
export function parsePeer(value: string): PeerSpec {
  const match = /^([a-z0-9][a-z0-9-]*)=(.+)$/.exec(value);
  if (!match) throw new Error(`--peer ${value}: expected <name>=<binary>, e.g. kube-oidc-proxy=/opt/peers/kube-oidc-proxy`);
  return { name: match[1]!, binary: path.resolve(match[2]!) };
}

export async function startPeer(spec: PeerSpec, cp: ControlPlane, clients: AdminClients, people: People, serving: { certFile: string; keyFile: string }, dir: string): Promise<BenchPeer> {
  const file = (name: string) => path.join(dir, `${spec.name}-${name}`);
  const token = await impersonatingServiceAccount(clients, `bench-${spec.name}`, spec.name);
  await writeFile(file('kubeconfig'), kubeconfigYaml(cp.url, cp.ca.certPem, spec.name, { token }), { mode: 0o600 });
  const [port, readinessPort] = [await freePort(), await freePort()];
  const args = [
    `--oidc-issuer-url=${people.oidc.issuer}`,
    `--oidc-client-id=${people.oidc.clientId}`,
    `--oidc-ca-file=${people.oidc.caFile}`,
    '--oidc-username-claim=sub',
    '--oidc-groups-claim=groups',
    `--tls-cert-file=${serving.certFile}`,
    `--tls-private-key-file=${serving.keyFile}`,
    `--kubeconfig=${file('kubeconfig')}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${port}`,
    `--readiness-probe-port=${readinessPort}`,
  ];
  const stderr = openSync(file('log'), 'a');
  const child = spawn(spec.binary, args, { stdio: ['ignore', stderr, stderr] });
  closeSync(stderr);
  // A binary that cannot be started emits 'error' and never 'exit'.
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const peer: BenchPeer = {
    name: spec.name,
    url: `https://127.0.0.1:${port}`,
    child,
    rss: () => residentBytes(child.pid!),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`--peer ${spec.name}: cannot start ${spec.binary}: ${err.message}`)));
    });
    await waitUntilOk(`http://127.0.0.1:${readinessPort}/ready`, peer, `the peer ${spec.name} (its log: ${file('log')})`);
  } catch (err) {
    await peer.stop();
    throw err;
  }
  return peer;
}
