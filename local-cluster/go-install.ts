// Command-line tools the tests run (promtool, helm), installed once per version from the Go module
// proxy into the cache beside the control plane's binaries.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { cacheRoot, isExecutable } from './binaries.js';

export interface GoTool {
  /** The command's name: the binary `go install` writes, and the cache directory's prefix. */
  command: string;
  /** The main package, e.g. helm.sh/helm/v4/cmd/helm. */
  pkg: string;
  /** Its module's version on the Go module proxy. */
  version: string;
  /** The environment variable that names a binary to use instead. */
  envVar: string;
  ldflags?: string;
}

/** The environment variable's binary, else the cache's, else `go install` into the cache (minutes, once). */
export async function ensureGoTool(tool: GoTool, log: (line: string) => void): Promise<string> {
  const fromEnv = process.env[tool.envVar];
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`${tool.envVar}=${fromEnv} is not an executable file.`);
    return fromEnv;
  }
  const dir = path.join(cacheRoot(), `${tool.command}-${tool.version}`);
  const binary = path.join(dir, tool.command);
  if (isExecutable(binary)) return binary;
  await mkdir(dir, { recursive: true });
  // Each build installs into a directory of its own; the first to finish renames its binary into place.
  const gobin = await mkdtemp(path.join(dir, 'build-'));
  log(`building ${tool.command} (${tool.pkg}@${tool.version}) into ${dir}; once, it takes minutes`);
  const started = Date.now();
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(
        'go',
        ['install', '-trimpath', ...(tool.ldflags ? ['-ldflags', tool.ldflags] : []), `${tool.pkg}@${tool.version}`],
        { env: { ...process.env, GOBIN: gobin, CGO_ENABLED: '0' }, timeout: 40 * 60_000, maxBuffer: 64 * 1024 * 1024 },
        (error, _stdout, stderr) => {
          if (!error) resolve();
          else if ((error as NodeJS.ErrnoException).code === 'ENOENT') reject(new Error(`The Go toolchain (go) is not on PATH: install Go (https://go.dev/doc/install) or set ${tool.envVar} to a ${tool.command} binary.`));
          else reject(new Error(`go install ${tool.pkg}@${tool.version} failed: ${stderr.slice(-4000)}`));
        },
      );
    });
    await rename(path.join(gobin, tool.command), binary);
  } finally {
    await rm(gobin, { recursive: true, force: true });
  }
  log(`built ${tool.command} in ${Math.round((Date.now() - started) / 1000)}s`);
  return binary;
}
