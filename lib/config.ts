// One spec per component is the single source of its flags, CHAPERONE_* environment variables,
// YAML config file keys, --help text and configuration reference, so they cannot drift apart.
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { dirname, resolve as resolvePath } from 'node:path';
import { Command, CommanderError, Option as CommanderOption } from 'commander';
import { parseDocument } from 'yaml';
import * as z from 'zod';
import { VERSION } from './version.js';

export type Env = Readonly<Record<string, string | undefined>>;

export const ENV_PREFIX = 'CHAPERONE_';
export const CONFIG_FLAG = '--config';
export const CONFIG_ENV = `${ENV_PREFIX}CONFIG`;

/** A configuration that cannot be used; the message holds one problem per line. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** Thrown by loadConfig when the command line asks for --help or --version; print `text` and exit 0. */
export class HelpRequested extends Error {
  constructor(readonly text: string) {
    super('help requested');
    this.name = 'HelpRequested';
  }
}

// ---------------------------------------------------------------------------------------------
// Value types

/** How one kind of value is validated, read from text (flags, environment) and described. */
export interface ValueType<S extends z.ZodType = z.ZodType> {
  /** Shown in the reference's type column. */
  readonly name: string;
  /** Shown as the flag's value in --help. */
  readonly placeholder: string;
  /** Validates a file value, or a text value after fromText, into the typed value. */
  readonly schema: S;
  /** A list gathers repeated flags and comma-separated items. */
  readonly list: boolean;
  /** The flag may stand alone (`--anonymous` means `--anonymous=true`). */
  readonly standalone: boolean;
  /** Turns flag or environment text into what the file would hold; the schema judges the result. */
  readonly fromText: (text: string) => unknown;
  /** The allowed values, for --help, when there are only a few. */
  readonly choices?: readonly string[];
  /** A file path: in a config file, a relative one is read relative to that file, as kubeconfig paths are. */
  readonly isPath?: boolean;
}

const asText = (text: string): unknown => text;

function nonEmptyString(what: string) {
  return z.string({ error: `is not ${what}` }).min(1, { error: 'must not be empty' });
}

export function str(): ValueType<ReturnType<typeof nonEmptyString>> {
  return { name: 'string', placeholder: 'string', schema: nonEmptyString('a string'), list: false, standalone: false, fromText: asText };
}

export function path(): ValueType<ReturnType<typeof nonEmptyString>> {
  return { name: 'file path', placeholder: 'file', schema: nonEmptyString('a file path'), list: false, standalone: false, fromText: asText, isPath: true };
}

export function bool(): ValueType<z.ZodBoolean> {
  return {
    name: 'boolean',
    placeholder: 'true|false',
    schema: z.boolean({ error: 'is not a boolean (true or false)' }),
    list: false,
    standalone: true,
    fromText: (text) => (text === 'true' ? true : text === 'false' ? false : text),
  };
}

export function int(bounds: { min?: number; max?: number } = {}): ValueType<z.ZodInt> {
  let schema = z.int({ error: 'is not an integer' });
  if (bounds.min !== undefined) schema = schema.min(bounds.min, { error: `must be at least ${bounds.min}` });
  if (bounds.max !== undefined) schema = schema.max(bounds.max, { error: `must be at most ${bounds.max}` });
  const range = [bounds.min !== undefined && `at least ${bounds.min}`, bounds.max !== undefined && `at most ${bounds.max}`].filter(Boolean);
  return {
    name: range.length > 0 ? `integer, ${range.join(' and ')}` : 'integer',
    placeholder: 'integer',
    schema,
    list: false,
    standalone: false,
    fromText: (text) => (/^[+-]?\d+$/.test(text) ? Number(text) : text),
  };
}

const DURATION_ERROR = 'is not a duration (examples: 500ms, 30s, 5m)';
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds in a Go-style duration (`500ms`, `30s`, `1h30m`, `0`), or undefined if it is not one. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  if (!DURATION.test(text)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) ms += Number(amount) * UNIT_MS[unit!]!;
  ms = Math.round(ms);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

