/**
 * Just-in-time grants through a real Warden and the real CLI: asked for with
 * `warden grant request`, approved like any request, matched by a rule
 * (`match: { grants: [role] }`) while in force, and ended by revocation or
 * by its time running out, without a restart.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { run, seededWarden } from '../proxy/support.ts';

const SEED = `CREATE TABLE orders (id int PRIMARY KEY, note text);
  INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 5) g;`;

const POLICY = `
policy:
  rules:
    - name: read-orders
      match: { tables: [orders], access: read }
      action: allow
    - name: break-glass-order-writes
      match: { grants: [orders-write], tables: [orders], access: write }
      action: allow
  defaults: { human: deny, service: deny, agent: deny }
approvals:
  approvers: { identities: [etl] }
`;

describe('just-in-time grants', { timeout: 120_000 }, () => {
  const env = seededWarden('grants', SEED, POLICY);
  let client: pg.Client | undefined;

  after(async () => {
    await client?.end();
  });

  const cli = (...args: string[]) =>
    run(process.execPath, ['bin/warden.js', ...args, '--config', join(env.warden.dir, 'warden.yaml')], {
      env: { HOME: process.env.HOME, UPSTREAM_PASSWORD: env.upstream.password ?? '' },
    });
  const update = async (): Promise<string> => {
    try {
      await client!.query("UPDATE orders SET note = 'fixed' WHERE id = 1");
      return 'ok';
    } catch (error) {
      return (error as pg.DatabaseError).code ?? 'error';
    }
  };
  /** Grants are read at most once a second: the answer that settles within a few. */
  const settlesTo = async (wanted: string): Promise<void> => {
    let last = '';
    for (let i = 0; i < 40; i++) {
      last = await update();
      if (last === wanted) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail(`the UPDATE still answers ${last}, not ${wanted}`);
  };
  const ask = (duration: string) =>
    cli(
      'grant',
      'request',
      '--as',
      'alice',
      '--target',
      env.database.name,
      '--role',
      'orders-write',
      '--for',
      duration,
      '--reason',
      'incident 7: fix order 1',
    );
  const request = async (duration: string): Promise<string> => {
    const asked = await ask(duration);
    assert.equal(asked.code, 0, asked.stderr);
    return asked.stdout.trim();
  };

  it('lets a rule allow what the approved grant names while it is in force, until revoked', async () => {
    client = new pg.Client(env.warden.pgConfig('alice'));
    // The suite's Warden stops before this client is ended: its goodbye is expected.
    client.on('error', () => {});
    await client.connect();
    assert.equal(await update(), '42501', 'no grant: the default denies');

    const id = await request('1h');
    assert.match(id, /^apr_[a-z2-7]+$/);
    assert.equal(await update(), '42501', 'asked for, not yet approved');
    const own = await cli('approvals', 'approve', id, '--as', 'alice', '--reason', 'I need it');
    assert.equal(own.code, 1);
    assert.match(own.stderr, /nobody decides their own request/);
    const approved = await cli('approvals', 'approve', id, '--as', 'etl', '--reason', 'on call, incident 7');
    assert.equal(approved.code, 0, approved.stderr);
    await settlesTo('ok');

    const listed = await cli('grant', 'list');
    assert.match(
      listed.stdout,
      new RegExp(`^${id}  alice  orders-write on ${env.database.name}  until \\S+$`, 'm'),
    );

    const outsider = await cli('grant', 'revoke', id, '--as', 'outsider', '--reason', 'no');
    assert.equal(outsider.code, 1);
    assert.match(outsider.stderr, /outsider may not revoke/);
    const revoked = await cli('grant', 'revoke', id, '--as', 'alice', '--reason', 'done');
    assert.equal(revoked.code, 0, revoked.stderr);
    await settlesTo('42501');
    const again = await cli('grant', 'revoke', id, '--as', 'alice', '--reason', 'done');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is not in force \(it is revoked/);
  });

  it('ends a grant by itself when its time is up', async () => {
    client ??= new pg.Client(env.warden.pgConfig('alice'));
    const id = await request('2s');
    const approved = await cli('approvals', 'approve', id, '--as', 'etl', '--reason', 'short one');
    assert.equal(approved.code, 0, approved.stderr);
    await settlesTo('ok');
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    assert.equal(await update(), '42501', 'expired: denied again at once');
  });

  it('refuses a request without a usable duration', async () => {
    const bad = await ask('forever');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--for must be a duration such as 30m, 1h or 2d, not "forever"/);
  });
});
