/**
 * The schema of warden.yaml: one zod schema is the source of the types, the
 * validation and — through `fieldDocs` — the wording of every error message
 * and its fix.
 */
import * as z from 'zod';
import { MASK_CLASSES, STRATEGY_KINDS } from '../masking/strategies.ts';

/** What a field holds and what to write when it holds something else. */
export interface FieldDoc {
  /** Completes "expected …": `a port number (1-65535)`. */
  readonly expected: string;
  /** Tells what to write instead: `write a number such as 5432`. */
  readonly fix: string;
  /** A value to suggest when the key is missing altogether. */
  readonly example?: string;
}

export const fieldDocs = z.registry<FieldDoc>();

function documented<T extends z.ZodType>(schema: T, doc: FieldDoc): T {
  fieldDocs.add(schema, doc);
  return schema;
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const list = values.join(', ');
  return documented(z.enum(values), {
    expected: `one of ${list}`,
    fix: `write one of: ${list}`,
    example: values[0],
  });
}

function mapping<T extends z.ZodRawShape>(shape: T, example: string) {
  const keys = Object.keys(shape).join(', ');
  return documented(z.strictObject(shape), {
    expected: `a mapping with the keys ${keys}`,
    fix: `write the keys indented on the lines below, such as ${example}`,
  });
}

function list<T extends z.ZodType>(element: T, what: string, example: string) {
  return documented(z.array(element), {
    expected: `a list of ${what}`,
    fix: `write a list such as [${example}]`,
    example: `[${example}]`,
  });
}

function positiveInteger(unit: string, example: number) {
  return documented(z.number().int().min(1).max(2_147_483_647), {
    expected: `a whole number of ${unit} (at least 1)`,
    fix: `write a number such as ${example}`,
    example: String(example),
  });
}

function filePath(example: string) {
  return documented(z.string().min(1), {
    expected: 'a file path (relative to the config file)',
    fix: `write a path such as ${example}`,
    example,
  });
}

const host = documented(z.string().min(1), {
  expected: 'a host name or IP address',
  fix: 'write a host such as 127.0.0.1 or db.internal',
  example: '127.0.0.1',
});

const upstreamPort = documented(z.number().int().min(1).max(65535), {
  expected: 'a port number (1-65535)',
  fix: 'write a number such as 5432',
  example: '5432',
});

const identityName = documented(z.string().regex(/^[A-Za-z0-9_.@-]+$/), {
  expected: 'an identity name made of letters, digits and _ . @ -',
  fix: 'write a name such as alice or etl@example.com',
  example: 'alice',
});

const groupName = documented(z.string().min(1), {
  expected: 'a group name',
  fix: 'write a group name such as analysts',
  example: 'analysts',
});

export const identityKindSchema = oneOf(['human', 'service', 'agent']);
export const tlsModeSchema = oneOf(['disable', 'prefer', 'require', 'verify-ca', 'verify-full']);

const KIB = 1024;
const SIZE_UNITS: Readonly<Record<string, number>> = { b: 1, kb: KIB, mb: KIB ** 2, gb: KIB ** 3 };
const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(B|kB|MB|GB)\s*$/i;
/** A PostgreSQL message length is a signed 32-bit integer: nothing larger can be framed. */
const MAX_MESSAGE_SIZE = 2 ** 31 - 1;

/** `64MB` → 67108864; units are 1024-based, as PostgreSQL's own memory settings are. */
export function parseSize(text: string): number {
  const match = SIZE_PATTERN.exec(text);
  if (match === null) return Number.NaN;
  return Math.floor(Number(match[1]) * (SIZE_UNITS[match[2]!.toLowerCase()] ?? Number.NaN));
}

const size = documented(
  z
    .union([z.number().int(), z.string().regex(SIZE_PATTERN)])
    .transform((value) => (typeof value === 'number' ? value : parseSize(value)))
    .pipe(z.number().min(KIB).max(MAX_MESSAGE_SIZE)),
  {
    expected:
      'a size from 1kB to 2GB: a number of bytes, or a number with a unit B, kB, MB or GB (1024-based)',
    fix: 'write a size such as 64MB or 1048576',
    example: '64MB',
  },
);

