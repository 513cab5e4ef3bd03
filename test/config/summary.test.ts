import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, parseConfig, redactedSummary } from '../../src/config/index.ts';
import { tempDir, writeFiles, yaml } from './helpers.ts';

const options = { timeout: 10000 };

describe('redactedSummary', () => {
  it(
    'shows listen address, identities and targets with host, port, db, user, labels and tls mode',
    options,
    () => {
      const config = parseConfig(
        yaml`
        listen: { host: 0.0.0.0, port: 7000, maxMessageSize: 8MB }
        identities:
          - { name: alice, kind: human, groups: [analysts, oncall] }
          - { name: etl, kind: service }
        targets:
          - name: shop
            host: db.internal
            port: 5433
            database: shop_prod
            user: warden_app
            password: \${SHOP_DB_PASSWORD}
            tls: { mode: require }
            labels: { env: prod }
            access: { identities: [etl], groups: [analysts] }
          - { name: scratch, host: 127.0.0.1, user: dev }
      `,
        '/srv/warden.yaml',
        { SHOP_DB_PASSWORD: 'sup3r-s3cret-value' },
      );
      assert.equal(
        redactedSummary(config),
        [
          'config: /srv/warden.yaml',
          'listen: 0.0.0.0:7000, tls off, requireTls remote, maxMessageSize 8MB, workers 1',
          'dataDir: /srv/.warden',
          'auth: scram, cleartext tls-or-loopback, backoff 250-5000 ms within 300 s',
          'identities (2):',
          '  alice (human) groups: analysts, oncall',
          '  etl (service)',
          'targets (2):',
          '  shop -> warden_app@db.internal:5433/shop_prod',
          '    tls require, password set, connectTimeout 5000 ms',
          '    labels: env=prod',
          '    access: identities etl; groups analysts',
          '  scratch -> dev@127.0.0.1:5432/scratch',
          '    tls prefer, password none, connectTimeout 5000 ms',
          '    labels: none',
          '    access: nobody',
          'warnings (1):',
          '  /srv/warden.yaml:15:5 targets[1]: nobody may connect to target "scratch" (access is empty); add access.identities, access.groups or access.kinds',
        ].join('\n'),
      );
    },
  );

  it(
    'never contains a password, from the environment or from a file, even where it doubles as another value',
    options,
    async () => {
      const dir = await tempDir();
      await writeFiles(dir, {
        'secrets/reports': 'file-password-123\n',
        'warden.yaml': yaml`
        targets:
          - { name: shop, host: db, user: app, password: "\${PW}", labels: { note: env-password-456 }, access: { kinds: [human] } }
          - { name: reports, host: db, user: file-password-123, passwordFile: secrets/reports, access: { kinds: [agent] } }
      `,
      });
      const config = await loadConfig(path.join(dir, 'warden.yaml'), { PW: 'env-password-456' });
      assert.equal(config.targets[0]!.password, 'env-password-456');
      assert.equal(config.targets[1]!.password, 'file-password-123');
      const summary = redactedSummary(config);
      assert.ok(!summary.includes('env-password-456'));
      assert.ok(!summary.includes('file-password-123'));
      assert.match(summary, /labels: note=\[redacted\]/);
      assert.match(summary, /reports -> \[redacted\]@db:5432\/reports/);
    },
  );
});
