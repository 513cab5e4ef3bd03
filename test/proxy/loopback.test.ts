import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLoopback } from '../../src/proxy/client.ts';

// requireTls: remote exempts exactly these addresses; anything else must use TLS.
describe('which client addresses count as loopback', () => {
  it('accepts IPv4 127/8, IPv6 ::1 and IPv4-mapped 127/8', () => {
    for (const address of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1'])
      assert.equal(isLoopback(address), true, address);
  });

  it('refuses every other address, and an unknown one', () => {
    for (const address of [
      '10.0.0.1',
      '192.168.1.5',
      '::ffff:10.0.0.1',
      'fe80::1',
      '::',
      '0.0.0.0',
      '1127.0.0.1',
      undefined,
    ]) {
      assert.equal(isLoopback(address), false, String(address));
    }
  });
});