/** A port Warden listens on, 0 for any free one. */
function listenPort(byDefault: number) {
  return documented(z.number().int().min(0).max(65535), {
    expected: 'a port number (0-65535, 0 = any free port)',
    fix: `write a number such as ${byDefault}`,
    example: String(byDefault),
  }).default(byDefault);
}

const listenSchema = mapping(
  {
    host: host.default('127.0.0.1'),
    port: listenPort(6543),
    tls: mapping(
      { cert: filePath('./certs/warden.crt'), key: filePath('./certs/warden.key') },
      'cert: and key:',
    ).optional(),
    requireTls: oneOf(['always', 'remote', 'never']).default('remote'),
    maxMessageSize: size.default(64 * KIB ** 2),
    // Processes (node:cluster) sharing the port; cancel keys name the one that owns a session.
    workers: documented(z.number().int().min(1).max(64), {
      expected: 'a number of worker processes (1-64)',
      fix: 'write a number such as 2 (at most one per core helps)',
      example: '2',
    }).default(1),
  },
  'port: 6543',
);

// The HTTP listener: /metrics, /healthz, /readyz (later the API and dashboard).
const httpSchema = mapping(
  {
    enabled: documented(z.boolean(), {
      expected: 'true or false (false: no HTTP listener, so no metrics or health endpoints)',
      fix: 'write true or false',
    }).default(true),
    host: host.default('127.0.0.1'),
    port: listenPort(6544),
  },
  'port: 6544',
);

const logSchema = mapping(
  {
    level: oneOf(['info', 'debug', 'warn', 'error']).default('info'),
    // json: one JSON object per line (pino), for log collectors; text: one readable line, for a terminal.
    format: oneOf(['json', 'text']).default('json'),
  },
  'level: info',
);

const backoffSchema = mapping(
  {
    baseMs: positiveInteger('milliseconds', 250).default(250),
    maxMs: positiveInteger('milliseconds', 5000).default(5000),
    windowSeconds: positiveInteger('seconds', 300).default(300),
  },
  'baseMs: 250',
).superRefine((backoff, ctx) => {
  if (backoff.maxMs < backoff.baseMs) {
    ctx.addIssue({
      code: 'custom',
      path: ['maxMs'],
      message: `maxMs (${backoff.maxMs}) is smaller than baseMs (${backoff.baseMs})`,
      params: { fix: `write a maxMs of at least ${backoff.baseMs}, or lower baseMs` },
    });
  }
});

const authSchema = mapping(
  {
    // scram: SCRAM-SHA-256 (-PLUS on TLS); password: the secret in cleartext, for tokens (only where cleartext is allowed).
    method: oneOf(['scram', 'password']).default('scram'),
    cleartext: oneOf(['never', 'tls-or-loopback']).default('tls-or-loopback'),
    backoff: backoffSchema.prefault({}),
  },
  'cleartext: never',
);

const identitySchema = mapping(
  {
    name: identityName,
    kind: identityKindSchema,
    groups: list(groupName, 'group names', 'analysts').default([]),
    // A person's email: how an approval from Slack is matched to this identity.
    email: documented(z.string().regex(/^[^@\s]+@[^@\s]+$/), {
      expected: 'an email address',
      fix: 'write the address the person uses in Slack, such as alice@example.com',
    }).optional(),
  },
  'name: alice',
);

const targetTlsSchema = mapping(
  {
    mode: tlsModeSchema.default('prefer'),
    ca: filePath('./certs/ca.pem').optional(),
    serverName: host.optional(),
  },
  'mode: verify-full',
);

const accessSchema = mapping(
  {
    identities: list(identityName, 'identity names', 'alice').default([]),
    groups: list(groupName, 'group names', 'analysts').default([]),
    kinds: list(identityKindSchema, 'identity kinds', 'agent').default([]),
  },
  'groups: [analysts]',
);

/** Refinements run only when the fields they read parsed cleanly, so they never see half-valid values. */
function whenClean(blocked: (path: readonly PropertyKey[]) => boolean) {
  return {
    when: (payload: { issues: readonly { path?: readonly PropertyKey[] }[] }) =>
      !payload.issues.some((issue) => blocked(issue.path ?? [])),
  };
}

