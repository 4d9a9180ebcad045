// The injector process: read configuration, start, stop cleanly on SIGTERM.
import { createLogger } from '../lib/log.js';
import { configOrExit, stopOnSignal } from '../lib/process.js';
import { loadInjectorConfig } from './config.js';
import { CannotStart, startInjector } from './injector.js';

const INJECTOR_STOP_DEADLINE_MS = 30_000;

const config = configOrExit('injector', () => loadInjectorConfig(process.argv.slice(2), process.env));
const log = createLogger('injector', config.logLevel);
const injector = await startInjector(config, log).catch((err: unknown) => {
  if (!(err instanceof CannotStart)) throw err;
  process.stderr.write(`chaperone injector: invalid configuration: ${err.message}\n`);
  process.exit(2);
});
stopOnSignal(() => injector.stop(), log, INJECTOR_STOP_DEADLINE_MS);
