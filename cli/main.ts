#!/usr/bin/env node
// The chaperone command for people.
import { Command } from 'commander';
import { runDemo } from './demo.js';

const program = new Command('chaperone').description('Kubernetes auth proxy sidecar for dashboards and tools');

program
  .command('demo')
  .description('run chaperone on a local control plane (builds kube-apiserver and etcd on first use)')
  .action(runDemo);

await program.parseAsync(process.argv);