const targetSchema = mapping(
  {
    name: documented(z.string().min(1), {
      expected: 'a database name for clients to connect to',
      fix: 'write a name such as shop',
      example: 'shop',
    }),
    host,
    port: upstreamPort.default(5432),
    database: documented(z.string().min(1), {
      expected: 'the upstream database name',
      fix: 'write a database name such as shop',
      example: 'shop',
    }).optional(),
    user: documented(z.string().min(1), {
      expected: 'the upstream role name',
      fix: 'write a role name such as warden_app',
      example: 'warden_app',
    }),
    password: documented(z.string(), {
      expected: 'a password string',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: ${NAME} is the config syntax being explained
      fix: 'write password: ${NAME_OF_AN_ENVIRONMENT_VARIABLE}, or use passwordFile',
    }).optional(),
    passwordFile: filePath('./secrets/shop').optional(),
    tls: targetTlsSchema.prefault({}),
    labels: documented(
      z.record(
        z.string(),
        documented(z.string(), {
          expected: 'a string label value',
          fix: 'quote the value, such as env: "prod"',
        }),
      ),
      { expected: 'a mapping of label names to strings', fix: 'write labels such as { env: prod }' },
    ).default({}),
    access: accessSchema.prefault({}),
    connectTimeoutMs: positiveInteger('milliseconds', 5000).default(5000),
  },
  'name: shop',
).superRefine(
  (target, ctx) => {
    if (target.password !== undefined && target.passwordFile !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['passwordFile'],
        message: 'password and passwordFile are both set',
        params: { fix: 'keep one of them: remove password or remove passwordFile' },
      });
    }
    if (
      (target.tls.mode === 'verify-ca' || target.tls.mode === 'verify-full') &&
      target.tls.ca === undefined
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls', 'mode'],
        message: `tls mode ${target.tls.mode} needs tls.ca, the certificate that signed the server's certificate`,
        params: { fix: 'add ca: ./certs/ca.pem under tls, or write mode: require' },
      });
    }
  },
  whenClean((path) => path.length === 0 || ['password', 'passwordFile', 'tls'].includes(String(path[0]))),
);

const ruleName = documented(z.string().regex(/^[A-Za-z0-9_.:-]+$/), {
  expected: 'a rule name made of letters, digits and _ . : -',
  fix: 'write a name such as agents-read-analytics',
  example: 'agents-read-analytics',
});

const pattern = (example: string) =>
  documented(z.string().min(1), {
    expected: 'a glob pattern (* matches any run of characters, ? one)',
    fix: `write a pattern such as ${example}`,
    example,
  });

const regex = documented(
  z.string().refine(
    (source) => {
      try {
        new RegExp(source, 'i');
        return true;
      } catch {
        return false;
      }
    },
    { message: 'not a valid regular expression' },
  ),
  {
    expected: 'a regular expression (JavaScript syntax, case-insensitive)',
    fix: String.raw`write a pattern such as '\bpg_sleep\b', and escape ( [ { . with a backslash`,
  },
);

const clock = documented(z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/), {
  expected: 'a time of day in UTC as HH:MM',
  fix: 'write a time such as "09:00" (quoted)',
  example: '"09:00"',
});

export const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export const statementKindSchema = oneOf([
  'read',
  'write',
  'ddl',
  'dcl',
  'transaction',
  'utility',
  'copy',
  'call',
]);
export const actionSchema = oneOf(['allow', 'deny', 'review', 'mask', 'limit']);
export const GUARDRAIL_NAMES = [
  'write-without-where',
  'destructive-ddl',
  'role-management',
  'copy-program-or-server-file',
  'dangerous-functions',
  'opaque-functions',
  'alter-system',
  'set-role',
] as const;

const labelValue = documented(z.string(), {
  expected: 'a string value',
  fix: 'quote the value, such as env: "prod"',
});

