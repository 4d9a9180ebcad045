// The sidecar process: read configuration, start, stop cleanly on SIGTERM.
import { ConfigError, HelpRequested } from '../lib/config.js';
import { createLogger } from '../lib/log.js';
import { loadSidecarConfig, type SidecarConfig } from './config.js';
import { startSidecar } from './sidecar.js';

async function main(): Promise<void> {
  let config: SidecarConfig;
  try {
    config = loadSidecarConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.text);
      process.exit(0);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`chaperone sidecar: invalid configuration:\n${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger('sidecar', config.logLevel);
  const sidecar = await startSidecar(config, log);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'shutting down');
      // Whatever happens, the process is gone shortly after the grace period.
      setTimeout(() => process.exit(1), config.shutdownTimeout + 5000).unref();
      void sidecar.stop().then(() => {
        log.info('stopped');
        process.exit(0);
      });
    });
  }
}

await main();
