import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/index.ts';
import { NO_MASKING } from '../../src/masking/policy.ts';
import { selfSigned, tempDir, writeFiles, yaml } from './helpers.ts';

const options = { timeout: 10000 };

describe('loading a config', () => {
  it(
    'resolves a full file to exact values, reading certificates and password files next to it',
    options,
    async () => {
      const dir = await tempDir();
      const server = await selfSigned('warden.local');
      const ca = await selfSigned('db ca');
      await writeFiles(dir, {
        'certs/warden.crt': server.cert,
        'certs/warden.key': server.key,
        'certs/ca.pem': ca.cert,
        'secrets/reports': 'r3ports-secret\n',
        'warden.yaml': yaml`
        listen:
          host: 0.0.0.0
          port: 7000
          tls:
            cert: ./certs/warden.crt
            key: ./certs/warden.key
          requireTls: always
          maxMessageSize: 16MB
        http: { host: 0.0.0.0, port: 9100 }
        log: { level: warn, format: text }
        dataDir: ./data
        auth:
          method: password
          backoff: { baseMs: 100, maxMs: 2000, windowSeconds: 60 }
        identities:
          - name: alice
            kind: human
            groups: [analysts]
          - name: etl
            kind: service
        targets:
          - name: shop
            host: db.internal
            port: 5433
            database: shop_prod
            user: warden_app
            password: \${SHOP_DB_PASSWORD}
            tls:
              mode: verify-full
              ca: ./certs/ca.pem
              serverName: db.example.com
            labels: { env: prod, team: sales }
            access:
              identities: [etl]
              groups: [analysts]
              kinds: [agent]
            connectTimeoutMs: 2500
          - name: reports
            host: 127.0.0.1
            user: reader
            passwordFile: ./secrets/reports
      `,
      });
      const file = path.join(dir, 'warden.yaml');
      const config = await loadConfig(file, { SHOP_DB_PASSWORD: 'sh0p-secret' });
      assert.deepEqual(config, {
        file,
        listen: {
          host: '0.0.0.0',
          port: 7000,
          tls: { cert: Buffer.from(server.cert), key: Buffer.from(server.key) },
          requireTls: 'always',
          maxMessageSize: 16 * 1024 * 1024,
          workers: 1,
        },
        http: { enabled: true, host: '0.0.0.0', port: 9100 },
        log: { level: 'warn', format: 'text' },
        dataDir: path.join(dir, 'data'),
        auth: {
          method: 'password',
          cleartext: 'tls-or-loopback',
          backoff: { baseMs: 100, maxMs: 2000, windowMs: 60_000 },
        },
        identities: [
          { name: 'alice', kind: 'human', groups: ['analysts'] },
          { name: 'etl', kind: 'service', groups: [] },
        ],
        targets: [
          {
            name: 'shop',
            host: 'db.internal',
            port: 5433,
            database: 'shop_prod',
            user: 'warden_app',
            password: 'sh0p-secret',
            tls: { mode: 'verify-full', ca: Buffer.from(ca.cert), serverName: 'db.example.com' },
            labels: { env: 'prod', team: 'sales' },
            access: { identities: ['etl'], groups: ['analysts'], kinds: ['agent'] },
            connectTimeoutMs: 2500,
          },
          {
            name: 'reports',
            host: '127.0.0.1',
            port: 5432,
            database: 'reports',
            user: 'reader',
            password: 'r3ports-secret',
            tls: { mode: 'prefer', ca: undefined, serverName: undefined },
            labels: {},
            access: { identities: [], groups: [], kinds: [] },
            connectTimeoutMs: 5000,
          },
        ],
        policy: { defaults: {}, guardrails: {}, allowedFunctions: [], rules: [] },
        masking: NO_MASKING,
        audit: {
          enabled: true,
          store: { kind: 'sqlite', dataDir: path.join(dir, 'data') },
          chain: hostname(),
          redactLiterals: true,
          onStoreFailure: 'deny',
          queueLimit: 100_000,
          retentionDays: undefined,
          checkpoints: { everyMs: 60_000, keyFile: undefined },
        },
        approvals: {
          approvers: { groups: [], identities: [] },
          minApprovals: 1,
          timeoutMs: 300_000,
          keepAliveMs: 15_000,
          mode: 'hold',
          asyncWindowMs: 3_600_000,
          where: `warden approvals approve <id> --as <your identity> --reason "..." --config ${file}`,
          slack: undefined,
          webhook: undefined,
        },
        warnings: [
          `${file}:38:5 targets[1]: nobody may connect to target "reports" (access is empty); add access.identities, access.groups or access.kinds`,
        ],
      });
    },
  );

  it('fills every default in a minimal file', options, () => {
    const config = parseConfig(
      yaml`
        targets:
          - { name: shop, host: db, user: app, access: { kinds: [human] } }
      `,
      '/etc/warden/warden.yaml',
      {},
    );
    assert.deepEqual(config.listen, {
      host: '127.0.0.1',
      port: 6543,
      tls: undefined,
      requireTls: 'remote',
      maxMessageSize: 64 * 1024 * 1024,
      workers: 1,
    });
    assert.deepEqual(config.http, { enabled: true, host: '127.0.0.1', port: 6544 });
    assert.deepEqual(config.log, { level: 'info', format: 'json' });
    assert.equal(config.dataDir, '/etc/warden/.warden');
    assert.deepEqual(config.auth, {
      method: 'scram',
      cleartext: 'tls-or-loopback',
      backoff: { baseMs: 250, maxMs: 5000, windowMs: 300_000 },
    });
    assert.deepEqual(config.identities, []);
    assert.deepEqual(config.targets[0], {
      name: 'shop',
      host: 'db',
      port: 5432,
      database: 'shop',
      user: 'app',
      password: undefined,
      tls: { mode: 'prefer', ca: undefined, serverName: undefined },
      labels: {},
      access: { identities: [], groups: [], kinds: ['human'] },
      connectTimeoutMs: 5000,
    });
    assert.deepEqual(config.warnings, []);
  });

  it('reads an empty file as all defaults, with no targets', options, () => {
    const config = parseConfig('', '/srv/warden.yaml', {});
    assert.equal(config.file, '/srv/warden.yaml');
    assert.equal(config.listen.port, 6543);
    assert.deepEqual(config.targets, []);
  });

  it('resolves a relative config path against the working directory', options, () => {
    const config = parseConfig('dataDir: state', 'conf/warden.yaml', {});
    assert.equal(config.file, path.resolve('conf/warden.yaml'));
    assert.equal(config.dataDir, path.resolve('conf/state'));
  });

  it('warns when requireTls is always but there is no listen.tls', options, () => {
    const config = parseConfig('listen:\n  requireTls: always\n', '/srv/warden.yaml', {});
    assert.equal(config.warnings.length, 1);
    assert.match(
      config.warnings[0]!,
      /^\/srv\/warden\.yaml:2:15 listen\.requireTls: .*every client will be refused/,
    );
  });

  it('makes a missing config file a ConfigError on line 0', options, async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'nope.yaml');
    const error = await loadConfig(file, {}).then(
      () => assert.fail('expected a ConfigError'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, 'WARDEN_ERR_CONFIG');
    assert.deepEqual(error.issues, [
      {
        file,
        line: 0,
        column: 0,
        path: '',
        message: 'cannot read the config file: no such file',
        fix: `create ${file}, or pass the path of an existing config file`,
      },
    ]);
  });
});