const matchSchema = mapping(
  {
    identities: list(identityName, 'identity names', 'alice').optional(),
    groups: list(groupName, 'group names', 'analysts').optional(),
    identityKinds: list(identityKindSchema, 'identity kinds', 'agent').optional(),
    targets: list(
      documented(z.string().min(1), {
        expected: 'a target name',
        fix: 'write a target name such as shop',
        example: 'shop',
      }),
      'target names',
      'shop',
    ).optional(),
    labels: documented(z.record(z.string(), labelValue), {
      expected: 'a mapping of target label names to values',
      fix: 'write labels such as { env: prod }',
    }).optional(),
    statementKinds: list(statementKindSchema, 'statement kinds', 'read, write').optional(),
    tables: list(pattern('public.customers'), 'table patterns', "'public.*', orders").optional(),
    access: oneOf(['read', 'write']).optional(),
    columns: list(pattern('email'), 'column patterns', 'email, ssn').optional(),
    functions: list(pattern('pg_sleep'), 'function name patterns', 'pg_sleep').optional(),
    hasWhere: documented(z.boolean(), { expected: 'true or false', fix: 'write true or false' }).optional(),
    sql: regex.optional(),
    applicationNames: list(pattern('psql'), 'application_name patterns', "'metabase*'").optional(),
    tags: documented(z.record(z.string(), labelValue), {
      expected: 'a mapping of sqlcommenter tag names to values',
      fix: 'write tags such as { pipeline: nightly_etl }',
    }).optional(),
    // Approved just-in-time grants (warden grant request --role R): the rule applies while one is held.
    grants: list(
      documented(z.string().regex(/^[A-Za-z0-9_.:-]+$/), {
        expected: 'a grant role name of letters, digits and _ . : -',
        fix: 'write a role name such as prod-write',
      }),
      'grant roles',
      'prod-write',
    ).optional(),
    time: mapping(
      {
        days: list(oneOf(DAY_NAMES), 'days', 'mon, tue, wed, thu, fri').optional(),
        from: clock.optional(),
        to: clock.optional(),
      },
      'days: [mon, tue], from: "09:00", to: "17:00"',
    ).optional(),
  },
  'identityKinds: [agent]',
);

const ruleSchema = mapping(
  {
    name: ruleName,
    match: matchSchema.prefault({}),
    action: actionSchema,
    message: documented(z.string().min(1), {
      expected: 'the message a refused client sees',
      fix: 'write a sentence such as "agents may only read analytics"',
    }).optional(),
    maxRows: positiveInteger('rows', 1000).optional(),
    statementTimeoutMs: positiveInteger('milliseconds', 30000).optional(),
  },
  'name: agents-read-analytics',
).superRefine(
  (rule, ctx) => {
    if (rule.action !== 'limit' && (rule.maxRows !== undefined || rule.statementTimeoutMs !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [rule.maxRows !== undefined ? 'maxRows' : 'statementTimeoutMs'],
        message: `maxRows and statementTimeoutMs only apply to action limit (this rule's action is ${rule.action})`,
        params: { fix: 'write action: limit, or remove the setting' },
      });
    }
    if (rule.action === 'limit' && rule.maxRows === undefined && rule.statementTimeoutMs === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['action'],
        message: 'a limit rule needs maxRows or statementTimeoutMs',
        params: { fix: 'add maxRows: 1000 or statementTimeoutMs: 30000 under the rule' },
      });
    }
    const time = rule.match.time;
    if (time && (time.from === undefined) !== (time.to === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['match', 'time', time.from === undefined ? 'from' : 'to'],
        message: 'a time window needs both from and to',
        params: { fix: 'write both, such as from: "09:00" and to: "17:00"' },
      });
    }
  },
  whenClean(
    (path) =>
      path.length === 0 || ['action', 'maxRows', 'statementTimeoutMs', 'match'].includes(String(path[0])),
  ),
);

const policySchema = mapping(
  {
    defaults: mapping(
      {
        human: oneOf(['allow', 'deny']).optional(),
        service: oneOf(['allow', 'deny']).optional(),
        agent: oneOf(['allow', 'deny']).optional(),
      },
      'agent: deny',
    ).prefault({}),
    guardrails: mapping(
      Object.fromEntries(
        GUARDRAIL_NAMES.map((name) => [name, oneOf(['deny', 'review', 'allow']).optional()]),
      ) as Record<
        (typeof GUARDRAIL_NAMES)[number],
        z.ZodOptional<z.ZodEnum<{ deny: 'deny'; review: 'review'; allow: 'allow' }>>
      >,
      'destructive-ddl: review',
    ).prefault({}),
    allowedFunctions: list(pattern('my_schema.safe_*'), 'function name patterns', "'reporting.*'").default(
      [],
    ),
    rules: list(
      ruleSchema,
      'rules',
      '{ name: agents-read, match: { identityKinds: [agent] }, action: allow }',
    )
      .superRefine(
        uniqueNames('rule', 'rules'),
        whenClean((path) => path.length < 2 || path[1] === 'name'),
      )
      .default([]),
  },
  'rules:',
);

