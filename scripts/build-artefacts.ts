// Builds what the images ship and `npx chaperone` runs: one self-contained ESM bundle per entry
// point (dist/<name>.mjs), its source map, and the notices of every package bundled into it.
// The Dockerfiles' build stage and CI run exactly this (`npm run build:artefacts`); docs/images.md
// says what is in the bundles and why.
import { createHash } from 'node:crypto';
import { builtinModules } from 'node:module';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, version as esbuildVersion, type Metafile, type Plugin } from 'esbuild';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(REPO, 'dist');
const SELF = path.relative(REPO, fileURLToPath(import.meta.url));
/**
 * What shapes the bundles besides their inputs: this script's options, the compiler options esbuild
 * reads, and package.json, whose version each bundle carries.
 */
const BUILD_CONFIGURATION = [SELF, 'tsconfig.json', 'package.json'];

/** The version --version prints: package.json's, written into the bundles (lib/version.ts). */
export async function packageVersion(): Promise<string> {
  return (JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Bundle name -> entry point. dist/sidecar.mjs is also what the benchmarks start. */
export const ENTRY_POINTS = {
  sidecar: 'sidecar/main.ts',
  injector: 'injector/main.ts',
  chaperone: 'cli/main.ts',
} as const;
export type BundleName = keyof typeof ENTRY_POINTS;
export const BUNDLE_NAMES = Object.keys(ENTRY_POINTS) as BundleName[];

/** The files of one bundle in dist/, which are all its image copies. */
export function bundleFiles(name: BundleName): { bundle: string; sourceMap: string; notices: string } {
  return { bundle: `${name}.mjs`, sourceMap: `${name}.mjs.map`, notices: `${name}.THIRD_PARTY_NOTICES.txt` };
}

/**
 * The allocator the sidecar image preloads (docs/sizing.md): Debian's jemalloc, copied into dist/ from
 * the system the build runs on, as the Dockerfile's build stage (Debian bookworm) has it too.
 */
export const JEMALLOC = { file: 'libjemalloc.so.2', debianPackage: 'libjemalloc2' };

/** Files an image ships beside its bundle's: shared libraries the build copies from the system. */
export function imageLibraries(name: BundleName): string[] {
  return name === 'sidecar' ? [JEMALLOC.file] : [];
}

const MULTIARCH: Partial<Record<NodeJS.Architecture, string>> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

async function copyJemalloc(): Promise<string> {
  const from = path.join('/usr/lib', MULTIARCH[process.arch] ?? `${process.arch}-linux-gnu`, JEMALLOC.file);
  const copyright = `/usr/share/doc/${JEMALLOC.debianPackage}/copyright`;
  let library: Buffer;
  let licence: string;
  try {
    [library, licence] = await Promise.all([readFile(from), readFile(copyright, 'utf8')]);
  } catch (err) {
    throw new Error(`the sidecar image preloads jemalloc: install Debian's ${JEMALLOC.debianPackage} (apt-get install -y ${JEMALLOC.debianPackage}); ${(err as Error).message}`, { cause: err });
  }
  await writeAtomically(path.join(DIST, JEMALLOC.file), library);
  return `=== jemalloc (${JEMALLOC.file}, from Debian's ${JEMALLOC.debianPackage}; BSD-2-Clause)\n\n--- copyright\n\n${licence.trim()}\n`;
}

/** How the bundles were made: what dist/build-info.json records, to tell when they are stale. */
export interface BuildInfo {
  esbuild: string;
  /** The version the bundles print with --version. */
  version: string;
  /** Every file that went into any bundle (and the build's configuration), relative to the repository: its SHA-256. */
  inputs: Record<string, string>;
  bundles: Record<BundleName, { inputs: string[]; packages: BundledPackage[]; bytes: number }>;
}

export interface BundledPackage {
  name: string;
  version: string;
  license: string;
  /** The licence and notice files the package ships, relative to the repository. */
  files: string[];
}

export const BUILD_INFO = 'build-info.json';

// Licences that let the images ship the code with its notices; anything else stops the build until
// someone decides. An SPDX OR offers a choice; the build takes the permissive one.
const PERMISSIVE = new Set(['MIT', 'ISC', 'Apache-2.0', 'BSD-2-Clause', 'BSD-3-Clause', '0BSD', 'BlueOak-1.0.0', 'Unlicense', 'CC0-1.0']);

export function isPermissive(expression: string): boolean {
  const bare = expression.replace(/[()]/g, '').trim();
  if (/\sAND\s/.test(bare)) return bare.split(/\s+AND\s+/).every(isPermissive);
  return bare.split(/\s+OR\s+/).some((id) => PERMISSIVE.has(id.trim()));
}

// cli/demo.ts runs a control plane with the local cluster (local-cluster/: Go builds, kube-apiserver,
// etcd). That is for a checkout, never for an image: the bundle gets this in its place.
const DEMO_MODULE = path.join(REPO, 'cli/demo.ts');
const DEMO_IN_BUNDLE = `export async function runDemo() {
  process.stderr.write('chaperone demo starts a local control plane with the local cluster, which this build of chaperone leaves out.\\n' +
    'Run it from a checkout of the chaperone repository: npm install && npm run demo\\n');
  process.exitCode = 2;
}
`;

const VIRTUAL = 'chaperone-build';
/** How the metafile names the stand-in: it is in no file. */
export const DEMO_STAND_IN = `${VIRTUAL}:demo-left-out`;

function demoLeftOut(): Plugin {
  return {
    name: 'chaperone-demo-left-out',
    setup(plugin) {
      plugin.onResolve({ filter: /(^|\/)demo\.js$/ }, (args) =>
        path.resolve(args.resolveDir, args.path.replace(/\.js$/, '.ts')) === DEMO_MODULE ? { path: 'demo-left-out', namespace: VIRTUAL } : undefined,
      );
      plugin.onLoad({ filter: /.*/, namespace: VIRTUAL }, () => ({ contents: DEMO_IN_BUNDLE, loader: 'js' }));
    },
  };
}

/**
 * V8 keeps a script's source as one byte per character only while every character is ASCII: one "µ"
 * in a dependency's regular expression doubled the memory the bundle's source takes (1.1 MiB more
 * in every process). A dependency's non-ASCII characters are written as \u escapes, which mean the
 * same in strings, regular expressions, identifiers and comments.
 */
function asciiDependencies(): Plugin {
  return {
    name: 'chaperone-ascii-dependencies',
    setup(plugin) {
      plugin.onLoad({ filter: /node_modules\/.*\.[cm]?js$/ }, async (args) => {
        const source = await readFile(args.path, 'utf8');
        if (!NON_ASCII.test(source)) return undefined;
        return { contents: source.replace(NON_ASCII_ALL, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`), loader: 'js', resolveDir: path.dirname(args.path) };
      });
    },
  };
}

/**
 * Node's built-in modules through `require`, not `import`. An ES module's view of a built-in reads
 * every one of its exports, lazy ones too: `import { request } from 'node:http'` loads Node's undici
 * (http.WebSocket), `node:tls` builds the list of root certificates, `node:process` opens standard
 * input: 2 MiB of an idle sidecar for objects nothing uses. The bundle imports a stand-in instead,
 * which requires the module and exports its plain values (read once, as any import would), and the
 * module itself as the default export, whose lazy members load when something reads them. A lazy
 * member imported by name (`import { AsyncLocalStorage } from 'node:async_hooks'`, `promises` of
 * node:fs) fails the build with "No matching export in chaperone-builtin:…": read it from the
 * default import instead (`import asyncHooks from 'node:async_hooks'`).
 */
function builtinsThroughRequire(): Plugin {
  const builtin = new RegExp(`^(node:)?(${builtinModules.map((name) => name.replace(/[/]/g, '\\/')).join('|')})$`);
  return {
    name: 'chaperone-builtins-through-require',
    setup(plugin) {
      // A require() of a built-in stays one: esbuild leaves it to Node, as without this plugin.
      plugin.onResolve({ filter: builtin }, (args) => (args.kind === 'require-call' ? undefined : { path: args.path, namespace: BUILTIN }));
      plugin.onLoad({ filter: /.*/, namespace: BUILTIN }, (args) => ({ contents: builtinStandIn(args.path), loader: 'js' }));
    },
  };
}

function builtinStandIn(specifier: string): string {
  const descriptors = Object.getOwnPropertyDescriptors(process.getBuiltinModule(specifier));
  const plain = Object.keys(descriptors).filter((name) => name !== 'default' && descriptors[name]!.enumerable && 'value' in descriptors[name]!);
  const bindings = plain.map((name, i) => `${JSON.stringify(name)}: b${i}`).join(', ');
  const exported = plain.map((name, i) => `b${i} as ${JSON.stringify(name)}`).join(', ');
  return `const builtin = require(${JSON.stringify(specifier)});\nconst { ${bindings} } = builtin;\nexport default builtin;\nexport { ${exported} };\n`;
}

const BUILTIN = 'chaperone-builtin';
/** How the metafile names the module that requires a built-in: no file, and no input of a bundle. */
const isBuiltinStandIn = (input: string) => input.startsWith(`${BUILTIN}:`);

const NON_ASCII = /[^\x00-\x7f]/;
// Every one, by UTF-16 unit: a character beyond the BMP becomes its surrogate pair.
const NON_ASCII_ALL = /[^\x00-\x7f]/g;

/** A bundle with a character outside ASCII would be stored two bytes per character: refused, saying where. */
function assertAscii(name: string, contents: Uint8Array): void {
  const text = Buffer.from(contents).toString('utf8');
  const at = text.search(NON_ASCII);
  if (at >= 0) throw new Error(`${name} holds a character outside ASCII at ${at} (${JSON.stringify(text.slice(Math.max(0, at - 40), at + 20))}): V8 would keep its whole source two bytes per character`);
}

function sha256(content: Buffer | string): string {
  return createHash('sha256').update(content).digest('hex');
}

/** The package a bundled file belongs to: the directory after its last node_modules/. */
function packageRoot(input: string): string | undefined {
  const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  return match?.[1];
}

const NOTICE_FILE = /^(licen[cs]e|copying|notice)(\b|[-._])/i;

async function bundledPackage(root: string): Promise<BundledPackage> {
  const manifest = JSON.parse(await readFile(path.join(REPO, root, 'package.json'), 'utf8')) as { name: string; version: string; license?: unknown };
  if (typeof manifest.license !== 'string') throw new Error(`${manifest.name}@${manifest.version} (${root}) declares no SPDX licence: decide whether the images may ship it`);
  if (!isPermissive(manifest.license)) {
    throw new Error(`${manifest.name}@${manifest.version} (${root}) is licensed ${manifest.license}, which is not on the permissive list in ${SELF}: decide whether the images may ship it`);
  }
  const files = (await readdir(path.join(REPO, root), { withFileTypes: true }))
    .filter((entry) => entry.isFile() && NOTICE_FILE.test(entry.name))
    .map((entry) => path.posix.join(root, entry.name))
    .sort();
  return { name: manifest.name, version: manifest.version, license: manifest.license, files };
}

async function notices(name: BundleName, packages: BundledPackage[], libraries: string[]): Promise<string> {
  const sections = await Promise.all(
    packages.map(async (pkg) => {
      const texts = await Promise.all(pkg.files.map(async (file) => `--- ${path.posix.basename(file)}\n\n${(await readFile(path.join(REPO, file), 'utf8')).trim()}\n`));
      const body = texts.length > 0 ? texts.join('\n') : `(the package ships no licence file; it declares ${pkg.license})\n`;
      return `=== ${pkg.name}@${pkg.version} (${pkg.license})\n\n${body}`;
    }),
  );
  const shipped = libraries.length > 0 ? `, and in the libraries its image ships beside it` : '';
  return `Third-party software in ${bundleFiles(name).bundle}${shipped}, with the licence and notice files each ships.\n\n${[...sections, ...libraries].join('\n')}`;
}

/** Writes a file under a temporary name and renames it into place: a reader never sees half of it. */
async function writeAtomically(file: string, content: Uint8Array | string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, file);
}

function outputInputs(metafile: Metafile, name: BundleName): string[] {
  const key = `dist/${bundleFiles(name).bundle}`;
  const output = metafile.outputs[key];
  if (!output) throw new Error(`esbuild wrote no ${key}`);
  return Object.keys(output.inputs)
    .filter((input) => !isBuiltinStandIn(input))
    .sort();
}

/** Whatever a file holds when it changed while the build read it: the next check finds it stale. */
const CHANGED_DURING_BUILD = 'changed during the build';

export async function buildArtefacts(): Promise<BuildInfo> {
  const started = Date.now();
  const version = await packageVersion();
  const result = await build({
    absWorkingDir: REPO,
    entryPoints: ENTRY_POINTS,
    outdir: DIST,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    // CommonJS packages (pino, prom-client...) require Node's built-in modules.
    banner: { js: "import { createRequire as __chaperoneCreateRequire } from 'node:module'; const require = __chaperoneCreateRequire(import.meta.url);" },
    // Minified, but with names kept and a source map beside it: stack traces name the function, and
    // `chaperone symbolise` maps their bundle positions to the TypeScript file and line with the map
    // (the images run without --enable-source-maps, which would hold the whole map in memory).
    // Without the sources' text, the map stays small.
    minify: true,
    keepNames: true,
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'eof',
    plugins: [demoLeftOut(), asciiDependencies(), builtinsThroughRequire()],
    define: { CHAPERONE_VERSION: JSON.stringify(version) },
    metafile: true,
    write: false,
    logLevel: 'warning',
  });
  await mkdir(DIST, { recursive: true });
  for (const file of result.outputFiles) if (file.path.endsWith('.mjs')) assertAscii(path.basename(file.path), file.contents);
  for (const file of result.outputFiles) await writeAtomically(file.path, file.contents);

  const inputs: Record<string, string> = {};
  for (const input of [...BUILD_CONFIGURATION, ...Object.keys(result.metafile.inputs).filter((input) => input !== DEMO_STAND_IN && !isBuiltinStandIn(input))]) {
    const file = path.join(REPO, input);
    inputs[input] = (await stat(file)).mtimeMs >= started ? CHANGED_DURING_BUILD : sha256(await readFile(file));
  }

  const jemallocNotice = await copyJemalloc();
  const bundles = {} as BuildInfo['bundles'];
  for (const name of BUNDLE_NAMES) {
    const bundleInputs = outputInputs(result.metafile, name);
    const roots = [...new Set(bundleInputs.map(packageRoot).filter((root) => root !== undefined))].sort();
    const packages = await Promise.all(roots.map(bundledPackage));
    await writeAtomically(path.join(DIST, bundleFiles(name).notices), await notices(name, packages, imageLibraries(name).includes(JEMALLOC.file) ? [jemallocNotice] : []));
    const bytes = result.outputFiles.find((file) => path.basename(file.path) === bundleFiles(name).bundle)!.contents.byteLength;
    bundles[name] = { inputs: bundleInputs, packages, bytes };
  }
  const info: BuildInfo = { esbuild: esbuildVersion, version, inputs, bundles };
  await writeAtomically(path.join(DIST, BUILD_INFO), `${JSON.stringify(info, null, 2)}\n`);
  return info;
}

/** Why the artefacts in dist/ are not those of the current sources, or undefined when they are. */
export async function whyStale(): Promise<string | undefined> {
  let info: BuildInfo;
  try {
    info = JSON.parse(await readFile(path.join(DIST, BUILD_INFO), 'utf8')) as BuildInfo;
  } catch {
    return `there is no ${BUILD_INFO}`;
  }
  if (info.esbuild !== esbuildVersion) return `esbuild is ${esbuildVersion} now, not ${info.esbuild}`;
  const present = new Set(await readdir(DIST));
  for (const name of BUNDLE_NAMES) {
    if (!info.bundles[name]) return `it has no ${name} bundle`;
    const missing = [...Object.values(bundleFiles(name)), ...imageLibraries(name)].find((file) => !present.has(file));
    if (missing) return `${missing} is missing`;
  }
  const unrecorded = BUILD_CONFIGURATION.find((file) => !(file in info.inputs));
  if (unrecorded) return `${unrecorded} is not among its inputs`;
  for (const [input, hash] of Object.entries(info.inputs)) {
    const now = await readFile(path.join(REPO, input)).then(sha256, () => undefined);
    if (now !== hash) return `${input} ${now === undefined ? 'is gone' : 'changed'}`;
  }
  return undefined;
}

/** The build info of up-to-date artefacts in dist/, building them first when they are missing or stale. */
export async function ensureArtefacts(log: (line: string) => void = () => undefined): Promise<BuildInfo> {
  const why = await whyStale();
  if (why === undefined) return JSON.parse(await readFile(path.join(DIST, BUILD_INFO), 'utf8')) as BuildInfo;
  log(`building the artefacts: ${why}`);
  return buildArtefacts();
}

async function main(): Promise<void> {
  const started = Date.now();
  let info: BuildInfo;
  try {
    info = await buildArtefacts();
  } catch (err) {
    // esbuild has printed its errors, each with the file and line.
    process.stderr.write(`build-artefacts: ${(err as { errors?: unknown[] }).errors ? 'the build failed' : (err as Error).message}\n`);
    process.exit(1);
  }
  for (const name of BUNDLE_NAMES) {
    const bundle = info.bundles[name];
    process.stdout.write(`dist/${bundleFiles(name).bundle}: ${(bundle.bytes / 1024 / 1024).toFixed(1)} MiB, ${bundle.packages.length} packages\n`);
  }
  process.stdout.write(`version ${info.version}\n`);
  process.stdout.write(`built in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
