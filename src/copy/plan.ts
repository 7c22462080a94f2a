// Statements of one table's batch transaction, built once per table at setup (the hot path only
// interpolates integers). Every batch is one transaction:
//   BEGIN; COPY rows; INSERT INTO ingest_batches (...); COMMIT
// so a row is visible to the deduplicator only with its committed batch row (docs/semantics.md).
// Trades go through a per-session TEMP staging table and `INSERT ... ON CONFLICT DO NOTHING`,
// because a live trade may already be there from REST backfill (UNIQUE (exchange_ts, trade_id)).
import { invariant } from '../core/errors';
import { columnNames, copyFromStatement, quoteIdent, tableByName, type TimeSeriesTable, type TimeSeriesTableName } from '../schema/tables';
import { WRITER_NAME_PATTERN } from './options';

export const TRADES_STAGING = 'kdp_trades_staging';

export interface TablePlan {
  readonly table: TimeSeriesTable;
  /** COPY ... FROM STDIN into the table itself, or into the staging table for trades. */
  readonly copySql: string;
  /** Run once per session before the first batch (and harmless to repeat). */
  readonly sessionSetupSql: readonly string[];
  /** Whether rows pass through the staging table (then finishSql merges them). */
  readonly staged: boolean;
  /**
   * The last round trip of a batch: (merge staging;) insert the ingest_batches row; COMMIT.
   * Returns a multi-statement simple query whose first result's `row_count` is the rows written.
   */
  finishSql(batchId: number, writerName: string, rowsCopied: number): string;
}

const plans = new Map<TimeSeriesTableName, TablePlan>();

export function tablePlan(name: TimeSeriesTableName): TablePlan {
  let plan = plans.get(name);
  if (!plan) {
    plan = buildPlan(tableByName(name));
    plans.set(name, plan);
  }
  return plan;
}

function buildPlan(table: TimeSeriesTable): TablePlan {
  const batchCols = '(batch_id, writer, table_name, row_count)';
  if (table.name !== 'trades') {
    return {
      table,
      copySql: copyFromStatement(table),
      sessionSetupSql: [],
      staged: false,
      finishSql: (batchId, writerName, rowsCopied) => {
        checkLiteral(batchId, writerName);
        return `INSERT INTO ingest_batches ${batchCols} VALUES (${batchId}, '${writerName}', '${table.name}', ${rowsCopied}) RETURNING row_count; COMMIT`;
      },
    };
  }
  const cols = columnNames(table).map(quoteIdent).join(', ');
  // ON COMMIT DELETE ROWS empties the staging table at every commit; a rollback discards its rows
  // anyway, so each batch starts from an empty table without an explicit TRUNCATE round trip.
  const setup = `CREATE TEMP TABLE IF NOT EXISTS ${TRADES_STAGING} (LIKE ${table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`;
  const merge = `INSERT INTO ${table.name} (${cols}) SELECT ${cols} FROM ${TRADES_STAGING} ON CONFLICT DO NOTHING RETURNING 1`;
  return {
    table,
    copySql: copyFromStatement(table, TRADES_STAGING),
    sessionSetupSql: [setup],
    staged: true,
    finishSql: (batchId, writerName) => {
      checkLiteral(batchId, writerName);
      return (
        `WITH merged AS (${merge}) INSERT INTO ingest_batches ${batchCols} ` +
        `SELECT ${batchId}, '${writerName}', '${table.name}', count(*) FROM merged RETURNING row_count; COMMIT`
      );
    },
  };
}

function checkLiteral(batchId: number, writerName: string): void {
  invariant(Number.isSafeInteger(batchId) && batchId > 0, `batch id ${batchId} is a positive integer`);
  invariant(WRITER_NAME_PATTERN.test(writerName), `writer name ${JSON.stringify(writerName)} is SQL-literal safe`);
}