function durationSchema() {
  return z.string({ error: DURATION_ERROR }).transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.issues.push({ code: 'custom', message: DURATION_ERROR, input: text });
      return z.NEVER;
    }
    return ms;
  });
}

/** A Go-style duration string; the loaded value is in milliseconds. */
export function duration(): ValueType<ReturnType<typeof durationSchema>> {
  return { name: 'duration', placeholder: 'duration', schema: durationSchema(), list: false, standalone: false, fromText: asText };
}

function listSchema() {
  return z.array(nonEmptyString('a string'), { error: 'is not a list of strings' });
}

/** A list of strings: a YAML list in the file, comma-separated in text, the flag repeatable. */
export function list(): ValueType<ReturnType<typeof listSchema>> {
  return {
    name: 'list of strings',
    placeholder: 'a,b,...',
    schema: listSchema(),
    list: true,
    standalone: false,
    fromText: (text) => text.split(',').map((item) => item.trim()).filter((item) => item !== ''),
  };
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T): ValueType<z.ZodEnum<{ [K in T[number]]: K }>> {
  return {
    name: `one of ${values.map((value) => `\`${value}\``).join(', ')}`,
    placeholder: 'value',
    schema: z.enum(values, { error: `is not one of ${values.join(', ')}` }),
    list: false,
    standalone: false,
    fromText: asText,
    choices: values,
  };
}

/** A listen address; host is '' for every interface, without brackets for IPv6. */
export interface HostPort {
  host: string;
  port: number;
}

const HOST_PORT = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/;
const HOSTNAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i;

/** `127.0.0.1:6443`, `:9901`, `[::1]:6443`, `localhost:8080`; undefined if the text is none of these. */
export function parseHostPort(text: string): HostPort | undefined {
  const match = HOST_PORT.exec(text);
  if (!match) return undefined;
  const [, bracketed, plain, portText] = match;
  const port = Number(portText);
  if (port > 65535) return undefined;
  if (bracketed !== undefined) return isIPv6(bracketed) ? { host: bracketed, port } : undefined;
  const host = plain ?? '';
  const valid = host === '' || isIPv4(host) || (HOSTNAME.test(host) && !/^[\d.]+$/.test(host));
  return valid ? { host, port } : undefined;
}

function hostPortSchema() {
  const error = 'is not a host:port address';
  return z.string({ error }).refine((text) => parseHostPort(text) !== undefined, { error });
}

/** A listen address, validated by parseHostPort and loaded as the text given. */
export function hostPort(): ValueType<ReturnType<typeof hostPortSchema>> {
  return { name: 'host:port', placeholder: 'host:port', schema: hostPortSchema(), list: false, standalone: false, fromText: asText };
}

function isHttpsUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' && url.hostname !== '';
  } catch {
    return false;
  }
}

function httpsUrlSchema() {
  const error = 'is not an https URL (example: https://10.96.0.1:443)';
  return z.string({ error }).refine(isHttpsUrl, { error });
}

export function httpsUrl(): ValueType<ReturnType<typeof httpsUrlSchema>> {
  return { name: 'https URL', placeholder: 'url', schema: httpsUrlSchema(), list: false, standalone: false, fromText: asText };
}

// ---------------------------------------------------------------------------------------------
// Options and specs

/** A default computed from the environment, such as the API server from KUBERNETES_SERVICE_HOST. */
export interface DerivedDefault<I> {
  /** The default, or undefined when the environment cannot give one: the option is then required. */
  readonly fromEnv: (env: Env) => I | undefined;
  /** The default as --help and the reference show it. */
  readonly text: string;
  /** When fromEnv gives nothing, completing "required when ...". */
  readonly unavailable: string;
}

export interface HasDefault<I> {
  readonly kind: 'default';
  readonly value: I;
}
export interface HasDerivedDefault<I> {
  readonly kind: 'derived';
  readonly derived: DerivedDefault<I>;
}
export interface IsRequired {
  readonly kind: 'required';
}
export interface IsOptional {
  readonly kind: 'optional';
}
export type Presence<I> = HasDefault<I> | HasDerivedDefault<I> | IsRequired | IsOptional;

export interface OptionSpec<S extends z.ZodType = z.ZodType, P extends Presence<z.input<S>> = Presence<z.input<S>>> {
  readonly type: ValueType<S>;
  readonly presence: P;
  /** One sentence. */
  readonly description: string;
  /** As it would be written in a flag or environment variable. */
  readonly example: string | undefined;
}

interface Described {
  description: string;
  example?: string;
}

export function option<S extends z.ZodType>(type: ValueType<S>, init: Described & { default: z.input<S> }): OptionSpec<S, HasDefault<z.input<S>>>;
export function option<S extends z.ZodType>(
  type: ValueType<S>,
  init: Described & { defaultFrom: DerivedDefault<z.input<S>> },
): OptionSpec<S, HasDerivedDefault<z.input<S>>>;
export function option<S extends z.ZodType>(type: ValueType<S>, init: Described & { required: true }): OptionSpec<S, IsRequired>;
export function option<S extends z.ZodType>(type: ValueType<S>, init: Described): OptionSpec<S, IsOptional>;
export function option<S extends z.ZodType>(
  type: ValueType<S>,
  init: Described & { default?: z.input<S>; defaultFrom?: DerivedDefault<z.input<S>>; required?: true },
): OptionSpec<S> {
  const presence: Presence<z.input<S>> =
    'default' in init
      ? { kind: 'default', value: init.default as z.input<S> }
      : init.defaultFrom
        ? { kind: 'derived', derived: init.defaultFrom }
        : init.required
          ? { kind: 'required' }
          : { kind: 'optional' };
  return { type, presence, description: init.description, example: init.example };
}

export type Options = Readonly<Record<string, OptionSpec>>;

export interface ConfigSpec<O extends Options = Options> {
  /** The program's name in --help. */
  readonly command: string;
  readonly summary: string;
  readonly options: O;
}

type ValueOf<T extends OptionSpec> = z.output<T['type']['schema']>;

/** The loaded configuration's type: optional options without a default may be undefined. */
export type ConfigOf<Spec extends ConfigSpec> = {
  readonly [K in keyof Spec['options']]: Spec['options'][K]['presence'] extends IsOptional
    ? ValueOf<Spec['options'][K]> | undefined
    : ValueOf<Spec['options'][K]>;
};

export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

export function envName(key: string): string {
  return ENV_PREFIX + key.replace(/[A-Z]/g, (letter) => `_${letter}`).toUpperCase();
}

const CAMEL_KEY = /^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]+)*$/;

/** Checks a spec once, when it is declared: key spelling, and that defaults and examples are valid. */
export function defineSpec<O extends Options>(spec: ConfigSpec<O>): ConfigSpec<O> {
  const mistakes: string[] = [];
  for (const [key, opt] of Object.entries(spec.options)) {
    if (!CAMEL_KEY.test(key)) mistakes.push(`key "${key}" is not lowerCamelCase (one capital per word)`);
    if ([CONFIG_FLAG, '--help', '--version'].includes(flagName(key))) mistakes.push(`key "${key}" is reserved`);
    const checks: [string, unknown][] = [];
    if (opt.presence.kind === 'default') checks.push(['default', opt.presence.value]);
    if (opt.example !== undefined) checks.push(['example', opt.type.fromText(opt.example)]);
    for (const [what, value] of checks) mistakes.push(...validate(opt.type, value, `${key} ${what}`).problems);
  }
  if (mistakes.length > 0) throw new Error(`${spec.command}: invalid configuration spec:\n${mistakes.join('\n')}`);
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadInput {
  argv: readonly string[];
  env: Env;
  /** Read when neither --config nor CHAPERONE_CONFIG names a file; unlike a named file, it may be absent. */
  configFile?: string;
  /** The only keys the config file may set, and why others may not (whoever writes the file may not choose them). */
  fileKeys?: { allowed: readonly string[]; why: string };
}

interface Candidate {
  where: string;
  value: unknown;
}

/**
 * Flags, then environment, then the config file, then defaults. Every value given is validated, even
 * one a higher source overrides; all problems are reported together in one ConfigError.
 */
export function loadConfig<Spec extends ConfigSpec>(spec: Spec, input: LoadInput): ConfigOf<Spec> {
  const problems: string[] = [];
  const flags = readFlags(spec, input.argv, problems);
  const fromEnv = readEnv(spec, input.env, problems);
  const file = readFile(spec, configFileSource(flags.configFile, fromEnv.configFile, input.configFile), problems, input.fileKeys);

  const config: Record<string, unknown> = {};
  for (const [key, opt] of Object.entries(spec.options)) {
    const candidates = candidatesFor(key, opt, { flags, fromEnv, file });
    config[key] = (candidates.length === 0 ? defaultValue(key, opt, input.env, problems) : firstValid(opt, candidates, problems))?.value;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config as ConfigOf<Spec>;
}

interface Sources {
  flags: Flags;
  fromEnv: { values: Map<string, string> };
  file: { path: string; values: Map<string, unknown> };
}

/** What each source gives for one option, highest precedence first. */
function candidatesFor(key: string, opt: OptionSpec, { flags, fromEnv, file }: Sources): Candidate[] {
  const candidates: Candidate[] = [];
  const flagTexts = flags.values.get(key);
  if (flagTexts !== undefined) candidates.push({ where: flagName(key), value: decodeFlag(opt.type, flagTexts) });
  const envText = fromEnv.values.get(key);
  if (envText !== undefined) candidates.push({ where: envName(key), value: opt.type.fromText(envText) });
  if (file.values.has(key)) candidates.push({ where: `${file.path}: ${key}`, value: file.values.get(key) });
  return candidates;
}

/** The first valid candidate; every candidate is validated, and all their problems reported. */
function firstValid(opt: OptionSpec, candidates: readonly Candidate[], problems: string[]): { value: unknown } | undefined {
  let chosen: { value: unknown } | undefined;
  for (const candidate of candidates) {
    const result = validate(opt.type, candidate.value, candidate.where);
    problems.push(...result.problems);
    if (result.problems.length === 0) chosen ??= result;
  }
  return chosen;
}

function defaultValue(key: string, opt: OptionSpec, env: Env, problems: string[]): { value: unknown } | undefined {
  const { presence } = opt;
  const howToSet = `set it with ${flagName(key)}, ${envName(key)} or "${key}" in the config file`;
  let candidate: Candidate;
  switch (presence.kind) {
    case 'optional':
      return undefined;
    case 'required':
      problems.push(`${key}: required; ${howToSet}`);
      return undefined;
    case 'default':
      candidate = { where: `${key} (default)`, value: presence.value };
      break;
    case 'derived': {
      const derived = presence.derived.fromEnv(env);
      if (derived === undefined) {
        problems.push(`${key}: required when ${presence.derived.unavailable}; ${howToSet}`);
        return undefined;
      }
      candidate = { where: `${key} (default ${presence.derived.text})`, value: derived };
    }
  }
  const result = validate(opt.type, candidate.value, candidate.where);
  problems.push(...result.problems);
  return result;
}

function validate(type: ValueType, value: unknown, where: string): { value: unknown; problems: string[] } {
  const result = type.schema.safeParse(value, { reportInput: true });
  if (result.success) return { value: result.data, problems: [] };
  const problems = result.error.issues.map((issue) => {
    const at = issue.path.map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
    return `${where}${at}: ${show(issue.input === undefined ? value : issue.input)} ${issue.message}`;
  });
  return { value: undefined, problems };
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function decodeFlag(type: ValueType, texts: readonly string[]): unknown {
  if (type.list) return texts.flatMap((text) => type.fromText(text) as string[]);
  return type.fromText(texts.at(-1)!);
}

// --- flags

interface Flags {
  values: Map<string, string[]>;
  configFile: string | undefined;
}

function buildCommand(spec: ConfigSpec): { command: Command; attributes: Map<string, string> } {
  const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];
  const command = new Command(spec.command)
    .description(spec.summary)
    .usage('[flags]')
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .configureHelp({ optionDescription: (opt) => opt.description, sortOptions: false })
    .allowUnknownOption()
    .allowExcessArguments()
    .optionsGroup('Flags:')
    .helpOption('-h, --help', 'Show this help.');
  const attributes = new Map<string, string>();
  for (const [key, opt] of Object.entries(spec.options)) {
    const { type } = opt;
    const flags = type.standalone ? `${flagName(key)} [${type.placeholder}]` : `${flagName(key)} <${type.placeholder}>`;
    const notes = [
      ...(type.choices ? [`one of ${type.choices.join(', ')}`] : []),
      defaultForHelp(opt),
      `env: ${envName(key)}`,
      ...(type.list ? ['repeatable'] : []),
    ];
    const flag = new CommanderOption(flags, `${opt.description} (${notes.join('; ')})`).argParser(collect);
    if (type.standalone) flag.preset('true');
    command.addOption(flag);
    attributes.set(key, flag.attributeName());
  }
  const configFlag = new CommanderOption(`${CONFIG_FLAG} <file>`, `YAML file with any of the options above, keyed by their camelCase names (env: ${CONFIG_ENV}).`);
  command.addOption(configFlag.argParser(collect));
  attributes.set(CONFIG_FLAG, configFlag.attributeName());
  command.version(VERSION, '--version', 'Print the version and exit.');
  return { command, attributes };
}

function defaultForHelp(opt: OptionSpec): string {
  switch (opt.presence.kind) {
    case 'default':
      return `default: ${formatDefault(opt.presence.value) || 'none'}`;
    case 'derived':
      return `default: ${opt.presence.derived.text}`;
    case 'required':
      return 'required';
    case 'optional':
      return 'optional';
  }
}

function formatDefault(value: unknown): string {
  return Array.isArray(value) ? value.join(',') : String(value);
}

/** The --help text, derived from the spec like everything else. */
export function renderHelp(spec: ConfigSpec): string {
  return (
    buildCommand(spec).command.helpInformation() +
    '\nEvery flag can also be set by its environment variable, or by its camelCase key\n' +
    '(--tls-cert-file is tlsCertFile) in the YAML file named by --config. Flags win\n' +
    'over the environment, the environment over the file.\n'
  );
}

function readFlags(spec: ConfigSpec, argv: readonly string[], problems: string[]): Flags {
  const { command, attributes } = buildCommand(spec);
  const end = argv.indexOf('--');
  const args = end === -1 ? [...argv] : argv.slice(0, end);
  dropTrailingFlagWithoutValue(command, args, problems);
  parseCommand(spec, command, args);
  reportUnknownArguments(spec, command.args, problems);
  if (end !== -1) problems.push(...argv.slice(end + 1).map((arg) => unexpectedArgument(spec, arg)));

  const values = new Map<string, string[]>();
  for (const key of Object.keys(spec.options)) {
    const texts = command.getOptionValue(attributes.get(key)!) as string[] | undefined;
    if (texts !== undefined) values.set(key, texts);
  }
  const configFiles = command.getOptionValue(attributes.get(CONFIG_FLAG)!) as string[] | undefined;
  return { values, configFile: configFiles?.at(-1) };
}

// Commander throws on a value-taking flag with nothing after it; report it with the rest instead.
function dropTrailingFlagWithoutValue(command: Command, args: string[], problems: string[]): void {
  const last = args.at(-1);
  const lastFlag = last === undefined ? undefined : command.options.find((flag) => flag.long === last);
  if (!lastFlag?.required) return;
  problems.push(`${last}: needs a value`);
  args.pop();
}

function parseCommand(spec: ConfigSpec, command: Command, args: readonly string[]): void {
  try {
    command.parse(args, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError && error.code === 'commander.helpDisplayed') throw new HelpRequested(renderHelp(spec));
    if (error instanceof CommanderError && error.code === 'commander.version') throw new HelpRequested(`${VERSION}\n`);
    throw error;
  }
}

function reportUnknownArguments(spec: ConfigSpec, args: readonly string[], problems: string[]): void {
  const known = [...Object.keys(spec.options).map(flagName), CONFIG_FLAG, '--help'];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg.length > 1 && arg.startsWith('-')) {
      const name = arg.split('=', 1)[0]!;
      problems.push(`${name}: unknown flag${didYouMean(name, known)}`);
      // Without "=", the next argument is most likely the unknown flag's value.
      const next = args[i + 1];
      if (!arg.includes('=') && next !== undefined && !next.startsWith('-')) i++;
    } else {
      problems.push(unexpectedArgument(spec, arg));
    }
  }
}

function unexpectedArgument(spec: ConfigSpec, arg: string): string {
  return `${show(arg)}: unexpected argument (${spec.command} takes flags only)`;
}

// --- environment

// Kubernetes gives a pod variables for every Service in its namespace (unless enableServiceLinks is
// false): a Service named chaperone-injector yields CHAPERONE_INJECTOR_SERVICE_HOST,
// CHAPERONE_INJECTOR_PORT_443_TCP_ADDR and so on. They are not typos, and must not stop a start.
const SERVICE_LINK =
  /^CHAPERONE_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$/;

function readEnv(spec: ConfigSpec, env: Env, problems: string[]): { values: Map<string, string>; configFile: string | undefined } {
  const keyOf = new Map(Object.keys(spec.options).map((key) => [envName(key), key]));
  const known = [...keyOf.keys(), CONFIG_ENV];
  const values = new Map<string, string>();
  let configFile: string | undefined;
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX)) continue;
    const key = keyOf.get(name);
    if (key === undefined && name !== CONFIG_ENV) {
      if (!SERVICE_LINK.test(name)) problems.push(`${name}: unknown environment variable${didYouMean(name, known)}`);
      continue;
    }
    // An empty variable counts as unset, as a Kubernetes manifest often leaves one.
    if (value === undefined || value === '') continue;
    if (key === undefined) configFile = value;
    else values.set(key, value);
  }
  return { values, configFile };
}

// --- file

interface FileSource {
  path: string;
  /** How the path was named, for a file that cannot be read; undefined for the default file. */
  namedBy: string | undefined;
}

function configFileSource(flag: string | undefined, env: string | undefined, fallback: string | undefined): FileSource | undefined {
  if (flag !== undefined) return { path: flag, namedBy: CONFIG_FLAG };
  if (env !== undefined) return { path: env, namedBy: CONFIG_ENV };
  if (fallback !== undefined) return { path: fallback, namedBy: undefined };
  return undefined;
}

function readFile(spec: ConfigSpec, source: FileSource | undefined, problems: string[], limit?: LoadInput['fileKeys']): { path: string; values: Map<string, unknown> } {
  if (source === undefined) return { path: '', values: new Map<string, unknown>() };
  const text = readConfigText(source, problems);
  const content = text === undefined ? undefined : parseConfigMapping(source.path, text, problems);
  return { path: source.path, values: content === undefined ? new Map<string, unknown>() : fileValues({ spec, file: source.path, content, limit }, problems) };
}

/** The file's text; undefined when it cannot be read (a problem, unless the default file is absent). */
function readConfigText({ path: file, namedBy }: FileSource, problems: string[]): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (namedBy === undefined && code === 'ENOENT') return undefined;
    const reason = code === 'ENOENT' ? 'no such file' : (error as Error).message;
    problems.push(`${namedBy ?? 'default config file'}: cannot read ${show(file)}: ${reason}`);
    return undefined;
  }
}

/** The YAML mapping of option keys; undefined for an empty document or one with problems. */
function parseConfigMapping(file: string, text: string, problems: string[]): object | undefined {
  const document = parseDocument(text);
  if (document.errors.length > 0) {
    problems.push(...document.errors.map((error) => `${file}: ${error.message.split('\n', 1)[0]!}`));
    return undefined;
  }
  let content: unknown;
  try {
    content = document.toJS();
  } catch (error) {
    // An alias bomb (ReferenceError: Excessive alias count): refused, naming the file.
    problems.push(`${file}: ${(error as Error).message}`);
    return undefined;
  }
  if (content === null || content === undefined) return undefined;
  if (typeof content !== 'object' || Array.isArray(content)) {
    problems.push(`${file}: is not a mapping of option keys to values`);
    return undefined;
  }
  return content;
}

function fileValues({ spec, file, content, limit }: { spec: ConfigSpec; file: string; content: object; limit: LoadInput['fileKeys'] }, problems: string[]): Map<string, unknown> {
  const values = new Map<string, unknown>();
  const keys = Object.keys(spec.options);
  for (const [key, value] of Object.entries(content)) {
    if (!Object.hasOwn(spec.options, key)) problems.push(`${file}: unknown key ${show(key)}${didYouMean(key, keys, show)}`);
    else if (limit && !limit.allowed.includes(key)) problems.push(`${file}: ${key} ${limit.why}`);
    // An empty value (`podName:`) counts as unset.
    else if (value !== null) values.set(key, spec.options[key]!.type.isPath && typeof value === 'string' ? resolvePath(dirname(file), value) : value);
  }
  return values;
}

// --- suggestions

const normalise = (name: string): string => name.replace(/^--|^CHAPERONE_/, '').replace(/[-_]/g, '').toLowerCase();

function didYouMean(name: string, candidates: readonly string[], quote: (candidate: string) => string = String): string {
  const wanted = normalise(name);
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const target = normalise(candidate);
    const distance = editDistance(wanted, target);
    if (distance <= Math.min(2, Math.floor(target.length / 3)) && (best === undefined || distance < best.distance)) {
      best = { candidate, distance };
    }
  }
  return best === undefined ? '' : ` (did you mean ${quote(best.candidate)}?)`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

// ---------------------------------------------------------------------------------------------
// Reference

const cell = (text: string): string => text.replace(/\|/g, '\\|');
const code = (text: string): string => `\`${text}\``;

function defaultForReference(opt: OptionSpec): string {
  switch (opt.presence.kind) {
    case 'default': {
      const text = formatDefault(opt.presence.value);
      return text === '' ? 'empty' : code(text);
    }
    case 'derived':
      return `${code(opt.presence.derived.text)}; required when ${opt.presence.derived.unavailable}`;
    case 'required':
      return '**required**';
    case 'optional':
      return 'none';
  }
}

/** A markdown section: a heading and one table row per option, plus --config. */
export function renderReference(spec: ConfigSpec, title: string): string {
  const rows = Object.entries(spec.options).map(([key, opt]) => {
    const description = opt.example === undefined ? opt.description : `${opt.description} Example: ${code(opt.example)}.`;
    return [code(flagName(key)), code(envName(key)), code(key), opt.type.name, defaultForReference(opt), description];
  });
  rows.push([code(CONFIG_FLAG), code(CONFIG_ENV), '—', 'file path', 'none', 'The YAML config file to read.']);
  const lines = [
    '| Flag | Environment variable | File key | Type | Default | Description |',
    '|---|---|---|---|---|---|',
    ...rows.map((row) => `| ${row.map(cell).join(' | ')} |`),
  ];
  return `## ${title}\n\n${lines.join('\n')}\n`;
}
