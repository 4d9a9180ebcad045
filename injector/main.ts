// The injector process: read configuration, start, stop cleanly on SIGTERM.
import { ConfigError, HelpRequested } from '../lib/config.js';
import { createLogger } from '../lib/log.js';
import { loadInjectorConfig, type InjectorConfig } from './config.js';
import { CannotStart, startInjector } from './injector.js';

async function main(): Promise<void> {
  let config: InjectorConfig;
  try {
    config = loadInjectorConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.text);
      process.exit(0);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`chaperone injector: invalid configuration:\n${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger('injector', config.logLevel);
  let injector;
  try {
    injector = await startInjector(config, log);
  } catch (err) {
    if (!(err instanceof CannotStart)) throw err;
    process.stderr.write(`chaperone injector: invalid configuration: ${err.message}\n`);
    process.exit(2);
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'shutting down');
      void injector.stop().then(() => process.exit(0));
    });
  }
}

await main();
