#!/usr/bin/env node
// The chaperone command for people.
import { Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '../lib/config.js';
import { runDemo } from './demo.js';
import { runKubeconfig } from './kubeconfig.js';

function duration(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new InvalidArgumentError(`"${text}" is not a duration (examples: 30m, 8h)`);
  return Math.round(ms / 1000);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

const program = new Command('chaperone').description('Kubernetes auth proxy sidecar for dashboards and tools');

program
  .command('demo')
  .description('run chaperone on a local control plane (builds kube-apiserver and etcd on first use)')
  .action(runDemo);

program
  .command('kubeconfig')
  .description('issue a short-lived client certificate from the identity CA and write a kubeconfig that reaches the API server through a sidecar')
  .requiredOption('--user <name>', 'the person: the certificate CN, which becomes the username')
  .option('--group <name>', 'a group (the certificate O); repeat for more', collect, [])
  .option('--ttl <duration>', 'how long the certificate is valid (at most 168h)', duration, 8 * 3600)
  .option('--server <url>', 'the sidecar as the person reaches it', 'https://127.0.0.1:6443')
  .requiredOption('--identity-ca-cert <file>', 'the identity CA certificate (PEM)')
  .requiredOption('--identity-ca-key <file>', 'the identity CA private key (PEM)')
  .requiredOption('--serving-ca <file>', "the CA bundle that signed the sidecar's serving certificate (PEM)")
  .option('-o, --output <file>', 'write the kubeconfig here (mode 0600) instead of to stdout')
  .action((options: { user: string; group: string[]; ttl: number; server: string; identityCaCert: string; identityCaKey: string; servingCa: string; output?: string }) =>
    runKubeconfig({ ...options, ttlSeconds: options.ttl }),
  );

await program.parseAsync(process.argv);
