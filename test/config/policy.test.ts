import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, type ConfigIssue, parseConfig } from '../../src/config/index.ts';
import { yaml } from './helpers.ts';

const options = { timeout: 10000 };
const FILE = '/etc/warden/warden.yaml';
const TARGETS = `targets:
  - { name: shop, host: db, user: app, access: { kinds: [human] } }
`;

function issuesOf(text: string): readonly Omit<ConfigIssue, 'file'>[] {
  try {
    parseConfig(TARGETS + text, FILE, {});
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.issues.map(({ file: _file, ...rest }) => rest);
  }
  return assert.fail('expected the config to be refused');
}

describe('the policy section', () => {
  it('reads rules in file order, with day names as numbers', options, () => {
    const config = parseConfig(
      TARGETS +
        yaml`
        policy:
          defaults: { agent: deny, service: allow }
          guardrails: { destructive-ddl: review, set-role: allow }
          allowedFunctions: ['reporting.*']
          rules:
            - name: office-hours-writes
              match:
                identityKinds: [human]
                statementKinds: [write]
                time: { days: [mon, fri], from: "09:00", to: "17:00" }
              action: review
              message: writes need a second pair of eyes
            - name: cap-agents
              match: { identityKinds: [agent], tables: ['public.*'], tags: { pipeline: nightly } }
              action: limit
              maxRows: 500
      `,
      FILE,
      {},
    );
    assert.deepEqual(config.policy, {
      defaults: { agent: 'deny', service: 'allow' },
      guardrails: { 'destructive-ddl': 'review', 'set-role': 'allow' },
      allowedFunctions: ['reporting.*'],
      rules: [
        {
          name: 'office-hours-writes',
          match: {
            identityKinds: ['human'],
            statementKinds: ['write'],
            time: { days: [1, 5], from: '09:00', to: '17:00' },
          },
          action: 'review',
          message: 'writes need a second pair of eyes',
        },
        {
          name: 'cap-agents',
          match: { identityKinds: ['agent'], tables: ['public.*'], tags: { pipeline: 'nightly' } },
          action: 'limit',
          maxRows: 500,
        },
      ],
    });
  });

  it('names the line and a fix for an unknown action, guardrail, bad regex or clock', options, () => {
    const problems = issuesOf(yaml`
      policy:
        guardrails: { drop-everything: deny }
        rules:
          - name: a
            match: { sql: 'pg_sleep(' }
            action: allow
          - name: b
            match: { time: { from: "9am", to: "17:00" } }
            action: forbid
    `);
    assert.deepEqual(
      problems.map((p) => [p.line, p.path]),
      [
        [4, 'policy.guardrails["drop-everything"]'],
        [7, 'policy.rules[0].match.sql'],
        [10, 'policy.rules[1].match.time.from'],
        [11, 'policy.rules[1].action'],
      ],
    );
    assert.match(problems[1]!.fix, /escape/);
    assert.match(problems[3]!.message, /one of allow, deny, review, mask, limit/);
  });

  it('refuses duplicate rule names and limits without a limit', options, () => {
    const problems = issuesOf(yaml`
      policy:
        rules:
          - { name: same, action: allow }
          - { name: same, action: limit }
          - { name: other, action: deny, maxRows: 5 }
    `);
    assert.deepEqual(
      problems.map((p) => [p.line, p.path, p.message]),
      [
        [6, 'policy.rules[1].name', 'duplicate rule name "same" (rules[0] has it already)'],
        [6, 'policy.rules[1].action', 'a limit rule needs maxRows or statementTimeoutMs'],
        [
          7,
          'policy.rules[2].maxRows',
          "maxRows and statementTimeoutMs only apply to action limit (this rule's action is deny)",
        ],
      ],
    );
  });
});
