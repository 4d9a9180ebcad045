// CEL as the API server's JWT authenticator uses it: `claims` (a map of the token's claims, JSON
// numbers as doubles) for claim mappings and claim validation rules, `user` (username, uid, groups,
// extra) for user validation rules. Every expression is parsed and type-checked once, at start, by
// @marcbachmann/cel-js; then every function, macro and operator in it must be one chaperone
// evaluates exactly as the API server does (cel-runtime.ts, proven against cel-go by
// test/hardening/cel-parity.test.ts), or the configuration is refused, naming the field and why.
import { Environment, type ASTNode, type ParseResult } from '@marcbachmann/cel-js';
import { CelList, claimsRoot, isSelection, negativeLiteral, MIN_INT, unsignedLiteral, constant, CostLimitExceeded, Err, evaluate as evaluateAst, isConstant, MAX_INT, MAX_UINT, Unmatched, userRoot, typeOf, type UserInput, type Val } from './runtime.js';

/** What an expression must evaluate to, as the API server checks at compile time. */
export type ReturnType = 'any' | 'bool';

export interface CompiledExpression {
  /** The expression as written in the configuration. */
  readonly expression: string;
  /** Evaluates with the variable bound (the claims object, or the user); throws on an evaluation error. */
  evaluate(value: unknown): unknown;
  readonly ast: ASTNode;
}

/** A compile error, worded for the configuration's author. */
export class CelCompileError extends Error {}

const LIMITS = { maxAstNodes: 10_000, maxDepth: 100, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 32 };

/** Declarations the type checker needs beyond cel-js's own; cel-runtime.ts evaluates them all. */
const notEvaluatedHere = () => {
  throw new Error('evaluated by cel-runtime.ts');
};

function baseEnvironment(): Environment {
  return new Environment({ enableOptionalTypes: true, homogeneousAggregateLiterals: true, limits: LIMITS })
    .registerFunction('string.charAt(int): string', notEvaluatedHere)
    .registerFunction('string.replace(string, string): string', notEvaluatedHere)
    .registerFunction('string.replace(string, string, int): string', notEvaluatedHere)
    .registerFunction('OptionalNamespace.ofNonZeroValue(A): optional<A>', notEvaluatedHere);
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
  const refused = unsupported(parsed.ast, variable, new Set([variable]));
  if (refused !== undefined) throw new CelCompileError(`${refused}; chaperone refuses what it cannot evaluate exactly as the API server does (docs/authentication.md, "CEL")`);
  const folded = constantError(parsed.ast);
  if (folded !== undefined) throw new CelCompileError(`program instantiation failed: ${folded}`);
  if (returns === 'bool' && checked.type !== 'bool') throw new CelCompileError(`must evaluate to bool, not ${checked.type}`);
  return {
    expression,
    ast: parsed.ast,
    evaluate: (value) => run(parsed.ast, variable, value),
  };
}

function run(ast: ASTNode, variable: Variable, value: unknown): unknown {
  const root = variable === 'claims' ? claimsRoot(value as Record<string, unknown>) : userRoot(value as UserInput);
  let outcome;
  try {
    outcome = evaluateAst(ast, variable, root);
  } catch (err) {
    if (err instanceof CostLimitExceeded) throw err;
    if (err instanceof Unmatched) throw new Error(`chaperone cannot evaluate this exactly as the API server would (${err.message}), so it refuses the token`, { cause: err });
    throw err;
  }
  if (outcome.value instanceof Err) throw new Error(outcome.value.message);
  return outcome.value;
}

// ---------------------------------------------------------------------------------------------
// What chaperone evaluates: the allowlist, each entry proven against cel-go by the parity test.

/** Global functions: name -> the numbers of arguments allowed. */
const GLOBAL_FUNCTIONS: Record<string, number[]> = {
  has: [1],
  size: [1],
  int: [1],
  uint: [1],
  double: [1],
  string: [1],
  bool: [1],
  dyn: [1],
  type: [1],
};

/** Receiver-style functions and macros: name -> the numbers of arguments allowed. */
const MEMBER_FUNCTIONS: Record<string, number[]> = {
  size: [0],
  contains: [1],
  startsWith: [1],
  endsWith: [1],
  // cel-go's strings extension, version 2 (as the API server configures it)
  charAt: [1],
  indexOf: [1, 2],
  lastIndexOf: [1, 2],
  lowerAscii: [0],
  upperAscii: [0],
  replace: [2, 3],
  split: [1, 2],
  substring: [1, 2],
  trim: [0],
  join: [0, 1],
  // optional values
  hasValue: [0],
  value: [0],
  orValue: [1],
  or: [1],
  // macros
  all: [2],
  exists: [2],
  exists_one: [2],
  map: [2, 3],
  filter: [2],
};

const OPTIONAL_FUNCTIONS: Record<string, number[]> = { of: [1], none: [0], ofNonZeroValue: [1] };

