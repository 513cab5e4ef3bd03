/**
 * The YAML side of the config: parsing with positions, `${ENV}` substitution
 * and the mapping from a config path back to a line and column.
 */
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type Scalar,
  visit,
} from 'yaml';
import type { ConfigIssue } from './errors.ts';

export interface Source {
  readonly file: string;
  readonly text: string;
  readonly document: Document;
  readonly lines: LineCounter;
  /** Scalars whose value came from the environment, with the text they had in the file. */
  readonly fromEnv: Map<Scalar, string>;
}

export interface Position {
  readonly line: number;
  readonly column: number;
}

export function parseSource(text: string, file: string): { source: Source; issues: ConfigIssue[] } {
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const source: Source = { file, text, document, lines, fromEnv: new Map() };
  // Only the first error: later ones are mostly the parser losing its way after it.
  const [error] = document.errors;
  if (error !== undefined) {
    const message = `YAML syntax error: ${error.message}`;
    return {
      source,
      issues: [{ file, ...toPosition(source, error.pos[0]), path: '', message, fix: yamlFix(error.code) }],
    };
  }
  const issues: ConfigIssue[] = [];
  visit(document, {
    Alias(_key, alias) {
      if (alias.resolve(document) !== undefined) return;
      issues.push({
        file,
        ...toPosition(source, alias.range?.[0] ?? 0),
        path: '',
        message: `YAML alias *${alias.source} has no anchor`,
        fix: `define &${alias.source} on a value above this line, or write the value here`,
      });
    },
  });
  return { source, issues };
}

function yamlFix(code: string): string {
  switch (code) {
    case 'DUPLICATE_KEY':
      return 'keep one of the two keys and remove the other';
    case 'TAB_AS_INDENT':
      return 'indent with spaces instead of tabs';
    case 'MISSING_CHAR':
      return 'add what is missing here: a closing quote, a closing bracket, or the ":" after a key';
    case 'BAD_DQ_ESCAPE':
      return 'write a backslash as \\\\ inside double quotes, or use single quotes';
    case 'BAD_SCALAR_START':
    case 'BLOCK_AS_IMPLICIT_KEY':
      return 'quote the value ("...") if it contains ": " or starts with a special character';
    default:
      return 'check the indentation (spaces, lined up with the keys around it) and the ":" after each key';
  }
}

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const NUMBER = /^[-+]?\d+(\.\d+)?$/;

/**
 * Replaces `${NAME}` in every string value with the environment variable and
 * `$${` with a literal `${`. An unquoted value that becomes a number is read as
 * one, as YAML would have (`port: ${PORT}`).
 */
export function substituteEnv(source: Source, env: NodeJS.ProcessEnv): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  visit(source.document, {
    Scalar(key, node, ancestors) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('$')) return;
      const original = node.value;
      const path = pathOf(ancestors, node);
      let substituted = false;
      const value = original.replace(/\$\$\{|\$\{([^}]*)(\}?)/g, (match, name: string | undefined, close) => {
        if (match === '$${') return '${';
        substituted = true;
        const problem = !close ? 'unterminated' : VARIABLE_NAME.test(name ?? '') ? undefined : 'invalid';
        if (problem === undefined && env[name!] !== undefined) return env[name!]!;
        issues.push({
          ...positionIn(source, node, match),
          file: source.file,
          path: formatPath(path),
          ...(problem === undefined
            ? {
                message: `environment variable ${name} is not set`,
                fix:
                  path.at(-1) === 'password'
                    ? `export ${name}=... or use passwordFile`
                    : `export ${name}=...`,
              }
            : {
                message: `${problem} variable reference "${match}"`,
                // biome-ignore lint/suspicious/noTemplateCurlyInString: ${NAME} is the config syntax being explained
                fix: 'write ${NAME} with letters, digits and _ only; for a literal ${ write $${',
              }),
        });
        return '';
      });
      if (!substituted) {
        node.value = value;
        return;
      }
      source.fromEnv.set(node, original);
      node.value = node.type === 'PLAIN' && NUMBER.test(value) ? Number(value) : value;
    },
  });
  return issues;
}

function positionIn(source: Source, node: Scalar, match: string): Position {
  const start = node.range?.[0] ?? 0;
  const at = source.text.slice(start, node.range?.[1] ?? start).indexOf(match);
  return toPosition(source, start + Math.max(at, 0));
}

function pathOf(ancestors: readonly (Document | Node | Pair)[], node: unknown): (string | number)[] {
  const path: (string | number)[] = [];
  ancestors.forEach((ancestor, index) => {
    const child = ancestors[index + 1] ?? node;
    if (isPair(ancestor)) path.push(String(isScalar(ancestor.key) ? ancestor.key.value : ancestor.key));
    else if (isSeq(ancestor)) path.push(ancestor.items.indexOf(child as never));
  });
  return path;
}

/** `['targets', 0, 'tls', 'mode']` → `targets[0].tls.mode`. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((segment, index) => {
      if (typeof segment === 'number') return `[${segment}]`;
      const key = String(segment);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return `[${JSON.stringify(key)}]`;
      return index === 0 ? key : `.${key}`;
    })
    .join('');
}

function toPosition(source: Source, offset: number): Position {
  const { line, col } = source.lines.linePos(offset);
  return { line, column: col };
}

interface Located {
  /** The deepest node found along the path. */
  readonly node: Node | undefined;
  /** The key of the pair holding `node`, if it is a mapping value. */
  readonly key: Node | undefined;
  /** How many path segments were found. */
  readonly depth: number;
}

function locate(source: Source, path: readonly PropertyKey[]): Located {
  let node = (source.document.contents ?? undefined) as Node | undefined;
  let key: Node | undefined;
  let depth = 0;
  for (const segment of path) {
    if (isAlias(node)) node = (node.resolve(source.document) ?? undefined) as Node | undefined;
    let next: Node | undefined;
    let nextKey: Node | undefined;
    if (isMap(node)) {
      const pair = node.items.find(
        (item) => String(isScalar(item.key) ? item.key.value : item.key) === segment,
      );
      if (pair === undefined) break;
      nextKey = pair.key as Node;
      // `port:` with nothing after it has no value node: point at the key.
      next = (pair.value ?? pair.key) as Node;
    } else if (isSeq(node) && typeof segment === 'number') {
      next = (node.items[segment] ?? undefined) as Node | undefined;
      if (next === undefined) break;
    } else break;
    node = next;
    key = nextKey;
    depth++;
  }
  return { node, key, depth };
}

/** Where the value at `path` is written; for a missing key, where its mapping is. */
export function positionOf(
  source: Source,
  path: readonly PropertyKey[],
  at: 'value' | 'key' = 'value',
): Position {
  const { node, key } = locate(source, path);
  const target = at === 'key' && key !== undefined ? key : node;
  const offset = target?.range?.[0];
  return offset === undefined ? { line: 1, column: 1 } : toPosition(source, offset);
}

/** The node at exactly `path`, or undefined when some segment is not in the file. */
export function nodeAt(source: Source, path: readonly PropertyKey[]): Node | undefined {
  const { node, depth } = locate(source, path);
  return depth === path.length ? node : undefined;
}
