import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  bool,
  ConfigError,
  defineSpec,
  duration,
  envName,
  flagName,
  HelpRequested,
  hostPort,
  httpsUrl,
  int,
  list,
  loadConfig,
  oneOf,
  option,
  parseDuration,
  parseHostPort,
  path,
  renderReference,
  str,
} from '../../../lib/config.js';
import type { Env } from '../../../lib/config.js';

const spec = defineSpec({
  command: 'test-component',
  summary: 'A component for testing.',
  options: {
    listen: option(hostPort(), { default: '127.0.0.1:6443', description: 'Where to listen.' }),
    name: option(str(), { description: 'A name.' }),
    certFile: option(path(), { required: true, description: 'A certificate.' }),
    anonymous: option(bool(), { default: false, description: 'Let anyone in.' }),
    cacheSize: option(int({ min: 1 }), { default: 100, description: 'Entries.' }),
    ttl: option(duration(), { default: '30s', description: 'How long.' }),
    names: option(list(), { default: [], description: 'Some names.', example: 'a,b' }),
    level: option(oneOf(['debug', 'info']), { default: 'info', description: 'How much.' }),
    server: option(httpsUrl(), { description: 'Where to go.' }),
  },
});

const REQUIRED = ['--cert-file=c.pem'];

function load(argv: string[] = [], env: Env = {}, configFile?: string) {
  return loadConfig(spec, { argv: [...REQUIRED, ...argv], env, ...(configFile === undefined ? {} : { configFile }) });
}

/** The ConfigError's problems, one per line, for a configuration that must be refused. */
function problems(argv: string[] = [], env: Env = {}, configFile?: string): string[] {
  try {
    load(argv, env, configFile);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.deepEqual(err.message.split('\n'), err.problems);
    return [...err.problems];
  }
  assert.fail('the configuration was accepted');
}

function refusal(argv: string[] = [], env: Env = {}, configFile?: string): string {
  const found = problems(argv, env, configFile);
  assert.equal(found.length, 1, `expected one problem, got:\n${found.join('\n')}`);
  return found[0]!;
}

