/**
 * Which data is private and what each identity sees of it: the `masking`
 * section of warden.yaml, compiled. A column is private when the config
 * classifies it (target / schema.table / column → class) or, with
 * heuristics on, when its name says what it holds (email, phone, ssn...).
 * Each class has a strategy for everyone; `unmask` entries, first match
 * first, give an identity or group another strategy or the clear value.
 * `allowUses` lets a named identity use a private column where its value
 * could be inferred (WHERE, JOIN...), which is otherwise refused.
 */
import type { IdentityConfig, IdentityKind } from '../config/index.ts';
import { glob } from '../policy/rules.ts';
import type { MaskClass, Strategy } from './strategies.ts';

export type InferenceClause = 'where' | 'join' | 'groupBy' | 'having' | 'orderBy' | 'copyOut';

/** Whom an entry is for: every list given must match; an entry without any is for everyone. */
export interface Who {
  readonly identities?: readonly string[];
  readonly groups?: readonly string[];
  readonly identityKinds?: readonly IdentityKind[];
}

export interface MaskingConfig {
  /** Keys the hash and fake strategies; without it, a key kept in the data folder is used. */
  readonly key: string | undefined;
  readonly heuristics: boolean;
  readonly columns: readonly {
    readonly target?: string;
    readonly table: string;
    readonly column: string;
    readonly maskClass: MaskClass;
  }[];
  readonly strategies: Readonly<Partial<Record<MaskClass, Strategy>>>;
  readonly unmask: readonly {
    readonly who: Who;
    readonly classes: Readonly<Partial<Record<MaskClass | '*', Strategy | 'clear'>>>;
  }[];
  readonly allowUses: readonly {
    readonly who: Who;
    readonly table: string;
    readonly column: string;
    readonly clauses: readonly InferenceClause[];
  }[];
  /**
   * A statement whose result lineage cannot follow (it calls a function
   * that is not the server's own, which may read any table) while something
   * is masked for the identity: refused, or every computed column masked.
   */
  readonly unresolved: 'deny' | 'mask';
}

export const NO_MASKING: MaskingConfig = {
  key: undefined,
  heuristics: false,
  columns: [],
  strategies: {},
  unmask: [],
  allowUses: [],
  unresolved: 'deny',
};

/** What each class gets when the config does not say. */
export const DEFAULT_STRATEGIES: Readonly<Record<MaskClass, Strategy>> = {
  email: { kind: 'fake' },
  phone: { kind: 'partial', keep: 4 },
  card: { kind: 'partial', keep: 4 },
  national_id: { kind: 'redact' },
  name: { kind: 'fake' },
  address: { kind: 'redact' },
  secret: { kind: 'null' },
  free_text: { kind: 'detect' },
  ip: { kind: 'fake' },
  date_of_birth: { kind: 'redact' },
  other: { kind: 'redact' },
};

/** Column names that say what they hold (lower case, whole name). */
const NAME_HEURISTICS: readonly [RegExp, MaskClass][] = [
  [/^(e_?mail|email_address|.*_email)$/, 'email'],
  [/^(phone|phone_number|mobile|cell|telephone|.*_phone)$/, 'phone'],
  [/^(card_?number|credit_card|cc_number|pan|card_no)$/, 'card'],
  [/^(ssn|social_security_number|national_id|tax_id|passport_number)$/, 'national_id'],
  [/^(first_name|last_name|full_name|surname|given_name|family_name)$/, 'name'],
  [/^(address|street|street_address|address_line_?\d|postal_address|home_address)$/, 'address'],
  [/^(password|password_hash|secret|api_key|api_token|access_token|refresh_token|private_key)$/, 'secret'],
  [/^(ip|ip_address|client_ip|remote_addr)$/, 'ip'],
  [/^(dob|date_of_birth|birth_date|birthdate)$/, 'date_of_birth'],
];

export function masksAnything(config: MaskingConfig): boolean {
  return config.heuristics || config.columns.length > 0;
}

export function classByName(column: string): MaskClass | undefined {
  const name = column.toLowerCase();
  for (const [pattern, maskClass] of NAME_HEURISTICS) if (pattern.test(name)) return maskClass;
  return undefined;
}

export class MaskingPolicy {
  constructor(
    readonly config: MaskingConfig,
    /** The key of the hash and fake strategies. */
    readonly key: Buffer,
  ) {}

  /** Whether any column can be private at all (else masking costs nothing). */
  get active(): boolean {
    return masksAnything(this.config);
  }

  /** The class of a column of a known table; `schema` undefined when the table's schema is not known. */
  classOf(target: string, schema: string | undefined, table: string, column: string): MaskClass | undefined {
    for (const entry of this.config.columns) {
      if (entry.target !== undefined && entry.target !== target) continue;
      if (!tableMatches(entry.table, schema, table)) continue;
      if (glob(entry.column, column)) return entry.maskClass;
    }
    return this.config.heuristics ? classByName(column) : undefined;
  }

  /** What `identity` sees of a class: a strategy, or undefined for the clear value. */
  strategyFor(identity: IdentityConfig, maskClass: MaskClass): Strategy | undefined {
    for (const entry of this.config.unmask) {
      if (!isFor(entry.who, identity)) continue;
      const chosen = entry.classes[maskClass] ?? entry.classes['*'];
      if (chosen === undefined) continue;
      return chosen === 'clear' ? undefined : chosen;
    }
    return this.config.strategies[maskClass] ?? DEFAULT_STRATEGIES[maskClass];
  }

  /** A use of a private column where its value could be inferred, allowed by name for this identity. */
  mayUse(
    identity: IdentityConfig,
    tables: readonly { readonly schema: string | undefined; readonly name: string }[],
    column: string,
    clause: InferenceClause,
  ): boolean {
    return this.config.allowUses.some(
      (entry) =>
        entry.clauses.includes(clause) &&
        isFor(entry.who, identity) &&
        glob(entry.column, column) &&
        tables.some((table) => tableMatches(entry.table, table.schema, table.name)),
    );
  }
}

/** `schema.table` patterns name a schema; a pattern without a dot is any schema's table. */
function tableMatches(pattern: string, schema: string | undefined, table: string): boolean {
  const dot = pattern.indexOf('.');
  if (dot < 0) return glob(pattern, table);
  // A table whose schema is unknown may be in any schema: match on the name (fail closed).
  return (schema === undefined || glob(pattern.slice(0, dot), schema)) && glob(pattern.slice(dot + 1), table);
}

/** Every list given must match, as in a policy rule's match. */
function isFor(who: Who, identity: IdentityConfig): boolean {
  return (
    (who.identities?.includes(identity.name) ?? true) &&
    (who.groups?.some((group) => identity.groups.includes(group)) ?? true) &&
    (who.identityKinds?.includes(identity.kind) ?? true)
  );
}