const maskClass = oneOf(MASK_CLASSES);
const strategyName = oneOf(STRATEGY_KINDS);

const STRATEGY_DOC = {
  expected: `a strategy (${STRATEGY_KINDS.join(', ')}), or a mapping such as { strategy: partial, keep: 4 }`,
  fix: 'write a strategy such as fake, or { strategy: partial, keep: 4 }',
  example: 'redact',
};

/** A strategy by name (`fake`), or with its settings (`{ strategy: partial, keep: 4 }`). */
const strategySchema = documented(
  z.union([
    strategyName,
    mapping(
      {
        strategy: strategyName,
        keep: positiveInteger('characters', 4).optional(),
        text: documented(z.string(), {
          expected: 'the text that replaces each value',
          fix: 'write a text such as "***"',
        }).optional(),
      },
      'strategy: partial, keep: 4',
    ),
  ]),
  STRATEGY_DOC,
);

/** YAML reads a bare `null` as no value: in these places it names the null strategy. */
const nullNamesStrategy = (value: unknown) => (value === null ? 'null' : value);

const classStrategy = documented(z.preprocess(nullNamesStrategy, strategySchema), STRATEGY_DOC);

const unmaskStrategy = documented(
  z.preprocess(nullNamesStrategy, z.union([z.literal('clear'), strategySchema])),
  {
    expected: 'clear (the value as stored), a strategy, or a mapping such as { strategy: partial, keep: 4 }',
    fix: 'write clear, or a strategy such as partial',
    example: 'clear',
  },
);

const whoSchema = {
  identities: list(identityName, 'identity names', 'alice').optional(),
  groups: list(groupName, 'group names', 'support').optional(),
  identityKinds: list(identityKindSchema, 'identity kinds', 'agent').optional(),
};

export const INFERENCE_CLAUSES = ['where', 'join', 'groupBy', 'having', 'orderBy', 'copyOut'] as const;

const maskingSchema = mapping(
  {
    key: documented(z.string().min(16), {
      expected: 'a secret of at least 16 characters (keys the hash and fake strategies)',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's own ${ENV} syntax
      fix: 'write key: ${WARDEN_MASKING_KEY} and set that variable to a long random string',
    }).optional(),
    heuristics: documented(z.boolean(), {
      expected: 'true or false (classify columns by their names: email, phone, ssn, ...)',
      fix: 'write true or false',
    }).default(true),
    columns: list(
      mapping(
        {
          target: documented(z.string().min(1), {
            expected: 'a target name',
            fix: 'write a target name such as shop',
          }).optional(),
          table: pattern('public.customers'),
          column: pattern('email'),
          class: maskClass,
        },
        '{ table: public.customers, column: email, class: email }',
      ),
      'classified columns',
      '{ table: public.customers, column: email, class: email }',
    ).default([]),
    strategies: mapping(
      Object.fromEntries(MASK_CLASSES.map((name) => [name, classStrategy.optional()])) as Record<
        (typeof MASK_CLASSES)[number],
        z.ZodOptional<typeof classStrategy>
      >,
      'email: fake',
    ).prefault({}),
    unmask: list(
      mapping(
        {
          ...whoSchema,
          classes: documented(z.partialRecord(z.union([maskClass, z.literal('*')]), unmaskStrategy), {
            expected: 'a mapping of class names (or *) to clear or a strategy',
            fix: 'write classes such as { card: { strategy: partial, keep: 4 }, email: clear }',
          }),
        },
        '{ groups: [support], classes: { email: clear } }',
      ),
      'unmask entries',
      '{ groups: [support], classes: { email: clear } }',
    ).default([]),
    allowUses: list(
      mapping(
        {
          ...whoSchema,
          table: pattern('public.customers'),
          column: pattern('email'),
          clauses: list(oneOf(INFERENCE_CLAUSES), 'clauses', 'where, join'),
        },
        '{ identities: [fraud_bot], table: public.customers, column: email, clauses: [where] }',
      ),
      'allowed uses',
      '{ identities: [fraud_bot], table: public.customers, column: email, clauses: [where] }',
    ).default([]),
    unresolved: oneOf(['deny', 'mask']).default('deny'),
  },
  'columns:',
);

