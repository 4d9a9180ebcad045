// CEL as the API server's JWT authenticator uses it: `claims` (a map of the token's claims, JSON
// numbers as doubles) for claim mappings and claim validation rules, `user` (username, uid, groups,
// extra) for user validation rules. Every expression is parsed and type-checked once, at start.
import { Environment, type ASTNode, type ParseResult } from '@marcbachmann/cel-js';

/** What an expression must evaluate to, as the API server checks at compile time. */
export type ReturnType = 'any' | 'bool';

export interface CompiledExpression {
  /** The expression as written in the configuration. */
  readonly expression: string;
  /** Evaluates with the variable bound; throws on an evaluation error. */
  evaluate(value: unknown): unknown;
  readonly ast: ASTNode;
}

/** A compile error, worded for the configuration's author. */
export class CelCompileError extends Error {}

const LIMITS = { maxAstNodes: 10_000, maxDepth: 100, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 32 };

// Functions of cel-go's strings extension that the API server offers and the library lacks.
function baseEnvironment(): Environment {
  return new Environment({ enableOptionalTypes: true, homogeneousAggregateLiterals: false, limits: LIMITS })
    .registerFunction('string.replace(string, string): string', (s: string, from: string, to: string) => replaceN(s, from, to, -1))
    .registerFunction('string.replace(string, string, int): string', (s: string, from: string, to: string, n: bigint) => replaceN(s, from, to, Number(n)))
    .registerFunction('string.charAt(int): string', (s: string, i: bigint) => {
      const chars = [...s];
      if (i < 0n || i > BigInt(chars.length)) throw new Error(`index out of range: ${i}`);
      return chars[Number(i)] ?? '';
    })
    .registerFunction('string.reverse(): string', (s: string) => [...s].reverse().join(''));
}

/** Go's strings.Replace: at most n replacements (all when n < 0); "" matches at every character boundary. */
function replaceN(s: string, from: string, to: string, n: number): string {
  const parts = from === '' ? ['', ...s, ''] : s.split(from);
  if (n < 0 || n >= parts.length - 1) return parts.join(to);
  return parts.slice(0, n + 1).join(to) + from + parts.slice(n + 1).join(from);
}

const USER_SCHEMA = { username: 'string', uid: 'string', groups: 'list<string>', extra: 'map<string, list<string>>' };

const environments = {
  claims: baseEnvironment().registerVariable('claims', 'map<string, dyn>'),
  user: baseEnvironment().registerVariable('user', { schema: USER_SCHEMA }),
};

export type Variable = keyof typeof environments;

function firstLine(message: string): string {
  return message.split('\n', 1)[0]!;
}

/** Parses and type-checks; throws CelCompileError with the API server's kind of reason. */
export function compile(variable: Variable, expression: string, returns: ReturnType): CompiledExpression {
  const env = environments[variable];
  let parsed: ParseResult;
  try {
    parsed = env.parse(expression);
  } catch (err) {
    throw new CelCompileError(`compilation failed: ${firstLine((err as Error).message)}`);
  }
  const checked = parsed.check();
  if (!checked.valid) throw new CelCompileError(`compilation failed: ${firstLine(checked.error?.message ?? 'invalid expression')}`);
  if (variable === 'claims') {
    const range = anyTypedRange(parsed.ast);
    if (range) throw new CelCompileError(`compilation failed: expression of type 'any' cannot be range of a comprehension (must be list, map, or dynamic): ${range}`);
  }
  const escaped = escapedField(parsed.ast);
  if (escaped !== undefined) {
    throw new CelCompileError(`the field name ${JSON.stringify(escaped)} is one the API server unescapes (a__dot__b is "a.b" to it, and an unknown __x__ no field at all); write claims["a.b"] for a claim with a dot`);
  }
  if (returns === 'bool' && checked.type !== 'bool') throw new CelCompileError(`must evaluate to bool, not ${checked.type}`);
  return {
    expression,
    ast: parsed.ast,
    evaluate: (value) => parsed({ [variable]: value }) as unknown,
  };
}

