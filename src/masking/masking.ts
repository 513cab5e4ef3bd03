/**
 * Masking as the policy engine uses it: for the statements of one message,
 * the mask verdict for the session's identity (nothing to mask, refused, or
 * a plan), and the result transform that carries a plan out on the wire.
 * Each target's catalog is read before its first session (see Catalogs).
 */
import type { TargetConfig } from '../config/index.ts';
import type { ResultTransform, SessionInfo } from '../policy/decision.ts';
import type { StatementAnalysis } from '../sql/analysis.ts';
import { isOpaque } from '../sql/functions.ts';
import { type Catalog, Catalogs, EMPTY_CATALOG } from './catalog.ts';
import { MaskMemos } from './memo.ts';
import { CLEAR, type MaskVerdict, planStatements, type StatementPlan } from './plan.ts';
import type { MaskingPolicy } from './policy.ts';
import { type MaskReport, maskResult } from './transform.ts';

const REFRESH_INTERVAL_MS = 1_000;

export class Masking {
  private readonly refreshedAt = new Map<string, number>();
  private readonly memos = new MaskMemos();

  constructor(
    readonly policy: MaskingPolicy,
    readonly catalogs: Catalogs = new Catalogs(),
    /** Told what each masked result masked (columns and rows): for audit. */
    private readonly onReport?: (session: SessionInfo, report: MaskReport) => void,
  ) {}

  /** Whether sessions of this target need its catalog before they start. */
  needsCatalog(): boolean {
    return this.policy.active;
  }

  catalogOf(target: TargetConfig): Catalog {
    return this.catalogs.current(target) ?? EMPTY_CATALOG;
  }

  verdict(
    statements: readonly StatementAnalysis[],
    session: SessionInfo,
    searchPath: readonly string[] | undefined,
  ): MaskVerdict {
    if (!this.policy.active || !statements.some(readsData)) return CLEAR;
    const { target } = session;
    return planStatements(statements, {
      policy: this.policy,
      identity: session.identity,
      target,
      catalog: this.catalogOf(target),
      // PostgreSQL's default path, when the session set none.
      searchPath: searchPath ?? [target.user, 'public'],
      onUnknownTable: () => this.refreshSoon(target),
    });
  }

  /** Reads the catalog again, at most once a second per target (a missing table is named again and again). */
  private refreshSoon(target: TargetConfig): void {
    const now = Date.now();
    if (now - (this.refreshedAt.get(target.name) ?? 0) < REFRESH_INTERVAL_MS) return;
    this.refreshedAt.set(target.name, now);
    this.catalogs.refresh(target).catch(() => {});
  }

  transform(plans: readonly StatementPlan[], session: SessionInfo): ResultTransform {
    const onReport = this.onReport;
    return maskResult(
      plans,
      this.policy.key,
      this.memos,
      onReport && ((report) => onReport(session, report)),
    );
  }
}

/**
 * A statement whose result may hold table data: it names a table, fetches
 * from a cursor, or calls a function that may read tables itself.
 */
function readsData(statement: StatementAnalysis): boolean {
  return statement.tables.length > 0 || statement.fetches !== undefined || statement.functions.some(isOpaque);
}