const auditSchema = mapping(
  {
    enabled: documented(z.boolean(), {
      expected: 'true or false (false: no audit trail at all, for development only)',
      fix: 'write true or false',
    }).default(true),
    store: oneOf(['sqlite', 'postgres']).default('sqlite'),
    url: documented(z.string().regex(/^postgres(ql)?:\/\//), {
      expected: 'a PostgreSQL connection URL (postgres://user:password@host:5432/database)',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's own ${ENV} syntax
      fix: 'write url: ${WARDEN_AUDIT_URL} and set that variable to postgres://user:password@host/db',
    }).optional(),
    chain: documented(z.string().regex(/^[\w.:@-]{1,100}$/), {
      expected: 'a chain name of letters, digits and . : @ - _ (at most 100)',
      fix: 'write a name unique to this Warden instance, such as warden-eu-1',
    }).optional(),
    redactLiterals: documented(z.boolean(), {
      expected: 'true or false (store statement texts with their literal values replaced by ?)',
      fix: 'write true or false',
    }).default(true),
    onStoreFailure: oneOf(['deny', 'spool']).default('deny'),
    queueLimit: positiveInteger('events', 100_000).default(100_000),
    retentionDays: positiveInteger('days', 365).optional(),
    checkpoints: mapping(
      {
        enabled: documented(z.boolean(), {
          expected: 'true or false (sign the chain head now and then, so cut-off or rewritten events show)',
          fix: 'write true or false',
        }).default(true),
        everySeconds: positiveInteger('seconds', 60).default(60),
        keyFile: filePath('./audit-signing.pem').optional(),
      },
      'everySeconds: 60',
    ).prefault({}),
  },
  'store: sqlite',
).superRefine((audit, ctx) => {
  if (audit.store === 'postgres' && audit.url === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['store'],
      message: 'store: postgres needs a url',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's own ${ENV} syntax
      params: { fix: 'add url: ${WARDEN_AUDIT_URL} next to store: postgres' },
    });
  }
});

const secretText = (what: string) =>
  documented(z.string().min(8), {
    expected: `the ${what} (at least 8 characters)`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the config's own ${ENV} syntax
    fix: 'write it as ${AN_ENVIRONMENT_VARIABLE} and set that variable, rather than the value itself',
  });

const approvalsSchema = mapping(
  {
    approvers: mapping(
      {
        groups: list(groupName, 'approver groups', 'dba').default([]),
        identities: list(identityName, 'approver identities', 'carol').default([]),
      },
      'groups: [dba]',
    ).prefault({}),
    minApprovals: positiveInteger('approvals', 1).default(1),
    timeoutSeconds: positiveInteger('seconds', 300).default(300),
    keepAliveSeconds: positiveInteger('seconds', 15).default(15),
    mode: oneOf(['hold', 'async']).default('hold'),
    asyncWindowSeconds: positiveInteger('seconds', 3600).default(3600),
    where: documented(z.string().min(1), {
      expected: 'where people approve, as the held client is told (<id> is replaced by the request id)',
      fix: 'write a URL or a command, such as https://warden.example.com/approvals/<id>',
    }).optional(),
    slack: mapping(
      {
        token: secretText('Slack bot token'),
        channel: documented(z.string().min(1), {
          expected: 'the id of the Slack channel requests are posted in',
          fix: 'write the channel id, such as C0123456789',
        }),
        signingSecret: secretText('Slack signing secret'),
        // Slack's Web API base URL: another one for GovSlack (https://slack-gov.com/api/), or a local one in tests.
        apiUrl: documented(z.string().regex(/^https?:\/\/.+\/$/), {
          expected: "the base URL of Slack's Web API, ending in /",
          fix: 'write a URL such as https://slack-gov.com/api/ (or leave it out for https://slack.com/api/)',
        }).optional(),
      },
      'channel: C0123456789',
    ).optional(),
    webhook: mapping(
      {
        url: documented(z.string().regex(/^https?:\/\//), {
          expected: 'an http(s) URL that receives approval requests',
          fix: 'write a URL such as https://hooks.example.com/warden',
        }),
        secret: secretText('webhook signing secret'),
      },
      'url: https://hooks.example.com/warden',
    ).optional(),
  },
  'approvers: { groups: [dba] }',
);

