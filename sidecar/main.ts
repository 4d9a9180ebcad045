// The sidecar process: read configuration, start, stop cleanly on SIGTERM.
import { createLogger } from '../lib/log.js';
import { configOrExit, stopOnSignal } from '../lib/process.js';
import { loadSidecarConfig } from './config.js';
import { startSidecar } from './sidecar.js';

const config = configOrExit('sidecar', () => loadSidecarConfig(process.argv.slice(2), process.env));
const log = createLogger('sidecar', config.logLevel);
const sidecar = await startSidecar(config, log);
// Whatever happens, the process is gone shortly after the grace period.
stopOnSignal(() => sidecar.stop(), log, config.shutdownTimeout + 5000);