const MACROS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

/** Why some refused functions are refused, for the error message. */
const WHY: Record<string, string> = {
  matches:
    "the API server runs RE2 (Go's regexp), whose syntax and meaning differ from JavaScript's regular expressions (\\p{..}, [[:upper:]], (?i), what . and \\s match)",
  format: "the API server's string formatting (cel-go's, with Go's number formatting) is not reproduced",
  reverse: "the API server's strings library (version 2) has no reverse(); the API server refuses it",
  find: 'the API server runs RE2 (Go regexp)',
  findAll: 'the API server runs RE2 (Go regexp)',
};

const TYPE_NAMES = new Set(['bool', 'int', 'uint', 'double', 'string', 'list', 'map', 'null_type', 'type']);

function isOperandOf(parent: ASTNode, node: ASTNode): boolean {
  return isSelection(parent) && parent.args[0] === node;
}

/**
 * The first construct of the expression that chaperone does not evaluate, described; undefined
 * when everything is allowed. `scope` holds the names bound at this point (the variable, and the
 * variables of enclosing comprehensions).
 */
function unsupported(node: ASTNode, variable: string, scope: ReadonlySet<string>, parent?: ASTNode): string | undefined {
  const visit = (child: ASTNode, inner: ReadonlySet<string> = scope) => unsupported(child, variable, inner, node);
  switch (node.op) {
    case 'value': {
      const v = node.args;
      if (v instanceof Uint8Array) return 'bytes literals are not supported';
      const negated = parent !== undefined && negativeLiteral(parent) === node;
      if (typeof v === 'bigint' && v > (negated ? -MIN_INT : MAX_INT)) return `the integer literal ${v} is out of range`;
      const unsigned = unsignedLiteral(v);
      if (unsigned !== undefined && unsigned > MAX_UINT) return `the unsigned integer literal ${unsigned}u is out of range`;
      if (typeof v === 'string' && !v.isWellFormed()) return 'a string literal with an unpaired surrogate (\\ud800) is not supported';
      return undefined;
    }
    case 'id': {
      if (scope.has(node.args)) {
        // The variable itself (not a comprehension variable that shadows it) is read only by name.
        const isRoot = node.args === variable && !shadowed(node.args, variable, scope);
        if (isRoot && !(parent && isOperandOf(parent, node))) {
          return `${variable} is read only by name (${variable}.x, ${variable}['x'], ${variable}.?x, has(${variable}.x)): the API server's ${variable} is an object of its own, not a map ('x' in ${variable} fails there, and iterating it yields values, not names)`;
        }
        return undefined;
      }
      if (TYPE_NAMES.has(node.args)) return undefined;
      return `the identifier ${node.args} is not supported`;
    }
    case '.':
    case '.?':
      return visit(node.args[0]);
    case '[]':
    case '[?]':
      return visit(node.args[0]) ?? visit(node.args[1]);
    case 'call': {
      const [name, args] = node.args;
      const allowed = GLOBAL_FUNCTIONS[name];
      if (!allowed) return `the function ${name}() is not supported${WHY[name] ? `: ${WHY[name]}` : ''}`;
      if (!allowed.includes(args.length)) return `${name}() with ${args.length} arguments is not supported`;
      if (name === 'has') {
        const arg = args[0]!;
        if (arg.op !== '.') return 'has() takes a field selection';
        if (hasOptional(arg)) return 'has() over an optional selection (.? or [?]) is not supported';
        return visit(arg);
      }
      for (const arg of args) {
        const found = visit(arg);
        if (found) return found;
      }
      return undefined;
    }
    case 'rcall': {
      const [name, receiver, args] = node.args;
      if (receiver.op === 'id' && receiver.args === 'optional' && !scope.has('optional')) {
        const allowed = OPTIONAL_FUNCTIONS[name];
        if (!allowed || !allowed.includes(args.length)) return `optional.${name}() is not supported`;
        for (const arg of args) {
          const found = visit(arg);
          if (found) return found;
        }
        return undefined;
      }
      const allowed = MEMBER_FUNCTIONS[name];
      if (!allowed) return `the function ${name}() is not supported${WHY[name] ? `: ${WHY[name]}` : ''}`;
      if (!allowed.includes(args.length)) return `${name}() with ${args.length} arguments is not supported`;
      const found = visit(receiver);
      if (found) return found;
      if (MACROS.has(name)) {
        const iterVar = args[0]!;
        if (iterVar.op !== 'id') return `${name}() takes a variable name first`;
        const inner = new Set(scope);
        inner.add(iterVar.args);
        // Record that the variable's name is shadowed inside, if it is.
        if (iterVar.args === variable) inner.add(`${SHADOW}${variable}`);
        for (const arg of args.slice(1)) {
          const f = visit(arg, inner);
          if (f) return f;
        }
        return undefined;
      }
      for (const arg of args) {
        const f = visit(arg);
        if (f) return f;
      }
      return undefined;
    }
    case 'list':
      if (!homogeneous(node.args)) return HETEROGENEOUS;
      for (const element of node.args) {
        const found = visit(element);
        if (found) return found;
      }
      return undefined;
    case 'map':
      if (!node.args.every(([k]) => checkedType(k) === 'string')) return 'map literals with keys other than strings are not supported';
      if (!homogeneous(node.args.map(([, v]) => v))) return HETEROGENEOUS;
      for (const [k, v] of node.args) {
        const found = visit(k) ?? visit(v);
        if (found) return found;
      }
      return undefined;
    case '?:':
      return visit(node.args[0]) ?? visit(node.args[1]) ?? visit(node.args[2]);
    case '!_':
    case '-_': {
      // CEL's grammar repeats one unary operator (!!x, --x) but does not mix them unparenthesised;
      // cel-js reads !-x, which cel-go refuses.
      // And it drops a repeated one in pairs (!!x is x, of x's type), where cel-js negates twice.
      const operand = node.args;
      if ((operand.op === '!_' || operand.op === '-_') && !node.input.slice(node.start, operand.start).includes('(')) {
        if (operand.op !== node.op) return `${node.input.slice(node.start, operand.start + 1)} mixes unary operators, which the API server's parser refuses`;
        return `${node.input.slice(node.start, operand.start + 1)}: the API server's parser drops repeated unary operators in pairs; write !(!x) or x`;
      }
      return visit(operand);
    }
    default:
      return visit(node.args[0]) ?? visit(node.args[1]);
  }
}