/** Whether the expression selects `<variable>.<field>` (or `.?<field>`) anywhere, as the API server's hasSelectExp. */
export function selects(node: ASTNode, variable: string, field: string): boolean {
  if ((node.op === '.' || node.op === '.?') && node.args[1] === field && node.args[0].op === 'id' && node.args[0].args === variable) return true;
  return children(node).some((child) => selects(child, variable, field));
}

/** The escapes of the API server's CEL field names (__dot__, __dash__, __slash__, __underscores__, __<keyword>__). */
const ESCAPE = /__[^_]+__/;

/**
 * A field the expression selects, or indexes with a constant, whose name the API server's CEL would
 * unescape before looking it up (k8s.io/apiserver/pkg/cel's Unescape, applied to claims and to
 * user.extra, at every level): such an expression reads another field there than here.
 */
function escapedField(node: ASTNode): string | undefined {
  if ((node.op === '.' || node.op === '.?') && typeof node.args[1] === 'string' && ESCAPE.test(node.args[1])) return node.args[1];
  if (node.op === '[]' || node.op === '[?]') {
    const index = node.args[1];
    if (isNode(index) && index.op === 'value' && typeof index.args === 'string' && ESCAPE.test(index.args)) return index.args;
  }
  for (const child of children(node)) {
    const found = escapedField(child);
    if (found !== undefined) return found;
  }
  return undefined;
}

const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

/**
 * The API server declares claims as map(string, any): a claim is of type any, which its type checker
 * refuses as the range of a comprehension (claims.groups.map(...)) until it is made dyn(...). The
 * library here types claims as dyn, so this finds such ranges itself; it returns the offending macro.
 */
function anyTypedRange(node: ASTNode): string | undefined {
  if (node.op === 'rcall' && COMPREHENSIONS.has(node.args[0]) && isAnyTyped(node.args[1])) return `.${node.args[0]}()`;
  for (const child of children(node)) {
    const found = anyTypedRange(child);
    if (found) return found;
  }
  return undefined;
}

function isClaims(node: ASTNode): boolean {
  return node.op === 'id' && node.args === 'claims';
}

function isAnyTyped(node: ASTNode): boolean {
  if ((node.op === '.' || node.op === '[]') && isClaims(node.args[0])) return true;
  if (node.op === 'rcall' && node.args[0] === 'orValue') {
    const target = node.args[1];
    return (target.op === '.?' || target.op === '[?]') && isClaims(target.args[0]);
  }
  if (node.op === '?:') return isAnyTyped(node.args[1]) && isAnyTyped(node.args[2]);
  return false;
}

function isNode(value: unknown): value is ASTNode {
  return typeof value === 'object' && value !== null && 'op' in value && 'args' in value;
}

function children(node: ASTNode): ASTNode[] {
  const found: ASTNode[] = [];
  const visit = (value: unknown): void => {
    if (isNode(value)) found.push(value);
    else if (Array.isArray(value)) value.forEach(visit);
  };
  if (node.op !== 'value' && node.op !== 'id') visit(node.args);
  return found;
}

/** The CEL type name of a result, for error messages. */
function typeName(value: unknown): string {
  if (value === null) return 'null_type';
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'number') return 'double';
  if (Array.isArray(value)) return 'list';
  if (value instanceof Map) return 'map';
  return typeof value === 'object' ? 'map' : typeof value;
}

/**
 * A string or a list of strings, as the API server's convertCELValueToStringList: "" and [] mean
 * nothing (undefined), empty strings in a list are dropped, null is nothing, anything else is an error.
 */
export function toStringList(value: unknown): string[] | undefined {
  if (value === null) return undefined;
  if (typeof value === 'string') return value === '' ? undefined : [value];
  if (Array.isArray(value)) {
    const out: string[] = [];
    for (const item of value) {
      if (typeof item !== 'string') throw new Error('expression must return a string or a list of strings');
      if (item !== '') out.push(item);
    }
    return out.length > 0 ? out : undefined;
  }
  throw new Error(`expression must return a string or a list of strings, not ${typeName(value)}`);
}

/** A string result, for username and uid expressions. */
export function toStringResult(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what} claim expression must return a string, not ${typeName(value)}`);
  return value;
}
