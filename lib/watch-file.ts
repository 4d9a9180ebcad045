// Files that change under a running process: rotated tokens, renewed certificates. Kubernetes
// updates mounted Secrets and projected volumes by swapping a symlink, which defeats fs.watch on
// the file itself, so this polls the content and uses a watch on the directory only to notice sooner.
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface WatchedFile {
  /** The content as last read; undefined while the file is missing or empty. */
  current(): Buffer | undefined;
  /** Re-reads now; resolves once any change has been reported. */
  refresh(): Promise<void>;
  close(): void;
}

export interface WatchOptions {
  intervalMs?: number;
  /** Called with the new content (undefined when the file went missing or empty). */
  onChange?: (content: Buffer | undefined) => void;
  onError?: (error: Error) => void;
}

/** The content now; undefined while the file is missing or empty. */
function readNow(file: string, onError?: (error: Error) => void): Buffer | undefined {
  try {
    const content = readFileSync(file);
    return content.length > 0 ? content : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') onError?.(err as Error);
    return undefined;
  }
}

export function watchFile(file: string, options: WatchOptions = {}): WatchedFile {
  let content = readNow(file);

  // Read at once, not in the background: a read under way could miss a change made while it ran
  // (a file emptied, then filled, would be left looking empty until the next poll). These files are
  // tokens, certificates and small configs on tmpfs.
  const refresh = (): Promise<void> => {
    const next = readNow(file, options.onError);
    const changed = next === undefined ? content !== undefined : content === undefined || !next.equals(content);
    if (changed) {
      content = next;
      options.onChange?.(next);
    }
    return Promise.resolve();
  };

  const timer = setInterval(() => void refresh(), options.intervalMs ?? 1000);
  timer.unref();
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(path.dirname(file), { persistent: false }, () => void refresh());
    watcher.on('error', () => watcher?.close());
  } catch {
    // the directory may not exist yet: polling covers it
  }

  return {
    current: () => content,
    refresh,
    close: () => {
      clearInterval(timer);
      watcher?.close();
    },
  };
}