function checkedType(node: ASTNode): string | undefined {
  return (node as ASTNode & { checkedType?: { name: string } }).checkedType?.name;
}

/**
 * The API server's checker requires the elements of a list literal (and the values of a map
 * literal) to be of one type, and tells a claim's type (any) from dyn where cel-js does not: with
 * two elements or more, chaperone takes only literals whose elements it knows to be of one type.
 */
function homogeneous(elements: readonly ASTNode[]): boolean {
  if (elements.length < 2) return true;
  const types = elements.map(checkedType);
  return types.every((t) => t !== undefined && !t.includes('dyn') && t === types[0]);
}

const HETEROGENEOUS = "a list or map literal whose elements are not all of one known type (the API server's type checker tells a claim's type from dyn, and refuses mixed literals): wrap the elements in string(), or build the list with +";

const SHADOW = '\u0000shadowed:';

function shadowed(name: string, variable: string, scope: ReadonlySet<string>): boolean {
  return name === variable && scope.has(`${SHADOW}${variable}`);
}

function hasOptional(node: ASTNode): boolean {
  for (let n: ASTNode = node; isSelection(n); n = n.args[0]) if (n.op === '.?' || n.op === '[?]') return true;
  return false;
}

/** A conversion of constants that fails: the API server's optimiser computes it ahead and fails the program. */
function constantError(node: ASTNode): string | undefined {
  if (node.op === 'call' && isConstant(node)) {
    try {
      const v = constant(node);
      return v instanceof Err ? v.message : undefined;
    } catch (err) {
      if (err instanceof Unmatched) return `chaperone cannot compute ${err.message}`;
      throw err;
    }
  }
  for (const child of children(node)) {
    const found = constantError(child);
    if (found) return found;
  }
  return undefined;
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

function typeName(value: unknown): string {
  if (Array.isArray(value)) return 'list';
  return typeOf(value as Val);
}

/**
 * A string or a list of strings, as the API server's convertCELValueToStringList: "" and [] mean
 * nothing (undefined), empty strings in a list are dropped, null is nothing, anything else is an
 * error. A list counts only when the Go value under it is []interface{} or []ref.Val: the list
 * split() returns is a []string, which the API server refuses ("expression must return a string or
 * a list of strings"), and so does chaperone.
 */
export function toStringList(value: unknown): string[] | undefined {
  if (value === null) return undefined;
  if (typeof value === 'string') return value === '' ? undefined : [value];
  const items = Array.isArray(value) ? (value as unknown[]) : value instanceof CelList && value.native !== 'strings' ? value.items : undefined;
  if (items) {
    const out: string[] = [];
    for (const item of items) {
      if (typeof item !== 'string') throw new Error('expression must return a string or a list of strings');
      if (item !== '') out.push(item);
    }
    return out.length > 0 ? out : undefined;
  }
  if (value instanceof CelList) throw new Error('expression must return a string or a list of strings (the API server does not take the list split() makes as one)');
  throw new Error(`expression must return a string or a list of strings, not ${typeName(value)}`);
}

/** A string result, for username and uid expressions. */
export function toStringResult(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new Error(`${what} claim expression must return a string, not ${typeName(value)}`);
  return value;
}
