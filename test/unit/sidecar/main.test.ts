// The sidecar as a process: what an operator sees when they start it wrong, or ask for help.
import assert from 'node:assert/strict';
import { runMain } from '../../support/run-main.js';

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => runMain('sidecar/main.ts', args, env);

describe('sidecar/main (the process)', function () {
  this.timeout(30_000);

  it('prints help derived from the configuration schema and exits 0', async function () {
    const result = await run(['--help']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /--tls-cert-file/);
    assert.match(result.stdout, /CHAPERONE_TLS_CERT_FILE/);
  });

  it('refuses to start on bad configuration, naming every key that is wrong, with exit code 2', async function () {
    const result = await run(['--listen=nowhere', '--tls-key-file=/k'], { CHAPERONE_AUTHZ_ALLOWED_TTL: '5x' });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--listen: "nowhere" is not a host:port address/);
    assert.match(result.stderr, /CHAPERONE_AUTHZ_ALLOWED_TTL/);
    assert.match(result.stderr, /tls-cert-file/);
  });
});
