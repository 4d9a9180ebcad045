// The sidecar process: read configuration (with the installation's, from the API server, when the
// injector names it), start, stop cleanly on SIGTERM.
import { createLogger } from '../lib/log.js';
import { configOrExit, configOrExitAsync, stopOnSignal } from '../lib/process.js';
import { loadSidecarConfig } from '../lib/sidecar-config/options.js';
import { Installation } from './installation.js';
import { startSidecar } from './sidecar.js';

const argv = process.argv.slice(2);
const log = createLogger('sidecar', configOrExit('sidecar', () => loadSidecarConfig(argv, process.env)).logLevel);
const { config, installation } = await configOrExitAsync('sidecar', () => Installation.load(argv, process.env, log));
const sidecar = await startSidecar(config, log, installation);
// Whatever happens, the process is gone shortly after the grace period.
stopOnSignal(() => sidecar.stop(), log, config.shutdownTimeout + 5000);
