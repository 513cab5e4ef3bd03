/**
 * Log lines are JSON (or text) and never carry a secret: the config's
 * secrets, as written or as JSON escapes them, and passwords inside URLs,
 * wherever in a line they appear.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLog, scrub } from '../../src/observe/log.ts';

const SECRETS = ['tgt-Pa55word', 'key"with\\quote'];

function capture(format: 'json' | 'text', level: 'info' | 'debug' = 'info') {
  const lines: string[] = [];
  const log = createLog({ level, format, secrets: () => SECRETS, write: (line) => lines.push(line) });
  return { log, lines };
}

describe('the log', { timeout: 10_000 }, () => {
  it('writes one JSON object per line with time, level and message', () => {
    const { log, lines } = capture('json');
    log.info({ host: '127.0.0.1', port: 6543 }, 'warden listening on 127.0.0.1:6543');
    log.debug('not at info');
    assert.equal(lines.length, 1);
    const entry = JSON.parse(lines[0]!);
    assert.equal(entry.msg, 'warden listening on 127.0.0.1:6543');
    assert.equal(entry.level, 30);
    assert.equal(entry.port, 6543);
    assert.match(entry.time, /^\d{4}-\d\d-\d\dT/);
  });

  it('replaces secrets in messages, fields and errors, and passwords in URLs', () => {
    const { log, lines } = capture('json');
    log.error(
      { detail: 'upstream said tgt-Pa55word is wrong', store: 'postgres://audit:url-Pa55@db:5432/audit' },
      'cannot log in with tgt-Pa55word; key was key"with\\quote',
    );
    log.warn({ password: 'anything at all', nested: { token: 'tok-123456' } }, 'fields named as secrets');
    log.error(new Error('connect failed for postgres://u:Secr3t%21@h/d'), 'failed');
    const text = lines.join('');
    for (const secret of [
      'tgt-Pa55word',
      'url-Pa55',
      'key\\"with\\\\quote',
      'anything at all',
      'tok-123456',
      'Secr3t',
    ])
      assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    assert.match(lines[0]!, /postgres:\/\/audit:\[redacted\]@db:5432\/audit/);
    assert.match(lines[0]!, /cannot log in with \[redacted\]; key was \[redacted\]/);
  });

  it('writes readable lines in text format, scrubbed the same', () => {
    const { log, lines } = capture('text');
    log.warn({ target: 'shop' }, 'login refused: wrong password tgt-Pa55word');
    assert.match(
      lines[0]!,
      /^\d{4}-\d\d-\d\dT\S+ WARN login refused: wrong password \[redacted\] target=shop\n$/,
    );
  });

  it('leaves short values alone (they would match ordinary words)', () => {
    assert.equal(scrub('a b c', ['b']), 'a b c');
  });
});
