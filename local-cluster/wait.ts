// Waiting for what happens in its own time (a pod admitted, a file reloaded, a log line written):
// the one poller of the demo, the benchmarks and the tests.

/**
 * Asks check until it gives a value (anything but undefined or false) and resolves with it; after
 * timeoutMs, rejects naming what was awaited and the last error check threw.
 */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const result = await check();
      if (result !== undefined && result !== false) return result;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
