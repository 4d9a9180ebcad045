// chaperone symbolise: the images run their bundles without Node's --enable-source-maps, which reads
// and decodes the whole map at start (tens of MiB that the sidecar would carry in every pod). Their
// stack traces still name each function (the bundles keep names), at a position in the bundle; this
// maps those positions back to the TypeScript file, line and column, with the map of the same build.
import { createReadStream, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface SymboliseOptions {
  /** Source maps to use, each for the bundle it is named after (sidecar.mjs.map for sidecar.mjs). */
  map: string[];
}

const BUNDLES = ['sidecar', 'injector', 'chaperone'] as const;

/** A position in one of the bundles, as a stack frame writes it: /app/sidecar.mjs:1:2345, file:///…/dist/injector.mjs:1:99. */
const POSITION = /(?:file:\/\/)?(?:\/[^\s():"'\\]*\/)?(sidecar|injector|chaperone)\.mjs:(\d+):(\d+)/g;

/** Where this installation keeps the maps of its own bundles: dist/, beside the bundle or the checkout's. */
function ownDist(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.basename(here) === 'dist' ? here : path.join(here, '..', 'dist');
}

async function loadMap(file: string): Promise<SourceMap> {
  let payload: SourceMapPayload;
  try {
    payload = JSON.parse(await readFile(file, 'utf8')) as SourceMapPayload;
  } catch (err) {
    throw new Error(`cannot read the source map ${file}: ${(err as Error).message}`, { cause: err });
  }
  return new SourceMap(payload);
}

/** The maps by bundle name: those given, else this installation's own (which fit only logs of its own version). */
export async function loadMaps(files: string[]): Promise<Map<string, SourceMap>> {
  const maps = new Map<string, SourceMap>();
  for (const file of files) {
    const name = BUNDLES.find((bundle) => path.basename(file) === `${bundle}.mjs.map`);
    if (!name) throw new Error(`${file} is not named after a bundle (${BUNDLES.map((bundle) => `${bundle}.mjs.map`).join(', ')})`);
    maps.set(name, await loadMap(file));
  }
  if (files.length > 0) return maps;
  for (const name of BUNDLES) {
    const file = path.join(ownDist(), `${name}.mjs.map`);
    if (existsSync(file)) maps.set(name, await loadMap(file));
  }
  if (maps.size === 0) throw new Error(`no source maps in ${ownDist()}: give the image's with --map (docs/images.md, "Stack traces from the images")`);
  return maps;
}

/** The text with every bundle position that a map covers replaced by the TypeScript position it came from. */
export function symbolise(text: string, maps: ReadonlyMap<string, SourceMap>): string {
  return text.replace(POSITION, (whole, name: string, line: string, column: string) => {
    const entry = maps.get(name)?.findEntry(Number(line) - 1, Number(column) - 1);
    if (!entry || !('originalSource' in entry)) return whole;
    const source = entry.originalSource.replace(/^(\.\.\/)+/, '');
    return `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
  });
}

/** Reads the files (or standard input) line by line and writes each line symbolised. */
export async function runSymbolise(files: string[], options: SymboliseOptions): Promise<void> {
  const maps = await loadMaps(options.map);
  const inputs = files.length > 0 ? files.map((file) => createReadStream(file)) : [process.stdin];
  for (const input of inputs) {
    for await (const line of createInterface({ input, crlfDelay: Infinity })) process.stdout.write(`${symbolise(line, maps)}\n`);
  }
}
