// The injector as a process: what an operator sees when they start it wrong, or ask for help.
import assert from 'node:assert/strict';
import { runMain } from '../../support/run-main.js';

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runMain('injector/main.ts', args, env);

describe('injector/main (the process)', function () {
  this.timeout(30_000);

  it('prints help derived from the configuration schema and exits 0', async function () {
    const result = await run(['--help']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /--tls-cert-file/);
    assert.match(result.stdout, /CHAPERONE_SIDECAR_IMAGE/);
  });

  it('refuses to start on bad configuration, naming every key that is wrong, with exit code 2', async function () {
    const result = await run(['--sidecar-mode=sideways', '--tls-key-file=/k'], { CHAPERONE_MEMORY_LIMIT: 'lots' });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--sidecar-mode: "sideways" is not one of native, classic/);
    assert.match(result.stderr, /CHAPERONE_MEMORY_LIMIT: "lots" is not a resource quantity/);
  });

  it('refuses to start with a certificate file without its key (or the other way round)', async function () {
    const result = await run(['--tls-key-file=/k', '--kubeconfig=/nonexistent']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /invalid configuration: --tls-cert-file and --tls-key-file go together/);
  });

  it('refuses to start with defaults that every pod would be denied for', async function () {
    const result = await run(['--tls-cert-file=/c', '--tls-key-file=/k', '--cpu-request=1', '--cpu-limit=500m', '--kubeconfig=/nonexistent']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /invalid configuration: the cpu request 1 .* is more than the cpu limit 500m/);
  });

  it('refuses to start without a way to read namespace labels, naming the kubeconfig', async function () {
    const result = await run(['--tls-cert-file=/c', '--tls-key-file=/k', '--kubeconfig=/nonexistent/kubeconfig']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /invalid configuration: cannot load the kubeconfig \/nonexistent\/kubeconfig: cannot read: ENOENT$/m);
  });
});