describe('lib/config', function () {
  let dir: string;
  before(function () {
    dir = mkdtempSync(join(tmpdir(), 'chaperone-config-'));
  });
  after(function () {
    rmSync(dir, { recursive: true, force: true });
  });
  function yamlFile(text: string, name = 'config.yaml'): string {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  }

  describe('names', function () {
    it('derives the flag and environment variable from the camelCase key', function () {
      assert.equal(flagName('tlsCertFile'), '--tls-cert-file');
      assert.equal(envName('tlsCertFile'), 'CHAPERONE_TLS_CERT_FILE');
      assert.equal(flagName('listen'), '--listen');
      assert.equal(envName('authzAllowedTtl'), 'CHAPERONE_AUTHZ_ALLOWED_TTL');
    });
  });

  describe('precedence', function () {
    it('takes the default when nothing else is given', function () {
      assert.equal(load().ttl, 30_000);
    });

    it('file beats default, environment beats file, flag beats environment', function () {
      const file = yamlFile('ttl: 1m\n');
      assert.equal(load([`--config=${file}`]).ttl, 60_000);
      assert.equal(load([`--config=${file}`], { CHAPERONE_TTL: '2m' }).ttl, 120_000);
      assert.equal(load([`--config=${file}`, '--ttl=3m'], { CHAPERONE_TTL: '2m' }).ttl, 180_000);
    });

    it('reads the file named by CHAPERONE_CONFIG, and --config wins over it', function () {
      const fromEnv = yamlFile('name: from-env\n', 'env.yaml');
      const fromFlag = yamlFile('name: from-flag\n', 'flag.yaml');
      assert.equal(load([], { CHAPERONE_CONFIG: fromEnv }).name, 'from-env');
      assert.equal(load(['--config', fromFlag], { CHAPERONE_CONFIG: fromEnv }).name, 'from-flag');
    });

    it('reads the default config file when present, and does without it when absent', function () {
      assert.equal(load([], {}, yamlFile('name: default-file\n', 'default.yaml')).name, 'default-file');
      assert.equal(load([], {}, join(dir, 'absent.yaml')).name, undefined);
    });

    it('reads a relative file path in the config file relative to that file, as kubeconfig does; flags and environment relative to the working directory', function () {
      const file = yamlFile('certFile: certs/tls.crt\nname: certs/not-a-path\n', 'paths.yaml');
      const config = loadConfig(spec, { argv: [`--config=${file}`], env: {} });
      assert.equal(config.certFile, join(dir, 'certs/tls.crt'));
      assert.equal(config.name, 'certs/not-a-path');
      assert.equal(loadConfig(spec, { argv: [`--config=${file}`, '--cert-file=certs/flag.crt'], env: {} }).certFile, 'certs/flag.crt');
      assert.equal(loadConfig(spec, { argv: [`--config=${yamlFile('certFile: /abs/tls.crt\n', 'abs.yaml')}`], env: {} }).certFile, '/abs/tls.crt');
    });

    it('refuses keys a limited file may not set, naming the key and why; flags still set them', function () {
      const file = yamlFile('name: x\nttl: 1m\n', 'limited.yaml');
      const limited = (argv: string[]) => loadConfig(spec, { argv: [...REQUIRED, ...argv], env: {}, configFile: file, fileKeys: { allowed: ['name'], why: 'is not for this file' } });
      assert.throws(() => limited([]), (err: unknown) => err instanceof ConfigError && err.problems.join() === `${file}: ttl is not for this file`);
      assert.throws(() => limited(['--ttl=2m']), ConfigError, 'the file may not set it, whatever the flags say');
      const allowed = loadConfig(spec, { argv: [...REQUIRED, '--ttl=2m'], env: {}, configFile: yamlFile('name: x\n', 'allowed.yaml'), fileKeys: { allowed: ['name'], why: 'is not for this file' } });
      assert.deepEqual([allowed.name, allowed.ttl], ['x', 120_000]);
    });

    it('takes the last of a repeated flag', function () {
      assert.equal(load(['--name=a', '--name', 'b']).name, 'b');
    });

    it('counts an empty environment variable or file value as unset', function () {
      const file = yamlFile('name:\nttl: 1m\n');
      const config = load([`--config=${file}`], { CHAPERONE_TTL: '', CHAPERONE_NAME: '' });
      assert.equal(config.ttl, 60_000);
      assert.equal(config.name, undefined);
    });

    it('still refuses a bad value that a higher source overrides', function () {
      assert.equal(refusal(['--ttl=1m'], { CHAPERONE_TTL: 'soon' }), 'CHAPERONE_TTL: "soon" is not a duration (examples: 500ms, 30s, 5m)');
    });
  });

  describe('types', function () {
    it('string: any non-empty text', function () {
      assert.equal(load(['--name', 'alice']).name, 'alice');
      assert.equal(load().name, undefined);
      assert.equal(refusal(['--name=']), '--name: "" must not be empty');
      assert.equal(refusal([`--config=${yamlFile('name: 42\n')}`]), `${join(dir, 'config.yaml')}: name: 42 is not a string`);
    });

    it('boolean: a flag alone is true; true and false in flags, environment and file', function () {
      assert.equal(load().anonymous, false);
      assert.equal(load(['--anonymous']).anonymous, true);
      assert.equal(load(['--anonymous=false']).anonymous, false);
      assert.equal(load(['--anonymous', 'false']).anonymous, false);
      assert.equal(load(['--anonymous=true', '--name=x']).anonymous, true);
      assert.equal(load([], { CHAPERONE_ANONYMOUS: 'true' }).anonymous, true);
      assert.equal(load([], { CHAPERONE_ANONYMOUS: 'false' }).anonymous, false);
      assert.equal(load([`--config=${yamlFile('anonymous: true\n')}`]).anonymous, true);
    });

    it('boolean: refuses anything but true and false', function () {
      assert.equal(refusal(['--anonymous=yes']), '--anonymous: "yes" is not a boolean (true or false)');
      assert.equal(refusal([], { CHAPERONE_ANONYMOUS: '1' }), 'CHAPERONE_ANONYMOUS: "1" is not a boolean (true or false)');
      const file = yamlFile('anonymous: "true"\n');
      assert.equal(refusal([`--config=${file}`]), `${file}: anonymous: "true" is not a boolean (true or false)`);
    });

    it('integer: whole numbers within bounds', function () {
      assert.equal(load(['--cache-size=42']).cacheSize, 42);
      assert.equal(load([], { CHAPERONE_CACHE_SIZE: '7' }).cacheSize, 7);
      assert.equal(load([`--config=${yamlFile('cacheSize: 9\n')}`]).cacheSize, 9);
      assert.equal(refusal(['--cache-size=4x']), '--cache-size: "4x" is not an integer');
      assert.equal(refusal(['--cache-size=1.5']), '--cache-size: "1.5" is not an integer');
      assert.equal(refusal(['--cache-size=0']), '--cache-size: 0 must be at least 1');
      const file = yamlFile('cacheSize: 2.5\n');
      assert.equal(refusal([`--config=${file}`]), `${file}: cacheSize: 2.5 is not an integer`);
    });

    it('duration: Go-style text, loaded as milliseconds', function () {
      const cases: [string, number][] = [
        ['0', 0],
        ['500ms', 500],
        ['30s', 30_000],
        ['5m', 300_000],
        ['1h', 3_600_000],
        ['1h30m', 5_400_000],
        ['1m30s250ms', 90_250],
        ['1.5s', 1500],
      ];
      for (const [text, ms] of cases) {
        assert.equal(parseDuration(text), ms, text);
        assert.equal(load([`--ttl=${text}`]).ttl, ms, text);
      }
      assert.equal(load([`--config=${yamlFile('ttl: 1h30m\n')}`]).ttl, 5_400_000);
    });

    it('duration: refuses what is not one, with examples', function () {
      for (const text of ['5x', '5', '-1s', '1d', 's', '1h 30m', '1.s', 'ms']) {
        assert.equal(parseDuration(text), undefined, text);
        assert.equal(refusal([`--ttl=${text}`]), `--ttl: ${JSON.stringify(text)} is not a duration (examples: 500ms, 30s, 5m)`);
      }
      const file = yamlFile('ttl: 30\n');
      assert.equal(refusal([`--config=${file}`]), `${file}: ttl: 30 is not a duration (examples: 500ms, 30s, 5m)`);
    });

    it('list: a repeatable, comma-separated flag, a comma-separated variable, a YAML list', function () {
      assert.deepEqual(load().names, []);
      assert.deepEqual(load(['--names', 'a,b', '--names=c', '--names', ' d , ,e']).names, ['a', 'b', 'c', 'd', 'e']);
      assert.deepEqual(load([], { CHAPERONE_NAMES: 'x,y' }).names, ['x', 'y']);
      assert.deepEqual(load([`--config=${yamlFile('names: [p, q]\n')}`]).names, ['p', 'q']);
    });

    it('list: an empty flag empties what the environment set', function () {
      assert.deepEqual(load(['--names='], { CHAPERONE_NAMES: 'x,y' }).names, []);
    });

    it('list: refuses a file value that is not a list of strings, naming the item', function () {
      const scalar = yamlFile('names: a,b\n');
      assert.equal(refusal([`--config=${scalar}`]), `${scalar}: names: "a,b" is not a list of strings`);
      const item = yamlFile('names: [a, 7]\n');
      assert.equal(refusal([`--config=${item}`]), `${item}: names[1]: 7 is not a string`);
    });

    it('enum: one of the listed values', function () {
      assert.equal(load(['--level=debug']).level, 'debug');
      assert.equal(refusal(['--level=loud']), '--level: "loud" is not one of debug, info');
    });

    it('host:port: IPv4, any interface, bracketed IPv6 and hostnames', function () {
      const cases: [string, { host: string; port: number }][] = [
        ['127.0.0.1:6443', { host: '127.0.0.1', port: 6443 }],
        [':9901', { host: '', port: 9901 }],
        ['[::1]:6443', { host: '::1', port: 6443 }],
        ['[::]:0', { host: '::', port: 0 }],
        ['localhost:8080', { host: 'localhost', port: 8080 }],
      ];
      for (const [text, parsed] of cases) {
        assert.deepEqual(parseHostPort(text), parsed, text);
        assert.equal(load([`--listen=${text}`]).listen, text);
      }
    });

    it('host:port: refuses anything else', function () {
      for (const text of ['abc', '127.0.0.1', '6443', '127.0.0.1:65536', '127.0.0.1:port', '::1:6443', '[::1]', '[localhost]:1', '999.1.1.1:1', 'a b:1', '']) {
        assert.equal(parseHostPort(text), undefined, text);
        assert.equal(refusal([`--listen=${text}`]), `--listen: ${JSON.stringify(text)} is not a host:port address`);
      }
    });

    it('https URL', function () {
      assert.equal(load(['--server=https://10.96.0.1:443']).server, 'https://10.96.0.1:443');
      assert.equal(load(['--server=https://[fd00::1]:443']).server, 'https://[fd00::1]:443');
      for (const text of ['http://10.96.0.1', 'kubernetes.default', 'https://']) {
        assert.equal(refusal([`--server=${text}`]), `--server: ${JSON.stringify(text)} is not an https URL (example: https://10.96.0.1:443)`);
      }
    });
  });

  describe('refusals', function () {
    it('names a missing required option and how to set it', function () {
      assert.throws(
        () => loadConfig(spec, { argv: [], env: {} }),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message === 'certFile: required; set it with --cert-file, CHAPERONE_CERT_FILE or "certFile" in the config file',
      );
    });

    it('refuses an unknown flag, with a suggestion, and does not take its value for an argument', function () {
      assert.equal(refusal(['--lisen', '127.0.0.1:1']), '--lisen: unknown flag (did you mean --listen?)');
      assert.equal(refusal(['--lisen=127.0.0.1:1']), '--lisen: unknown flag (did you mean --listen?)');
      assert.equal(refusal(['--completely-different']), '--completely-different: unknown flag');
    });

    it('refuses stray arguments', function () {
      assert.equal(refusal(['stray']), '"stray": unexpected argument (test-component takes flags only)');
      assert.equal(refusal(['--', '--name=x']), '"--name=x": unexpected argument (test-component takes flags only)');
    });

    it('refuses a flag that needs a value and has none', function () {
      assert.equal(refusal(['--name']), '--name: needs a value');
    });

    it('refuses an unknown CHAPERONE_* variable, with a suggestion', function () {
      assert.equal(refusal([], { CHAPERONE_LISTN: ':1' }), 'CHAPERONE_LISTN: unknown environment variable (did you mean CHAPERONE_LISTEN?)');
      assert.equal(refusal([], { CHAPERONE_CACHESIZE: '1' }), 'CHAPERONE_CACHESIZE: unknown environment variable (did you mean CHAPERONE_CACHE_SIZE?)');
      assert.equal(refusal([], { CHAPERONE_UNRELATED_THING: '1' }), 'CHAPERONE_UNRELATED_THING: unknown environment variable');
      assert.deepEqual(load([], { OTHER_LISTN: 'x', PATH: '/bin' }).listen, '127.0.0.1:6443');
    });

    it('ignores the variables Kubernetes makes from Service names', function () {
      const env = {
        CHAPERONE_SERVICE_HOST: '10.96.0.7',
        CHAPERONE_SERVICE_PORT: '443',
        CHAPERONE_SERVICE_PORT_HTTPS: '443',
        CHAPERONE_PORT: 'tcp://10.96.0.7:443',
        CHAPERONE_INJECTOR_PORT_443_TCP: 'tcp://10.96.0.8:443',
        CHAPERONE_INJECTOR_PORT_443_TCP_PROTO: 'tcp',
        CHAPERONE_INJECTOR_PORT_443_TCP_PORT: '443',
        CHAPERONE_INJECTOR_PORT_443_TCP_ADDR: '10.96.0.8',
      };
      assert.equal(load([], env).listen, '127.0.0.1:6443');
    });

    it('refuses an unknown file key, with a suggestion', function () {
      const file = yamlFile('listn: ":1"\n');
      assert.equal(refusal([`--config=${file}`]), `${file}: unknown key "listn" (did you mean "listen"?)`);
      const kebab = yamlFile('cache-size: 1\n');
      assert.equal(refusal([`--config=${kebab}`]), `${kebab}: unknown key "cache-size" (did you mean "cacheSize"?)`);
      const config = yamlFile('config: other.yaml\n');
      assert.equal(refusal([`--config=${config}`]), `${config}: unknown key "config"`);
    });

    it('refuses a config file it cannot read or parse, naming it', function () {
      const absent = join(dir, 'absent.yaml');
      assert.equal(refusal([`--config=${absent}`]), `--config: cannot read ${JSON.stringify(absent)}: no such file`);
      assert.equal(refusal([], { CHAPERONE_CONFIG: absent }), `CHAPERONE_CONFIG: cannot read ${JSON.stringify(absent)}: no such file`);
      const broken = yamlFile('listen: [::1]:6443\n');
      assert.match(refusal([`--config=${broken}`]), new RegExp(`^${broken}: .* at line 1, column 14:$`));
      const duplicate = yamlFile('name: a\nname: b\n');
      assert.equal(refusal([`--config=${duplicate}`]), `${duplicate}: Map keys must be unique at line 2, column 1:`);
      const sequence = yamlFile('- listen\n');
      assert.equal(refusal([`--config=${sequence}`]), `${sequence}: is not a mapping of option keys to values`);
    });

    it('reports every problem together, one per line', function () {
      const file = yamlFile('listn: ":1"\nttl: forever\n');
      const found = problems(['--lisen=:1', '--cache-size=0', `--config=${file}`], { CHAPERONE_ANONYMOUS: 'yes', CHAPERONE_CACHE_SIZ: '1' });
      assert.deepEqual(found.sort(), [
        '--cache-size: 0 must be at least 1',
        '--lisen: unknown flag (did you mean --listen?)',
        `${file}: ttl: "forever" is not a duration (examples: 500ms, 30s, 5m)`,
        `${file}: unknown key "listn" (did you mean "listen"?)`,
        'CHAPERONE_ANONYMOUS: "yes" is not a boolean (true or false)',
        'CHAPERONE_CACHE_SIZ: unknown environment variable (did you mean CHAPERONE_CACHE_SIZE?)',
      ].sort());
    });
  });

  describe('help', function () {
    for (const flag of ['--help', '-h']) {
      it(`${flag} yields help text naming every flag and variable, whatever else is wrong`, function () {
        let help: HelpRequested | undefined;
        try {
          loadConfig(spec, { argv: [flag, '--bogus'], env: {} });
        } catch (err) {
          if (err instanceof HelpRequested) help = err;
        }
        assert.ok(help, 'expected HelpRequested');
        assert.match(help.text, /^Usage: test-component \[flags\]/);
        for (const key of Object.keys(spec.options)) {
          assert.ok(help.text.includes(flagName(key)), flagName(key));
          assert.ok(help.text.includes(envName(key)), envName(key));
        }
        assert.match(help.text, /--config <file>/);
        assert.match(help.text, /default: 30s/);
        assert.match(help.text, /one of debug, info/);
      });
    }
  });

  describe('reference', function () {
    it('has one row per option, with flag, variable, key, type, default and description', function () {
      const reference = renderReference(spec, 'Test');
      assert.match(reference, /^## Test\n\n\| Flag \| Environment variable \| File key \| Type \| Default \| Description \|\n/);
      assert.ok(reference.includes('| `--ttl` | `CHAPERONE_TTL` | `ttl` | duration | `30s` | How long. |'));
      assert.ok(reference.includes('| `--cert-file` | `CHAPERONE_CERT_FILE` | `certFile` | file path | **required** | A certificate. |'));
      assert.ok(reference.includes('| `--names` | `CHAPERONE_NAMES` | `names` | list of strings | empty | Some names. Example: `a,b`. |'));
      assert.ok(reference.includes('| `--level` | `CHAPERONE_LEVEL` | `level` | one of `debug`, `info` | `info` | How much. |'));
      assert.ok(reference.includes('| `--config` | `CHAPERONE_CONFIG` |'));
      assert.equal(reference.trimEnd().split('\n').length, 4 + Object.keys(spec.options).length + 1);
    });
  });

  describe('defineSpec', function () {
    it('refuses a default or example its own type would refuse', function () {
      assert.throws(
        () => defineSpec({ command: 'x', summary: 'x', options: { ttl: option(duration(), { default: '30 seconds', description: 'd' }) } }),
        /ttl default: "30 seconds" is not a duration/,
      );
      assert.throws(
        () => defineSpec({ command: 'x', summary: 'x', options: { listen: option(hostPort(), { description: 'd', example: 'nowhere' }) } }),
        /listen example: "nowhere" is not a host:port address/,
      );
    });

    it('refuses keys that would not round-trip through flag and variable names', function () {
      assert.throws(() => defineSpec({ command: 'x', summary: 'x', options: { tlsCAFile: option(str(), { description: 'd' }) } }), /tlsCAFile/);
      assert.throws(() => defineSpec({ command: 'x', summary: 'x', options: { tls_file: option(str(), { description: 'd' }) } }), /tls_file/);
      assert.throws(() => defineSpec({ command: 'x', summary: 'x', options: { config: option(str(), { description: 'd' }) } }), /reserved/);
    });
  });
});
