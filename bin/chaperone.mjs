#!/usr/bin/env node
// The `chaperone` command as npm links it. In a checkout (the TypeScript and tsx are there) it runs
// the TypeScript, which is always current and includes the demo; anywhere else it runs the bundle
// that `npm run build:artefacts` writes to dist/ (docs/images.md).
//
// This file must load on any Node.js that runs ES modules, so that an older one is told which
// version chaperone needs: no top-level await and no import of anything Node.js 24 added (either
// would stop an older Node.js with a SyntaxError before the check below runs).
import { existsSync } from 'node:fs';

const REQUIRED_MAJOR = 24;

async function main() {
  const source = new URL('../cli/main.ts', import.meta.url);
  const bundle = new URL('../dist/chaperone.mjs', import.meta.url);
  const typescript = existsSync(source) ? await tsx() : undefined;
  if (typescript) {
    typescript.register();
    await import(source.href);
  } else if (existsSync(bundle)) {
    // Stack traces then name the TypeScript files and lines, through the map beside the bundle.
    const { setSourceMapsSupport } = await import('node:module');
    setSourceMapsSupport(true);
    await import(bundle.href);
  } else {
    process.stderr.write(`chaperone: neither ${source.pathname} with tsx nor ${bundle.pathname} is here; build it with: npm run build:artefacts\n`);
    process.exit(1);
  }
}

async function tsx() {
  try {
    return await import('tsx/esm/api');
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

const major = Number(process.versions.node.split('.')[0]);
if (major < REQUIRED_MAJOR) {
  process.stderr.write(`chaperone needs Node.js ${REQUIRED_MAJOR} or later; this is ${process.version}\n`);
  process.exit(1);
}
// What would have stopped a top-level await stops here: the error and its stack, exit code 1.
main().catch((err) => {
  process.exitCode = 1;
  console.error(err);
});