describe('maxMessageSize', () => {
  const sizeOf = (value: string) =>
    parseConfig(`listen:\n  maxMessageSize: ${value}\n`, '/srv/warden.yaml', {}).listen.maxMessageSize;

  for (const [written, bytes] of [
    ['1024', 1024],
    ['1kB', 1024],
    ['1KB', 1024],
    ['2048B', 2048],
    ['64MB', 64 * 1024 ** 2],
    ['1.5MB', 1.5 * 1024 ** 2],
    ['"8 MB"', 8 * 1024 ** 2],
    ['1GB', 1024 ** 3],
  ] as const) {
    it(`reads ${written} as ${bytes} bytes`, options, () => {
      assert.equal(sizeOf(written), bytes);
    });
  }

  for (const written of ['512B', '1000', '2GB', '64XB', 'lots', '-1kB', '1.5']) {
    it(`refuses ${written} with the allowed units in the message`, options, () => {
      assert.throws(
        () => sizeOf(written),
        (error: ConfigError) => {
          assert.equal(error.issues.length, 1);
          const issue = error.issues[0]!;
          assert.equal(issue.line, 2);
          assert.equal(issue.column, 19);
          assert.equal(issue.path, 'listen.maxMessageSize');
          assert.match(
            issue.message,
            /^expected a size from 1kB to 2GB: .*B, kB, MB or GB \(1024-based\), got /,
          );
          assert.equal(issue.fix, 'write a size such as 64MB or 1048576');
          return true;
        },
      );
    });
  }
});

