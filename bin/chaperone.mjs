#!/usr/bin/env node
// The `chaperone` command as npm links it. In a checkout (the TypeScript and tsx are there) it runs
// the TypeScript, which is always current and includes the demo; anywhere else it runs the bundle
// that `npm run build:artefacts` writes to dist/ (docs/images.md).
import { existsSync } from 'node:fs';
import { setSourceMapsSupport } from 'node:module';

const source = new URL('../cli/main.ts', import.meta.url);
const bundle = new URL('../dist/chaperone.mjs', import.meta.url);

async function tsx() {
  try {
    return await import('tsx/esm/api');
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw err;
  }
}

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`chaperone needs Node.js 24 or later; this is ${process.version}\n`);
  process.exit(1);
}
const typescript = existsSync(source) ? await tsx() : undefined;
if (typescript) {
  typescript.register();
  await import(source.href);
} else if (existsSync(bundle)) {
  // Stack traces then name the TypeScript files and lines, through the map beside the bundle.
  setSourceMapsSupport(true);
  await import(bundle.href);
} else {
  process.stderr.write(`chaperone: neither ${source.pathname} with tsx nor ${bundle.pathname} is here; build it with: npm run build:artefacts\n`);
  process.exit(1);
}
