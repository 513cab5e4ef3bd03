import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/index.ts';
import { configRefusal, yaml } from './helpers.ts';

const options = { timeout: 10000 };
const FILE = '/etc/warden/warden.yaml';
const TARGETS = `targets:
  - { name: shop, host: db, user: app, access: { kinds: [human] } }
`;

const refusal = (text: string, env: NodeJS.ProcessEnv = {}) => configRefusal(TARGETS + text, FILE, env);

describe('the audit section', () => {
  it(
    'records to the embedded store in dataDir by default, failing closed, literals redacted',
    options,
    () => {
      const { audit } = parseConfig(`${TARGETS}dataDir: /var/lib/warden\n`, FILE, {});
      assert.deepEqual(audit.store, { kind: 'sqlite', dataDir: '/var/lib/warden' });
      assert.equal(audit.enabled, true);
      assert.equal(audit.redactLiterals, true);
      assert.equal(audit.onStoreFailure, 'deny');
      assert.equal(audit.retentionDays, undefined);
    },
  );

  it('takes a PostgreSQL store from a URL in the environment', options, () => {
    const { audit } = parseConfig(
      TARGETS +
        yaml`
        audit:
          store: postgres
          url: \${AUDIT_URL}
          chain: eu-1
          onStoreFailure: spool
          retentionDays: 30
        `,
      FILE,
      { AUDIT_URL: 'postgres://warden:s3cr%40t@audit-db/warden' },
    );
    assert.deepEqual(audit.store, { kind: 'postgres', url: 'postgres://warden:s3cr%40t@audit-db/warden' });
    assert.equal(audit.chain, 'eu-1');
    assert.equal(audit.onStoreFailure, 'spool');
    assert.equal(audit.retentionDays, 30);
  });

  it('says store: postgres needs a url, with the line and a fix', options, () => {
    const error = refusal('audit:\n  store: postgres\n');
    assert.equal(error.issues.length, 1);
    assert.match(error.issues[0]!.message, /store: postgres needs a url/);
    assert.equal(error.issues[0]!.line, 4, 'the line of store: postgres');
    assert.match(error.issues[0]!.fix, /WARDEN_AUDIT_URL/);
  });

  it('never echoes the URL or its password when the URL is refused', options, () => {
    const error = refusal('audit:\n  store: postgres\n  url: mysql://warden:hunter2-secret@db/x\n');
    assert.match(error.issues[0]!.message, /PostgreSQL connection URL/);
    assert.ok(!error.message.includes('hunter2-secret'), error.message);
  });

  it('refuses an unknown failure mode with the choices', options, () => {
    const error = refusal('audit:\n  onStoreFailure: ignore\n');
    assert.match(error.issues[0]!.fix, /deny, spool/);
  });
});