function uniqueNames(what: string, plural: string) {
  return (items: readonly { readonly name: string }[], ctx: z.RefinementCtx) => {
    const seen = new Map<string, number>();
    items.forEach((item, index) => {
      const first = seen.get(item.name);
      if (first === undefined) {
        seen.set(item.name, index);
        return;
      }
      ctx.addIssue({
        code: 'custom',
        path: [index, 'name'],
        message: `duplicate ${what} name "${item.name}" (${plural}[${first}] has it already)`,
        params: { fix: `rename one of them: ${what} names must be unique` },
      });
    });
  };
}

const namesClean = whenClean((path) => path.length < 2 || path[1] === 'name');

export const configSchema = mapping(
  {
    listen: listenSchema.prefault({}),
    http: httpSchema.prefault({}),
    log: logSchema.prefault({}),
    dataDir: filePath('./warden-data').optional(),
    auth: authSchema.prefault({}),
    identities: list(identitySchema, 'identities', '{ name: alice, kind: human }')
      .superRefine(uniqueNames('identity', 'identities'), namesClean)
      .default([]),
    targets: list(targetSchema, 'targets', '{ name: shop, host: 127.0.0.1, user: warden_app }')
      .superRefine(uniqueNames('target', 'targets'), namesClean)
      .default([]),
    policy: policySchema.prefault({}),
    masking: maskingSchema.optional(),
    audit: auditSchema.prefault({}),
    approvals: approvalsSchema.prefault({}),
  },
  'listen:',
).superRefine(
  (config, ctx) => {
    const known = config.identities.map((identity) => identity.name);
    config.targets.forEach((target, targetIndex) => {
      target.access.identities.forEach((name, index) => {
        if (known.includes(name)) return;
        ctx.addIssue({
          code: 'custom',
          path: ['targets', targetIndex, 'access', 'identities', index],
          message: `unknown identity "${name}"`,
          params: {
            fix:
              known.length === 0
                ? `add { name: ${name}, kind: human } to identities`
                : `write one of: ${known.join(', ')}, or add ${name} to identities`,
          },
        });
      });
    });
  },
  // Reads identity names and every target's access list: skip while any of those is malformed.
  whenClean(
    (path) =>
      path.length === 0 ||
      (path[0] === 'identities' && (path.length <= 2 || path[2] === 'name')) ||
      (path[0] === 'targets' && (path.length <= 2 || path[2] === 'access')),
  ),
);

export type ParsedConfig = z.output<typeof configSchema>;

/**
 * The schema node at a config path and the documentation nearest to it: the
 * lookup behind every error message (`targets.0.port` → "a port number").
 */
export function schemaAt(path: readonly PropertyKey[]): {
  readonly schema: z.ZodType | undefined;
  readonly doc: FieldDoc | undefined;
} {
  let schema: z.ZodType | undefined = configSchema;
  for (const [depth, segment] of [...path, undefined].entries()) {
    let doc: FieldDoc | undefined;
    while (schema !== undefined) {
      doc ??= fieldDocs.get(schema);
      if (
        schema instanceof z.ZodDefault ||
        schema instanceof z.ZodPrefault ||
        schema instanceof z.ZodOptional
      ) {
        schema = schema.unwrap() as z.ZodType;
      } else break;
    }
    if (depth === path.length || schema === undefined) return { schema, doc };
    if (schema instanceof z.ZodObject) schema = schema.shape[String(segment)] as z.ZodType | undefined;
    else if (schema instanceof z.ZodArray) schema = schema.element as z.ZodType;
    else if (schema instanceof z.ZodRecord) schema = schema.valueType as z.ZodType;
    else schema = undefined;
  }
  return { schema: undefined, doc: undefined };
}