describe('files named by the config', () => {
  it('trims the trailing newline of a passwordFile, and only that', options, async () => {
    const dir = await tempDir();
    await writeFiles(dir, {
      'pw-unix': 'one two \n',
      'pw-windows': 'three\r\n',
      'pw-bare': 'four',
      'warden.yaml': yaml`
        targets:
          - { name: a, host: h, user: u, passwordFile: pw-unix, access: { kinds: [human] } }
          - { name: b, host: h, user: u, passwordFile: ./pw-windows, access: { kinds: [human] } }
          - { name: c, host: h, user: u, passwordFile: ${path.join(dir, 'pw-bare')}, access: { kinds: [human] } }
      `,
    });
    const config = await loadConfig(path.join(dir, 'warden.yaml'), {});
    assert.deepEqual(
      config.targets.map((target) => target.password),
      ['one two ', 'three', 'four'],
    );
  });

  it('reports a missing passwordFile with its line and both paths', options, async () => {
    const dir = await tempDir();
    await writeFiles(dir, {
      'warden.yaml': yaml`
        targets:
          - name: shop
            host: db
            user: app
            passwordFile: ./secrets/shop
      `,
    });
    const error = await loadConfig(path.join(dir, 'warden.yaml'), {}).catch((caught: unknown) => caught);
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.issues, [
      {
        file: path.join(dir, 'warden.yaml'),
        line: 5,
        column: 19,
        path: 'targets[0].passwordFile',
        message: `cannot read password file ./secrets/shop (${path.join(dir, 'secrets/shop')}): no such file`,
        fix: `create the file, or write the path of an existing password file (relative to ${dir})`,
      },
    ]);
  });

  it('reads files the same way through parseConfig (synchronously)', options, async () => {
    const dir = await tempDir();
    const pem = await selfSigned();
    await writeFiles(dir, { 'tls/c.pem': pem.cert, 'tls/k.pem': pem.key });
    const config = parseConfig(
      'listen:\n  tls: { cert: tls/c.pem, key: tls/k.pem }\n',
      path.join(dir, 'w.yaml'),
      {},
    );
    assert.equal(config.listen.tls?.cert.toString(), pem.cert);
    assert.equal(config.listen.tls?.key.toString(), pem.key);
  });

  it('names the path of a missing listen.tls file, on its line', options, async () => {
    const dir = await tempDir();
    const pem = await selfSigned();
    await writeFiles(dir, {
      'certs/warden.key': pem.key,
      'warden.yaml': yaml`
        listen:
          port: 6543
          tls:
            cert: ./certs/warden.crt
            key: ./certs/warden.key
      `,
    });
    const error = await loadConfig(path.join(dir, 'warden.yaml'), {}).catch((caught: unknown) => caught);
    assert.ok(error instanceof ConfigError);
    assert.equal(error.issues.length, 1);
    const issue = error.issues[0]!;
    assert.deepEqual([issue.line, issue.column, issue.path], [4, 11, 'listen.tls.cert']);
    assert.equal(
      issue.message,
      `cannot read certificate file ./certs/warden.crt (${path.join(dir, 'certs/warden.crt')}): no such file`,
    );
    assert.match(issue.fix, /^create the file, or write the path of an existing certificate file/);
  });

  it(
    'refuses a listen.tls file that is not PEM, and a key that does not match the certificate',
    options,
    async () => {
      const dir = await tempDir();
      const one = await selfSigned();
      const two = await selfSigned();
      await writeFiles(dir, {
        'garbage.crt': 'not a certificate\n',
        'one.crt': one.cert,
        'two.key': two.key,
        'bad.yaml': 'listen:\n  tls:\n    cert: garbage.crt\n    key: two.key\n',
        'mismatch.yaml': 'listen:\n  tls:\n    cert: one.crt\n    key: two.key\n',
      });
      const bad = await loadConfig(path.join(dir, 'bad.yaml'), {}).catch((caught: unknown) => caught);
      assert.ok(bad instanceof ConfigError);
      assert.deepEqual(
        bad.issues.map((issue) => [issue.line, issue.path, issue.message, issue.fix]),
        [
          [
            3,
            'listen.tls.cert',
            `garbage.crt (${path.join(dir, 'garbage.crt')}) is not a PEM certificate`,
            'point it at a PEM file that starts with -----BEGIN CERTIFICATE-----',
          ],
        ],
      );
      const mismatch = await loadConfig(path.join(dir, 'mismatch.yaml'), {}).catch(
        (caught: unknown) => caught,
      );
      assert.ok(mismatch instanceof ConfigError);
      assert.deepEqual(
        mismatch.issues.map((issue) => [issue.line, issue.path, issue.message]),
        [[4, 'listen.tls.key', 'the private key two.key does not belong to the certificate one.crt']],
      );
    },
  );

  it('reports a missing target tls.ca with its path', options, async () => {
    const dir = await tempDir();
    await writeFiles(dir, {
      'warden.yaml':
        'targets:\n  - name: shop\n    host: db\n    user: app\n    tls: { mode: verify-ca, ca: ca.pem }\n',
    });
    const error = await loadConfig(path.join(dir, 'warden.yaml'), {}).catch((caught: unknown) => caught);
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(
      error.issues.map((issue) => [issue.line, issue.column, issue.path]),
      [[5, 33, 'targets[0].tls.ca']],
    );
    assert.match(error.issues[0]!.message, /ca\.pem \(.*\/ca\.pem\): no such file$/);
  });
});
