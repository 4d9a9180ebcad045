#!/usr/bin/env node
// The chaperone command for people.
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../lib/config.js';
import { VERSION } from '../lib/version.js';
import { runDoctor, type DoctorOptions } from './doctor/command.js';
import { runKubeconfig, type KubeconfigCommandOptions } from './kubeconfig.js';
import { DEFAULT_TOKEN_CACHE_DIR, runLogin, type LoginOptions } from './login.js';
import { runRevoke, type RevokeOptions } from './revoke.js';
import { runRotate, type RotateOptions } from './rotate.js';
import { runSymbolise, type SymboliseOptions } from './symbolise.js';

function duration(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new InvalidArgumentError(`"${text}" is not a duration (examples: 30m, 8h)`);
  return Math.round(ms / 1000);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Runs a command; an error is one line on standard error and exit code 1, never a stack trace. */
function failing<A extends unknown[]>(name: string, action: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args) => {
    try {
      const code = await action(...args);
      if (typeof code === 'number') process.exitCode = code;
    } catch (err) {
      process.stderr.write(`chaperone ${name}: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  };
}

/** The options with which a command reaches the cluster, as kubectl's; --namespace for a command that works in one. */
function clusterOptions(command: Command, namespaceHelp?: string): Command {
  command
    .option('--kubeconfig <file>', 'the kubeconfig to use (default: KUBECONFIG, else ~/.kube/config)')
    .option('--context <name>', 'the kubeconfig context to use (default: its current context)');
  if (namespaceHelp) command.option('-n, --namespace <name>', `${namespaceHelp} (default: the context's namespace, else "default")`);
  return command
    .option('--injector-namespace <name>', "the injector's namespace (default: chaperone-system, or the one in --injector-config)")
    .option('--injector-config <file>', "the injector's own YAML config file, if it names what it creates differently from the defaults");
}

const program = new Command('chaperone')
  .description('Kubernetes auth proxy sidecar for dashboards and tools')
  .version(VERSION, '--version', 'print the version and exit')
  .showHelpAfterError()
  .addHelpText('after', '\nRun `chaperone <command> --help` for a command\'s options and examples.');

program
  .command('demo')
  .description('run chaperone on real pods: a local control plane and node (as root, with containerd, runc and the CNI plugins; builds Kubernetes on first use)')
  .addHelpText('after', '\nExample:\n  chaperone demo     # stays up until Ctrl-C, then cleans up')
  // Loaded only when asked for: the demo brings the local control-plane harness with it.
  .action(async () => (await import('./demo.js')).runDemo());

clusterOptions(
  program
    .command('kubeconfig')
    .summary('issue a person a kubeconfig with a short-lived client certificate, to reach the API server through a sidecar')
    .description(
      'issue a short-lived client certificate from the identity CA and write a kubeconfig that reaches the API server through a sidecar. ' +
        'With --request, the key is made here and the injector signs a CertificateSigningRequest for signer chaperone.dev/identity once someone ' +
        'with approve on it approves it (--approve: you, if you may): nobody needs the identity CA key. Without it, the certificate is signed here ' +
        "with the identity CA read from the cluster with your kubeconfig (the Secret chaperone-identity-ca in the injector's namespace: you need get on it, " +
        "key included) or from files. The serving CA bundle comes from the ConfigMap chaperone-ca in the dashboard's namespace unless given",
    )
    .requiredOption('--user <name>', 'the person: the certificate CN, which becomes the username')
    .option('--group <name>', 'a group (the certificate O); repeat for more', collect, [])
    .addOption(new Option('--ttl <duration>', 'how long the certificate is valid (at most 168h)').argParser(duration).default(8 * 3600, '8h'))
    .option('--server <url>', 'the sidecar as the person reaches it', 'https://127.0.0.1:6443')
    .option('--identity-ca-cert <file>', 'the identity CA certificate (PEM), instead of reading it from the cluster')
    .option('--identity-ca-key <file>', 'the identity CA private key (PEM), with --identity-ca-cert')
    .option('--serving-ca <file>', "the CA bundle that signed the sidecar's serving certificate (PEM), instead of reading it from the cluster")
    .option('-o, --output <file>', 'write the kubeconfig here (mode 0600) instead of to stdout')
    .option('--request', 'ask the signer chaperone.dev/identity with a CertificateSigningRequest instead of signing with the identity CA key (--ttl at least 10m)')
    .option('--approve', 'with --request: approve the request too (you need approve on signers/chaperone.dev/identity)')
    .addOption(new Option('--wait <duration>', 'with --request: how long to wait for approval and the certificate').argParser(duration).default(600, '10m')),
  "the dashboard's namespace, whose ConfigMap chaperone-ca holds the serving CA bundle",
)
  .addHelpText(
    'after',
    `
Examples:
  # alice, in group dev, for 8 hours, for the dashboard in namespace team-a (reached with kubectl port-forward):
  chaperone kubeconfig --user alice --group dev --ttl 8h -n team-a -o alice.kubeconfig
  kubectl port-forward -n team-a pod/dashboard 6443:6443 &
  kubectl --kubeconfig alice.kubeconfig get pods -n team-a

  # without the identity CA key: a request an approver approves (kubectl certificate approve <name>)
  chaperone kubeconfig --request --user alice --group dev -n team-a -o alice.kubeconfig

  # from files, with no cluster access:
  chaperone kubeconfig --user bob --identity-ca-cert ca.crt --identity-ca-key ca.key --serving-ca serving-ca.crt`,
  )
  .action(
    failing('kubeconfig', (options: Omit<KubeconfigCommandOptions, 'ttlSeconds' | 'waitSeconds'> & { ttl: number; wait: number }) =>
      runKubeconfig({ ...options, ttlSeconds: options.ttl, waitSeconds: options.wait }),
    ),
  );

clusterOptions(
  program
    .command('revoke')
    .summary("refuse a person's client certificates at every running sidecar, without a restart")
    .description(
      'add a revocation to the installation configuration (the Secret chaperone-sidecar-config in the injector\'s namespace, key clientCertificateRevocations ' +
        'in sidecar.yaml; you need get and update on it): every sidecar that follows it refuses the certificate from its next request on, on open ' +
        'connections too (401, and an audit event saying revoked). --serial refuses one certificate; --user every certificate whose CN is that ' +
        'name, for --for (default 168h, the longest a certificate lives, so that every certificate issued before has expired by then) or --forever',
    )
    .option('--serial <hex>', 'the serial number of a certificate (chaperone kubeconfig prints it; openssl x509 -noout -serial); repeatable', collect, [])
    .option('--user <name>', 'a username (the CN); repeatable', collect, [])
    .addOption(new Option('--for <duration>', 'how long a --user stays revoked (default: 168h)').argParser(duration))
    .option('--forever', 'a --user stays revoked until the entry is removed from sidecar.yaml')
    .option('--sidecar-config <name>', "the installation configuration Secret in the injector's namespace (default: the injector's, chaperone-sidecar-config)"),
)
  .addHelpText(
    'after',
    `
Examples:
  chaperone revoke --serial 5f1c0a9e3b7d4c21a8e06f9b2d3c4e5f
  chaperone revoke --user mallory                   # every certificate of mallory, for 168h
  chaperone revoke --user mallory --forever --context prod`,
  )
  .action(failing('revoke', (options: Omit<RevokeOptions, 'forSeconds'> & { for?: number }) => runRevoke({ ...options, ...(options.for !== undefined ? { forSeconds: options.for } : {}) })));

clusterOptions(
  program
    .command('doctor')
    .summary('check a namespace (and a pod) for chaperone: what is wrong, and how to fix it')
    .description(
      'check a namespace (and a pod) for chaperone and say in plain words what is wrong, with a fix for each finding: the namespace label, ' +
        "what the injector provisions, the webhook configuration, the scoped service account's RBAC, and the pod. Exit code 0 when nothing fails, 1 otherwise",
    )
    .option('--pod <name>', 'also check this pod: its sidecar, service account, tokens and readiness')
    .addOption(new Option('-o, --output <format>', 'text for people, json for machines').choices(['text', 'json']).default('text')),
  'the namespace to check',
)
  .addHelpText(
    'after',
    `
Examples:
  chaperone doctor -n team-a
  chaperone doctor -n team-a --pod headlamp-7d9c5-x2x8q
  chaperone doctor -n team-a -o json | jq '.findings[] | select(.status != "ok")'`,
  )
  .action(failing('doctor', (options: DoctorOptions) => runDoctor(options)));

clusterOptions(
  program
    .command('rotate')
    .argument('<ca>', 'identity, serving or webhook')
    .summary("start the rotation of one of the injector's CAs: the new CA is trusted at once and signs after the propagation delay")
    .description(
      "start the rotation of one of the injector's CAs: identity (people's client certificates), serving (the sidecars' certificates) or webhook " +
        "(the injector's own). The new CA goes into the CA's Secret in the injector's namespace (you need get and update on it); the running injector " +
        'trusts it everywhere at once, re-issues what the old CA signed once it signs, and drops the old CA after its --ca-overlap. ' +
        'A rotation already under way is left as it is',
    )
    .addOption(
      new Option('--ca-propagation-delay <duration>', 'how long the new CA is trusted before it signs: time for every verifier to learn it (default: the injector configuration\'s, 2m)').argParser(
        (text) => duration(text) * 1000,
      ),
    ),
)
  .addHelpText(
    'after',
    `
Examples:
  chaperone rotate identity                        # people need new kubeconfigs before the old CA's overlap ends
  chaperone rotate serving --context prod
  chaperone rotate webhook --injector-namespace my-chaperone --ca-propagation-delay 5m`,
  )
  .action(failing('rotate', (ca: string, options: RotateOptions) => runRotate(ca, options)));

program
  .command('login')
  .summary('a kubectl credential plugin: sign in at an OpenID provider in the browser and give kubectl the ID token')
  .description(
    'a kubectl credential plugin (client.authentication.k8s.io/v1): signs the person in at an OpenID provider with the authorization-code flow ' +
      'and PKCE in their browser, answered on a loopback port, and writes an ExecCredential with the ID token for kubectl, which sends it to the ' +
      "chaperone sidecar. The token (and a refresh token, if the provider gives one) is kept in --token-cache-dir, readable only by you, and used " +
      'until a minute before it expires. Name it in a kubeconfig user\'s exec section (docs/authentication.md, "kubectl")',
  )
  .requiredOption('--issuer-url <url>', "the provider's issuer URL, as in the installation's AuthenticationConfiguration")
  .requiredOption('--client-id <id>', 'the client registered for kubectl at the provider (one of the issuer\'s audiences)')
  .option('--client-secret <secret>', 'for providers that give even a native client a secret (it is not a secret in a kubeconfig)')
  .option('--certificate-authority <file>', "a PEM bundle that verifies the provider's certificate; the system's roots without it")
  .option('--scope <scope>', 'another scope besides openid (repeatable), e.g. email, groups, offline_access', (value: string, previous: string[]) => [...previous, value], [] as string[])
  .addOption(new Option('--redirect-port <port>', 'the loopback port the provider sends the browser back to: http://127.0.0.1:<port>/callback, as registered at the provider; 0 for any').default(8000).argParser((text) => {
    const port = Number(text);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('not a port number');
    return port;
  }))
  .option('--browser-command <command>', 'run with the sign-in URL as its last argument, instead of xdg-open or open')
  .option('--token-cache-dir <dir>', 'where the tokens are kept', DEFAULT_TOKEN_CACHE_DIR)
  .addHelpText(
    'after',
    `
Example (in a kubeconfig):
  users:
    - name: alice
      user:
        exec:
          apiVersion: client.authentication.k8s.io/v1
          command: chaperone
          args: [login, --issuer-url=https://auth.example.com/realms/company, --client-id=kubectl, --scope=email, --scope=groups]
          interactiveMode: Never`,
  )
  .action(failing('login', (options: LoginOptions) => runLogin(options)));

program
  .command('symbolise')
  .argument('[files...]', 'logs to read (default: standard input)')
  .summary("map the bundle positions in the components' stack traces back to the TypeScript")
  .description(
    "rewrite each position in a chaperone bundle (sidecar.mjs:1:2345) in a log or stack trace as the TypeScript file, line and column it came from, with the bundle's " +
      "source map. The images ship each map beside its bundle (/app/<bundle>.mjs.map); without --map, this installation's own maps, which fit only logs of the same version",
  )
  .option('--map <file>', 'a source map, named after its bundle (sidecar.mjs.map, injector.mjs.map); repeatable', collect, [])
  .addHelpText(
    'after',
    `
Examples:
  kubectl logs -n team-a headlamp-7d9c5-x2x8q -c chaperone | chaperone symbolise
  chaperone symbolise --map ./sidecar.mjs.map sidecar.log`,
  )
  .action(failing('symbolise', (files: string[], options: SymboliseOptions) => runSymbolise(files, options)));

await program.parseAsync(process.argv);
