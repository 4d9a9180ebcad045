// What every chaperone process does at the edges: read its configuration or say why not, and stop
// cleanly on a signal.
import { ConfigError, HelpRequested } from './config.js';

/** The configuration, or an exit: 0 after --help, 2 naming every problem. */
export function configOrExit<T>(component: string, load: () => T): T {
  try {
    return load();
  } catch (err) {
    return exitOnConfigError(component, err);
  }
}

/** configOrExit for a configuration that takes a while to read (from the API server, say). */
export async function configOrExitAsync<T>(component: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    return exitOnConfigError(component, err);
  }
}

function exitOnConfigError(component: string, err: unknown): never {
  if (err instanceof HelpRequested) {
    process.stdout.write(err.text);
    process.exit(0);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`chaperone ${component}: invalid configuration:\n${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

/** On SIGTERM or SIGINT: stop, then exit; if stopping hangs, exit anyway after hardDeadlineMs. */
export function stopOnSignal(stop: () => Promise<void>, log: { info(obj: object, msg?: string): void }, hardDeadlineMs: number): void {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'shutting down');
      setTimeout(() => process.exit(1), hardDeadlineMs).unref();
      void stop().then(() => {
        log.info({}, 'stopped');
        process.exit(0);
      });
    });
  }
}
