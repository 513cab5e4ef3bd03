import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/index.ts';
import { NO_MASKING } from '../../src/masking/policy.ts';
import { configRefusal, yaml } from './helpers.ts';

const options = { timeout: 10000 };
const FILE = '/etc/warden/warden.yaml';
const TARGETS = `targets:
  - { name: shop, host: db, user: app, access: { kinds: [human] } }
`;

const refusal = (text: string, env: NodeJS.ProcessEnv = {}) => configRefusal(TARGETS + text, FILE, env);

describe('the masking section', () => {
  it('masks nothing without one', options, () => {
    assert.deepEqual(parseConfig(TARGETS, FILE, {}).masking, NO_MASKING);
  });

  it('reads classes, strategies by name or with settings, unmask entries and allowed uses', options, () => {
    const config = parseConfig(
      TARGETS +
        yaml`
        masking:
          key: \${MASKING_KEY}
          columns:
            - { table: public.customers, column: email, class: email }
          strategies:
            email: hash
            card: { strategy: partial, keep: 6 }
            secret: null
          unmask:
            - groups: [support]
              classes: { card: partial, email: clear, "*": null }
          allowUses:
            - { identities: [fraud_bot], table: public.customers, column: email, clauses: [where, join] }
      `,
      FILE,
      { MASKING_KEY: 'a-long-enough-masking-key' },
    );
    assert.deepEqual(config.masking, {
      key: 'a-long-enough-masking-key',
      heuristics: true,
      columns: [{ table: 'public.customers', column: 'email', class: 'email', maskClass: 'email' }],
      strategies: { email: { kind: 'hash' }, card: { kind: 'partial', keep: 6 }, secret: { kind: 'null' } },
      unmask: [
        {
          who: { groups: ['support'] },
          classes: { card: { kind: 'partial', keep: 4 }, email: 'clear', '*': { kind: 'null' } },
        },
      ],
      allowUses: [
        {
          who: { identities: ['fraud_bot'] },
          table: 'public.customers',
          column: 'email',
          clauses: ['where', 'join'],
        },
      ],
      unresolved: 'deny',
    });
  });

  it('takes unresolved: mask, and names the line and the choices for anything else', options, () => {
    const masked = parseConfig(`${TARGETS}masking:\n  unresolved: mask\n`, FILE, {});
    assert.equal(masked.masking.unresolved, 'mask');
    const error = refusal(`masking:\n  unresolved: allow\n`);
    assert.match(
      error.message,
      /warden\.yaml:4:15 masking\.unresolved: expected one of deny, mask, got "allow"/,
    );
    assert.match(error.message, /fix: write one of: deny, mask/);
  });

  it('names the line and a fix for an unknown class or strategy, and never shows the key', options, () => {
    const error = refusal(
      yaml`
        masking:
          key: \${MASKING_KEY}
          columns:
            - { table: public.customers, column: email, class: e-mail }
          strategies:
            card: shuffle
      `,
      { MASKING_KEY: 'secret-masking-key-0001' },
    );
    const text = error.message;
    assert.match(text, /warden\.yaml:6:56 masking\.columns\[0\]\.class: expected one of email, phone/);
    assert.match(text, /warden\.yaml:8:11 masking\.strategies\.card: expected a strategy/);
    assert.ok(!text.includes('secret-masking-key-0001'), text);
  });
});
