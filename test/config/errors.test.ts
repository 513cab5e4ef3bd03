import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, type ConfigIssue, formatConfigError, parseConfig } from '../../src/config/index.ts';
import { yaml } from './helpers.ts';

const options = { timeout: 10000 };
const FILE = '/etc/warden/warden.yaml';

function issuesOf(text: string, env: NodeJS.ProcessEnv = {}): readonly ConfigIssue[] {
  try {
    parseConfig(text, FILE, env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.code, 'WARDEN_ERR_CONFIG');
    return error.issues;
  }
  return assert.fail('expected the config to be refused');
}

/** The issues without the file name, which is the same for all. */
function problems(text: string, env: NodeJS.ProcessEnv = {}) {
  return issuesOf(text, env).map(({ file, ...rest }) => {
    assert.equal(file, FILE);
    return rest;
  });
}

describe('config errors', () => {
  it('reports a wrong value with what was expected, what was written, and what to write', options, () => {
    assert.deepEqual(
      problems(yaml`
        targets:
          - name: shop
            host: 127.0.0.1
            port: abc
            user: app
      `),
      [
        {
          line: 4,
          column: 11,
          path: 'targets[0].port',
          message: 'expected a port number (1-65535), got "abc"',
          fix: 'write a number such as 5432',
        },
      ],
    );
  });

  it('formats one block per issue with file, line, column, path and fix', options, () => {
    const text = 'listen:\n  port: -1\nidentities:\n  - { name: alice, kind: robot }\n';
    try {
      parseConfig(text, 'warden.yaml', {});
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      const expected = [
        'warden.yaml:2:9 listen.port: expected a port number (0-65535, 0 = any free port), got -1',
        '  fix: write a number such as 6543',
        'warden.yaml:4:26 identities[0].kind: expected one of human, service, agent, got "robot"',
        '  fix: write one of: human, service, agent',
      ].join('\n');
      assert.equal(formatConfigError(error), expected);
      assert.equal(error.message, expected);
    }
  });

  it('reports a missing required key at the mapping that lacks it, suggesting a value', options, () => {
    assert.deepEqual(
      problems(yaml`
        identities:
          - name: etl
        targets:
          - name: shop
            host: db
      `),
      [
        {
          line: 2,
          column: 5,
          path: 'identities[0].kind',
          message: 'missing "kind": expected one of human, service, agent',
          fix: 'add kind: human',
        },
        {
          line: 4,
          column: 5,
          path: 'targets[0].user',
          message: 'missing "user": expected the upstream role name',
          fix: 'add user: warden_app',
        },
      ],
    );
  });

  it('refuses an unknown key with "did you mean" when a known key is close', options, () => {
    assert.deepEqual(
      problems(yaml`
        listen:
          prot: 6543
          require_tls: never
        identites: []
        targets:
          - { name: shop, host: db, user: app, colour: red }
      `),
      [
        {
          line: 2,
          column: 3,
          path: 'listen.prot',
          message: 'unknown key "prot" (did you mean port?)',
          fix: 'rename prot to port',
        },
        {
          line: 3,
          column: 3,
          path: 'listen.require_tls',
          message: 'unknown key "require_tls" (did you mean requireTls?)',
          fix: 'rename require_tls to requireTls',
        },
        {
          line: 4,
          column: 1,
          path: 'identites',
          message: 'unknown key "identites" (did you mean identities?)',
          fix: 'rename identites to identities',
        },
        {
          line: 6,
          column: 40,
          path: 'targets[0].colour',
          message: 'unknown key "colour"',
          fix: 'remove colour; the keys allowed here are name, host, port, database, user, password, passwordFile, tls, labels, access, connectTimeoutMs',
        },
      ],
    );
  });

  it('refuses duplicate identity and target names at the second one', options, () => {
    assert.deepEqual(
      problems(yaml`
        identities:
          - { name: alice, kind: human }
          - { name: bob, kind: human }
          - { name: alice, kind: agent }
        targets:
          - { name: shop, host: a, user: u, access: { kinds: [human] } }
          - { name: shop, host: b, user: u, access: { kinds: [human] } }
      `),
      [
        {
          line: 4,
          column: 13,
          path: 'identities[2].name',
          message: 'duplicate identity name "alice" (identities[0] has it already)',
          fix: 'rename one of them: identity names must be unique',
        },
        {
          line: 7,
          column: 13,
          path: 'targets[1].name',
          message: 'duplicate target name "shop" (targets[0] has it already)',
          fix: 'rename one of them: target names must be unique',
        },
      ],
    );
  });

  it('refuses access.identities naming an identity that is not defined', options, () => {
    assert.deepEqual(
      problems(yaml`
        identities:
          - { name: alice, kind: human }
          - { name: etl, kind: service }
        targets:
          - name: shop
            host: db
            user: app
            access:
              identities: [etl, elt]
      `),
      [
        {
          line: 9,
          column: 25,
          path: 'targets[0].access.identities[1]',
          message: 'unknown identity "elt"',
          fix: 'write one of: alice, etl, or add elt to identities',
        },
      ],
    );
  });

  it('refuses password and passwordFile together, at passwordFile', options, () => {
    assert.deepEqual(
      problems(yaml`
        targets:
          - name: shop
            host: db
            user: app
            password: hunter22
            passwordFile: ./secrets/shop
            access: { kinds: [human] }
      `),
      [
        {
          line: 6,
          column: 19,
          path: 'targets[0].passwordFile',
          message: 'password and passwordFile are both set',
          fix: 'keep one of them: remove password or remove passwordFile',
        },
      ],
    );
  });

  for (const mode of ['verify-ca', 'verify-full']) {
    it(`refuses tls mode ${mode} without a ca, at the mode`, options, () => {
      assert.deepEqual(
        problems(yaml`
          targets:
            - name: shop
              host: db
              user: app
              tls:
                mode: ${mode}
                serverName: db.internal
        `),
        [
          {
            line: 6,
            column: 13,
            path: 'targets[0].tls.mode',
            message: `tls mode ${mode} needs tls.ca, the certificate that signed the server's certificate`,
            fix: 'add ca: ./certs/ca.pem under tls, or write mode: require',
          },
        ],
      );
    });
  }

  it('refuses a backoff whose maximum is below its base', options, () => {
    assert.deepEqual(problems('auth:\n  backoff: { baseMs: 1000, maxMs: 10 }\n'), [
      {
        line: 2,
        column: 35,
        path: 'auth.backoff.maxMs',
        message: 'maxMs (10) is smaller than baseMs (1000)',
        fix: 'write a maxMs of at least 1000, or lower baseMs',
      },
    ]);
  });

  it('reports a YAML syntax error at the position the parser gives', options, () => {
    assert.deepEqual(problems('listen:\n  port: 6543\n  host: a: b\n'), [
      {
        line: 3,
        column: 9,
        path: '',
        message: 'YAML syntax error: Nested mappings are not allowed in compact mappings',
        fix: 'quote the value ("...") if it contains ": " or starts with a special character',
      },
    ]);
    assert.deepEqual(problems('listen:\n  port: 1\n  port: 2\n'), [
      {
        line: 3,
        column: 3,
        path: '',
        message: 'YAML syntax error: Map keys must be unique',
        fix: 'keep one of the two keys and remove the other',
      },
    ]);
    assert.deepEqual(
      problems('targets:\n\t- name: shop\n').map((issue) => [issue.line, issue.column, issue.fix]),
      [[2, 1, 'indent with spaces instead of tabs']],
    );
  });

  it('reports an alias without its anchor', options, () => {
    assert.deepEqual(problems('listen:\n  host: *nope\n'), [
      {
        line: 2,
        column: 9,
        path: '',
        message: 'YAML alias *nope has no anchor',
        fix: 'define &nope on a value above this line, or write the value here',
      },
    ]);
  });

  it('refuses a file that is not a mapping', options, () => {
    assert.deepEqual(problems('- listen\n- targets\n'), [
      {
        line: 1,
        column: 1,
        path: '',
        message:
          'expected a mapping with the keys listen, http, log, dataDir, auth, identities, targets, policy, masking, audit, approvals, got a list',
        fix: 'write the keys indented on the lines below, such as listen:',
      },
    ]);
  });

  it('lists every problem at once, in file order', options, () => {
    const issues = problems(yaml`
      targets:
        - name: shop
          port: 0
          user: app
          labels: { env: prod, tier: 1 }
      listen:
        requireTls: sometimes
    `);
    assert.deepEqual(
      issues.map((issue) => [issue.line, issue.path]),
      [
        [2, 'targets[0].host'],
        [3, 'targets[0].port'],
        [5, 'targets[0].labels.tier'],
        [7, 'listen.requireTls'],
      ],
    );
    assert.equal(issues[2]!.fix, 'quote the value, such as env: "prod"');
  });

  it('gives every issue a fix', options, () => {
    const issues = problems(yaml`
      listen: { host: "", port: 99999, tls: { cert: "" }, maxMessageSize: true }
      dataDir: 7
      auth: { cleartext: always, backoff: { baseMs: 0, windowSeconds: 1.5 } }
      identities:
        - { name: "bad name", kind: human, groups: [""] }
        - nothing
      targets:
        - { name: "", host: x, user: "", database: "", connectTimeoutMs: -5, tls: { mode: verify, serverName: "" } }
        - { name: b, host: x, user: u, labels: [a], access: { identities: [1], kinds: [robot], groups: x } }
    `);
    assert.ok(issues.length >= 18, `expected many issues, got ${issues.length}`);
    for (const issue of issues) {
      assert.ok(issue.line > 0, `${issue.path} has a line`);
      assert.match(issue.fix, /^(write|add|quote|rename|remove|keep)\b/, `${issue.path}: ${issue.fix}`);
      assert.doesNotMatch(issue.message, /Invalid input/, `${issue.path} uses the schema's wording`);
    }
  });
});
