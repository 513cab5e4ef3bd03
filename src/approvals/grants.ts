/**
 * Just-in-time grants as the policy engine reads them: the roles an
 * identity holds on a target now. Read from the store at most once a second
 * per identity and target (a rule that matches grants is checked on every
 * statement), and ended locally the moment a grant's time is up, so a grant
 * never outlives its window by a cached second. A revocation is seen within
 * that second.
 */
import type { ApprovalStore } from './store.ts';

const REFRESH_MS = 1000;
const NONE: ReadonlySet<string> = new Set();

interface Known {
  readonly readAt: number;
  readonly grants: readonly { readonly role: string; readonly until: number }[];
  /** The roles in force, and until when that set holds (the earliest end). */
  roles: ReadonlySet<string>;
  rolesUntil: number;
}

export class GrantBook {
  private readonly known = new Map<string, Known>();

  constructor(
    private readonly store: ApprovalStore,
    private readonly now: () => number = Date.now,
  ) {}

  readonly rolesOf = (identity: string, target: string): ReadonlySet<string> => {
    const now = this.now();
    const key = `${identity}\u0000${target}`;
    let known = this.known.get(key);
    if (known === undefined || now - known.readAt >= REFRESH_MS) {
      let grants: Known['grants'];
      try {
        grants = this.store.activeGrants(identity, target, now);
      } catch {
        grants = []; // The store cannot be read: no grant is assumed (fail closed).
      }
      known = { readAt: now, grants, roles: NONE, rolesUntil: -Infinity };
      this.known.set(key, known);
      if (this.known.size > 10_000) this.known.clear();
    }
    if (now >= known.rolesUntil) {
      const live = known.grants.filter((grant) => grant.until > now);
      known.roles = live.length === 0 ? NONE : new Set(live.map((grant) => grant.role));
      known.rolesUntil = Math.min(known.readAt + REFRESH_MS, ...live.map((grant) => grant.until));
    }
    return known.roles;
  };
}
