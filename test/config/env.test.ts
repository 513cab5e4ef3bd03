// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${NAME} in plain strings is the config syntax under test
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/index.ts';
import { yaml } from './helpers.ts';

const options = { timeout: 10000 };
const FILE = '/etc/warden/warden.yaml';

function target(lines: string): string {
  return `targets:\n  - name: shop\n    user: app\n    access: { kinds: [human] }\n${lines}`;
}

describe('${ENV} substitution', () => {
  it('replaces ${NAME} anywhere in a string value', options, () => {
    const config = parseConfig(
      target('    host: ${DB_HOST}\n    password: "${PW_A}-${PW_B}"\n    labels: { env: "${STAGE}ish" }\n'),
      FILE,
      { DB_HOST: 'db.internal', PW_A: 'one', PW_B: 'two', STAGE: 'prod' },
    );
    const shop = config.targets[0]!;
    assert.equal(shop.host, 'db.internal');
    assert.equal(shop.password, 'one-two');
    assert.deepEqual(shop.labels, { env: 'prodish' });
  });

  it('reads an unquoted ${NAME} that holds a number as a number, a quoted one as a string', options, () => {
    const env = { PORT: '5433' };
    assert.equal(parseConfig(target('    host: db\n    port: ${PORT}\n'), FILE, env).targets[0]!.port, 5433);
    assert.throws(() => parseConfig(target('    host: db\n    port: "${PORT}"\n'), FILE, env), ConfigError);
  });

  it('keeps $${ as a literal ${', options, () => {
    const config = parseConfig(target('    host: db\n    password: "a$${HOME}b$$c"\n'), FILE, {
      HOME: '/root',
    });
    assert.equal(config.targets[0]!.password, 'a${HOME}b$$c');
  });

  it('substitutes an empty variable as the empty string', options, () => {
    const config = parseConfig(target('    host: db\n    password: ${EMPTY}\n'), FILE, { EMPTY: '' });
    assert.equal(config.targets[0]!.password, '');
  });

  it('does not substitute in keys', options, () => {
    const config = parseConfig(target('    host: db\n    labels:\n      ${KEY}: x\n'), FILE, { KEY: 'k' });
    assert.deepEqual(config.targets[0]!.labels, { '${KEY}': 'x' });
  });

  it('refuses an unset variable, naming it, with file, line and column of the reference', options, () => {
    const text = yaml`
      targets:
        - name: shop
          host: \${DB_HOST}
          user: app
          password: \${SHOP_DB_PASSWORD}
    `;
    try {
      parseConfig(text, FILE, { DB_HOST: 'db' });
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.issues, [
        {
          file: FILE,
          line: 5,
          column: 15,
          path: 'targets[0].password',
          message: 'environment variable SHOP_DB_PASSWORD is not set',
          fix: 'export SHOP_DB_PASSWORD=... or use passwordFile',
        },
      ]);
      assert.match(
        error.message,
        /^\/etc\/warden\/warden\.yaml:5:15 targets\[0\]\.password: environment variable SHOP_DB_PASSWORD is not set/,
      );
    }
  });

  it('points at the unset reference inside a longer value, and reports each one', options, () => {
    assert.throws(
      () => parseConfig(target('    host: "${DB_HOST}.${DOMAIN}"\n'), FILE, { DB_HOST: 'db' }),
      (error: ConfigError) => {
        assert.deepEqual(
          error.issues.map((issue) => [issue.line, issue.column, issue.path, issue.message, issue.fix]),
          [[5, 23, 'targets[0].host', 'environment variable DOMAIN is not set', 'export DOMAIN=...']],
        );
        return true;
      },
    );
  });

  it('refuses a malformed reference', options, () => {
    assert.throws(
      () => parseConfig(target('    host: db\n    password: "${A-B} ${OPEN"\n'), FILE, {}),
      (error: ConfigError) => {
        assert.deepEqual(
          error.issues.map((issue) => issue.message),
          ['invalid variable reference "${A-B}"', 'unterminated variable reference "${OPEN"'],
        );
        assert.match(error.issues[0]!.fix, /for a literal \$\{ write \$\$\{/);
        return true;
      },
    );
  });
});

describe('secrets in messages', () => {
  const PASSWORD = 'correct-horse-battery';

  function messagesOf(text: string, env: NodeJS.ProcessEnv): string {
    try {
      parseConfig(text, FILE, env);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message + JSON.stringify(error.issues);
    }
    return assert.fail('expected a ConfigError');
  }

  it('never echoes a password of the wrong type', options, () => {
    const text = messagesOf(target('    host: db\n    password: 4815162342\n'), {});
    assert.match(text, /targets\[0\]\.password: expected a password string, got a number \(not shown\)/);
    assert.doesNotMatch(text, /4815162342/);
  });

  it('never echoes a value that came from the environment', options, () => {
    const text = messagesOf(target('    host: db\n    port: ${PW}\n    password: ${PW}\n'), { PW: PASSWORD });
    assert.match(text, /got "\$\{PW\}" \(from the environment, not shown\)/);
    assert.ok(!text.includes(PASSWORD));
  });

  it('redacts a literal password that is also written somewhere wrong', options, () => {
    const text = messagesOf(target(`    host: db\n    port: ${PASSWORD}\n    password: ${PASSWORD}\n`), {});
    assert.match(text, /targets\[0\]\.port: expected a port number \(1-65535\), got "\[redacted\]"/);
    assert.ok(!text.includes(PASSWORD));
  });
});
