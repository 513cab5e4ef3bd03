/**
 * Slows down password guessing: after failed logins, the next failure for
 * the same identity or from the same address is answered later, doubling
 * up to a cap. A success clears the identity's record; quiet periods let
 * records expire.
 */
export interface BackoffSettings {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly windowMs: number;
}

interface Record {
  failures: number;
  last: number;
}

export class LoginBackoff {
  private readonly records = new Map<string, Record>();

  constructor(
    private settings: BackoffSettings,
    private readonly now: () => number = Date.now,
  ) {}

  update(settings: BackoffSettings): void {
    this.settings = settings;
  }

  /** How long to wait before answering a failed login by this identity from this address. */
  delayMs(identity: string, address: string): number {
    const failures = Math.max(this.failures(`i:${identity}`), this.failures(`a:${address}`));
    if (failures === 0) return 0;
    return Math.min(this.settings.maxMs, this.settings.baseMs * 2 ** (failures - 1));
  }

  recordFailure(identity: string, address: string): void {
    const now = this.now();
    for (const key of [`i:${identity}`, `a:${address}`]) {
      const record = this.live(key, now);
      this.records.set(key, { failures: (record?.failures ?? 0) + 1, last: now });
    }
    if (this.records.size > 100_000) this.prune(now);
  }

  recordSuccess(identity: string): void {
    this.records.delete(`i:${identity}`);
  }

  private failures(key: string): number {
    return this.live(key, this.now())?.failures ?? 0;
  }

  private live(key: string, now: number): Record | undefined {
    const record = this.records.get(key);
    if (record && now - record.last > this.settings.windowMs) {
      this.records.delete(key);
      return undefined;
    }
    return record;
  }

  private prune(now: number): void {
    for (const [key, record] of this.records) {
      if (now - record.last > this.settings.windowMs) this.records.delete(key);
    }
  }
}
