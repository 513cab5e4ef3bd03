import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LoginBackoff } from '../../src/identity/backoff.ts';

describe('login back-off', () => {
  const settings = { baseMs: 100, maxMs: 1000, windowMs: 60_000 };

  it('answers the first failure at once, then doubles the delay up to the cap', () => {
    let now = 0;
    const backoff = new LoginBackoff(settings, () => now);
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      delays.push(backoff.delayMs('alice', '10.0.0.1'));
      backoff.recordFailure('alice', '10.0.0.1');
      now += 10;
    }
    assert.deepEqual(delays, [0, 100, 200, 400, 800, 1000]);
  });

  it('slows every identity tried from a guessing address, and every address trying one identity', () => {
    const backoff = new LoginBackoff(settings, () => 0);
    for (let i = 0; i < 3; i++) backoff.recordFailure(`user${i}`, '10.0.0.9');
    assert.equal(backoff.delayMs('someone-else', '10.0.0.9'), 400);
    for (let i = 0; i < 3; i++) backoff.recordFailure('target', `10.0.1.${i}`);
    assert.equal(backoff.delayMs('target', '10.0.2.1'), 400);
  });

  it('forgets failures after a quiet window and clears an identity on success', () => {
    let now = 0;
    const backoff = new LoginBackoff(settings, () => now);
    backoff.recordFailure('alice', '10.0.0.1');
    backoff.recordFailure('alice', '10.0.0.1');
    assert.equal(backoff.delayMs('alice', '10.0.0.2'), 200);
    backoff.recordSuccess('alice');
    assert.equal(backoff.delayMs('alice', '10.0.0.2'), 0);
    assert.equal(backoff.delayMs('bob', '10.0.0.1'), 200, 'the address record remains');
    now += 60_001;
    assert.equal(backoff.delayMs('bob', '10.0.0.1'), 0);
  });
});
