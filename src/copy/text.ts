// The one owner of the COPY text row format shared by the parsers (which encode rows) and the
// COPY writers (which stream them). PostgreSQL COPY text format: columns separated by TAB, rows
// by NEWLINE, NULL as \N, and backslash, TAB, NEWLINE, CR escaped with a backslash.
//
// Contract: an encoder produces a "row line" holding every column of the table in
// tables.ts order EXCEPT the last one, `batch_id`, with no trailing newline. The writer owns
// batch ids and appends `\t<batch_id>\n` when the row joins a batch, so encoders need not know
// which batch a row will land in.

export const COPY_NULL = '\\N';

// Most values (tickers, decimals, uuids, integers) never contain a character that needs
// escaping; the regex test is cheaper than an unconditional replace on the hot path.
const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPE_ALL = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

export function copyText(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPE_ALL, (c) => ESCAPES[c]!) : value;
}

export function copyNullable(value: string | null | undefined): string {
  return value === null || value === undefined ? COPY_NULL : copyText(value);
}

/** Appends the writer-owned batch id to a row line, completing one COPY text row. */
export function completeRow(rowLine: string, batchId: number): string {
  return `${rowLine}\t${batchId}\n`;
}
