// The demo's life: Ctrl-C asks it to stop (a second Ctrl-C exits at once), and on the way out it
// undoes everything it started, newest first, never waiting long on any one thing.
import { bad, dim, say } from './demo-output.js';

/** Thrown at a checkpoint once the demo was asked to stop. */
export class Stopped extends Error {}

const SAME_CTRL_C_MS = 1000;
const CLEANUP_TIMEOUT_MS = 3000;

interface Cleanup {
  what: string;
  run: () => Promise<unknown>;
  timeoutMs: number;
}

export class Lifecycle {
  private readonly cleanups: Cleanup[] = [];
  private stopRequestedAt: number | undefined;
  private running = false;
  private wake = () => {};
  /** Resolves on the first Ctrl-C (SIGINT) or SIGTERM. */
  readonly stopRequested = new Promise<void>((resolve) => (this.wake = resolve));

  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  private readonly onSignal = () => {
    if (this.stopRequestedAt !== undefined) {
      // A wrapper (tsx's command, for one) passes the terminal's Ctrl-C on a moment after the
      // terminal delivered it: only a later signal is a second Ctrl-C.
      if (Date.now() - this.stopRequestedAt < SAME_CTRL_C_MS) return;
      say('\nexiting at once: what is left is stopped now or by the next run');
      process.exit(130);
    }
    this.stopRequestedAt = Date.now();
    say(`\nstopping${this.running ? '' : ' once the current step is done'}: removing everything the demo started (Ctrl-C again to exit at once)`);
    this.wake();
  };

  /** Everything is up: a stop needs no step to finish first. */
  markRunning(): void {
    this.running = true;
  }

  /** Whether the demo was asked to stop: then a step that fails was most likely cut short by it. */
  get stopping(): boolean {
    return this.stopRequestedAt !== undefined;
  }

  /** Throws Stopped if the demo was asked to stop. */
  checkpoint(): void {
    if (this.stopping) throw new Stopped();
  }

  /** Something to undo on the way out, given timeoutMs at most. */
  defer(what: string, run: () => Promise<unknown>, timeoutMs = CLEANUP_TIMEOUT_MS): void {
    this.cleanups.push({ what, run, timeoutMs });
  }

  /**
   * Undoes everything, newest first. A terminal's Ctrl-C reaches the control plane's processes too,
   * which may then be half gone: nothing waits on them for long.
   */
  async cleanUp(): Promise<void> {
    for (const cleanup of this.cleanups.reverse()) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(dim(`${cleanup.what}: still stopping after ${cleanup.timeoutMs / 1000}s, so it ends with the demo`)), cleanup.timeoutMs);
      });
      const failed = cleanup.run().then(
        () => undefined,
        (err: Error) => bad(`${cleanup.what} could not be stopped: ${err.message}`),
      );
      const problem = await Promise.race([failed, timeout]);
      clearTimeout(timer);
      if (problem) say(problem);
    }
    this.cleanups.length = 0;
  }
}
