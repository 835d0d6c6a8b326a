/*
 * sqlgen.c
 *		Every SQL text the extension builds from the mapping, in one place.
 *		Each builder shows the SQL it makes, as postgres_fdw's deparse.c
 *		does.  Names come from the attachments (quoted identifiers, qualified
 *		relation names); values are never pasted in, only parameters ($1,
 *		...) that the caller binds; every operator and function is
 *		qualified, so the text means the same whatever the search_path.
 *
 * The conditions the DBA gave are not here: they are in the mapping views
 * (mapping.c), parsed once, and these statements read the views.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "patron_group.h"

/* SQL of a condition given to attach, NULL meaning 'dflt'. */
static const char *
condition_or(const char *condition, const char *dflt)
{
	return condition ? psprintf("COALESCE((%s), false)", condition) : dflt;
}

/*
 * The SELECT of a table's mapping view:
 *
 *	 patrons:      SELECT p.<id> AS patron_id, p.<barcode> AS barcode,
 *	                      <display name> AS display_name FROM <table> p
 *	 cards:        SELECT c.<patron> AS patron_id, c.<barcode> AS barcode,
 *	                      COALESCE((<active_when>), false) AS is_active FROM <table> c
 *	 circulations: SELECT r.<patron> AS patron_id, r.<due> AS due,
 *	                      COALESCE((<open_when>), false) AS is_open,
 *	                      COALESCE((<lost_when>), false) AS is_lost,
 *	                      CASE WHEN <open> THEN 1 ELSE 0 END AS items_out,
 *	                      CASE WHEN <open> AND <lost> THEN 1 ELSE 0 END AS items_lost,
 *	                      0::numeric AS amount_billed, 0::numeric AS amount_paid FROM <table> r
 *	 money:        SELECT r.<patron or transaction> AS patron_id (or xact_id),
 *	                      r.<amount>::numeric AS amount,
 *	                      COALESCE((<counts_when>), false) AS counts,
 *	                      0 AS items_out, 0 AS items_lost,
 *	                      <the row's charge> AS amount_billed, <its payment> AS amount_paid
 *	                      FROM <table> r
 *
 * patron_id (and xact_id) keep the table's own type, so that comparing them
 * with a bigint uses the table's index.
 */
char *
mapping_view_sql(const MappingSpec *m, const char *rel)
{
	StringInfoData sql;

	initStringInfo(&sql);
	switch (m->kind)
	{
		case MAP_PATRONS:
			appendStringInfo(&sql, "SELECT p.%s AS patron_id, %s AS barcode, %s AS display_name FROM %s p",
							 quote_identifier(m->id_column),
							 m->barcode_column ? psprintf("p.%s", quote_identifier(m->barcode_column))
							 : "NULL::pg_catalog.text",
							 display_name_sql(m->name_columns, quote_identifier(m->id_column), "p"), rel);
			break;
		case MAP_CARDS:
			appendStringInfo(&sql, "SELECT c.%s AS patron_id, c.%s AS barcode, %s AS is_active FROM %s c",
							 quote_identifier(m->patron_column), quote_identifier(m->barcode_column),
							 condition_or(m->condition, "true"), rel);
			break;
		case MAP_CIRCULATIONS:
			{
				const char *open = condition_or(m->condition, "true");
				const char *lost = condition_or(m->lost_condition, "false");

				appendStringInfo(&sql,
								 "SELECT r.%s AS patron_id, r.%s AS due, %s AS is_open, %s AS is_lost, "
								 "CASE WHEN %s THEN 1 ELSE 0 END AS items_out, "
								 "CASE WHEN %s AND %s THEN 1 ELSE 0 END AS items_lost, "
								 "0::pg_catalog.numeric AS amount_billed, 0::pg_catalog.numeric AS amount_paid "
								 "FROM %s r",
								 quote_identifier(m->patron_column), quote_identifier(m->due_column),
								 open, lost, open, open, lost, rel);
				break;
			}
		case MAP_MONEY:
			{
				const char *counts = condition_or(m->condition, "true");
				char	   *amount = psprintf("r.%s::pg_catalog.numeric", quote_identifier(m->amount_column));
				const char *zero = "0::pg_catalog.numeric";
				char	   *billed;
				char	   *paid;

				if (strcmp(m->money_kind, "charge") == 0)
				{
					billed = psprintf("CASE WHEN %s THEN %s ELSE %s END", counts, amount, zero);
					paid = (char *) zero;
				}
				else if (strcmp(m->money_kind, "payment") == 0)
				{
					billed = (char *) zero;
					paid = psprintf("CASE WHEN %s THEN %s ELSE %s END", counts, amount, zero);
				}
				else
				{
					/* signed: charges positive, credits negative */
					billed = psprintf("CASE WHEN %s AND %s OPERATOR(pg_catalog.>) 0 THEN %s ELSE %s END",
									  counts, amount, amount, zero);
					paid = psprintf("CASE WHEN %s AND %s OPERATOR(pg_catalog.<) 0 "
									"THEN OPERATOR(pg_catalog.-) %s ELSE %s END",
									counts, amount, amount, zero);
				}
				appendStringInfo(&sql,
								 "SELECT r.%s AS %s, %s AS amount, %s AS counts, "
								 "0 AS items_out, 0 AS items_lost, %s AS amount_billed, %s AS amount_paid "
								 "FROM %s r",
								 quote_identifier(m->patron_column), m->via ? "xact_id" : "patron_id",
								 amount, counts, billed, paid, rel);
				break;
			}
	}
	return sql.data;
}

/*
 * A patron's display name over alias, "Family, Given Middle":
 *
 *	 pg_catalog.concat_ws(', ', p.family, NULLIF(pg_catalog.concat_ws(' ', p.given, p.middle), ''))
 *
 * (one name column: that column; none: the id, as text).  id_column is quoted.
 */
char *
display_name_sql(List *name_columns, const char *id_column, const char *alias)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	if (name_columns == NIL)
		appendStringInfo(&sql, "%s.%s::pg_catalog.text", alias, id_column);
	else if (list_length(name_columns) == 1)
		appendStringInfo(&sql, "%s.%s::pg_catalog.text", alias,
						 quote_identifier(linitial(name_columns)));
	else
	{
		appendStringInfo(&sql, "pg_catalog.concat_ws(', ', %s.%s, NULLIF(pg_catalog.concat_ws(' '",
						 alias, quote_identifier(linitial(name_columns)));
		for_each_from(lc, name_columns, 1)
			appendStringInfo(&sql, ", %s.%s", alias, quote_identifier(lfirst(lc)));
		appendStringInfoString(&sql, "), ''))");
	}
	return sql.data;
}

/*
 * SQL: each row of an attached table as its mapping view gives it, with the
 * patron it counts for:
 *
 *	 SELECT m.patron_id::int8 AS p, m.items_out AS o, m.items_lost AS l,
 *	        m.amount_billed AS b, m.amount_paid AS y FROM <mapping> m
 *	        [WHERE m.patron_id = ANY ($1)]
 *
 * or, for money naming a transaction, joined to the transaction table:
 *
 *	 SELECT v.<patron>::int8 AS p, ... FROM <mapping> m
 *	   JOIN <transactions> v ON v.<id> = m.xact_id [WHERE v.<patron> = ANY ($1)]
 */
static char *
source_rows_sql(const Attachment *s, bool filtered)
{
	if (s->via_relid == InvalidOid)
		return psprintf("SELECT m.patron_id::pg_catalog.int8 AS p, m.items_out AS o, m.items_lost AS l, "
						"m.amount_billed AS b, m.amount_paid AS y FROM %s m%s",
						s->mapping_name,
						filtered ? " WHERE m.patron_id OPERATOR(pg_catalog.=) ANY ($1)" : "");
	return psprintf("SELECT v.%s::pg_catalog.int8 AS p, m.items_out AS o, m.items_lost AS l, "
					"m.amount_billed AS b, m.amount_paid AS y FROM %s m "
					"JOIN %s v ON v.%s OPERATOR(pg_catalog.=) m.xact_id%s",
					s->via_patron_column, s->mapping_name, s->via_relname, s->via_id_column,
					filtered ? psprintf(" WHERE v.%s OPERATOR(pg_catalog.=) ANY ($1)", s->via_patron_column) : "");
}

/*
 * SQL: the per-patron totals the attached tables hold (verify, rebuild),
 * only of the patrons in $1 (int8[]) when filtered:
 *
 *	 SELECT d.p, sum(d.o)::int8 AS o, sum(d.l)::int8 AS l, sum(d.b) AS b, sum(d.y) AS y
 *	   FROM (<rows of each table> UNION ALL ...) d WHERE d.p IS NOT NULL GROUP BY d.p
 */
char *
expected_totals_sql(List *sources, bool filtered)
{
	StringInfoData rows;
	ListCell   *lc;

	initStringInfo(&rows);
	foreach(lc, sources)
		appendStringInfo(&rows, "%s%s", rows.len ? " UNION ALL " : "",
						 source_rows_sql(lfirst(lc), filtered));
	if (rows.len == 0)
		appendStringInfoString(&rows, "SELECT NULL::pg_catalog.int8 AS p, 0 AS o, 0 AS l, "
							   "0::pg_catalog.numeric AS b, 0::pg_catalog.numeric AS y WHERE false");
	return psprintf("SELECT d.p, pg_catalog.sum(d.o)::pg_catalog.int8 AS o, "
					"pg_catalog.sum(d.l)::pg_catalog.int8 AS l, pg_catalog.sum(d.b) AS b, "
					"pg_catalog.sum(d.y) AS y FROM (%s) d WHERE d.p IS NOT NULL GROUP BY d.p",
					rows.data);
}

/*
 * SQL counting the overdue loans of the patron patron_expr at read time:
 *
 *	 (SELECT count(*) FROM <mapping> overdue_loan
 *	   WHERE overdue_loan.patron_id = <patron_expr> AND overdue_loan.is_open
 *	     AND NOT overdue_loan.is_lost AND overdue_loan.due < now()) + ...
 *
 * Overdue depends on the clock, not on a row change, so it is never stored.
 */
char *
overdue_sql(List *sources, const char *patron_expr)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	foreach(lc, sources)
	{
		Attachment *s = lfirst(lc);

		if (s->kind != MAP_CIRCULATIONS)
			continue;
		/* an alias of its own: patron_expr may name the caller's */
		appendStringInfo(&sql, "%s(SELECT pg_catalog.count(*) FROM %s overdue_loan "
						 "WHERE overdue_loan.patron_id OPERATOR(pg_catalog.=) %s "
						 "AND overdue_loan.is_open AND NOT overdue_loan.is_lost "
						 "AND overdue_loan.due OPERATOR(pg_catalog.<) pg_catalog.now())",
						 sql.len ? " OPERATOR(pg_catalog.+) " : "",
						 s->mapping_name, patron_expr);
	}
	if (sql.len == 0)
		appendStringInfoString(&sql, "0::pg_catalog.int8");
	return sql.data;
}

/*
 * SQL for a patron's barcode, over alias, a row of the patron mapping view:
 * the patron's own (p.barcode::text), or an active card's:
 *
 *	 (SELECT max(c.barcode::text) FROM <card mapping> c
 *	   WHERE c.patron_id = <alias>.patron_id AND c.is_active)
 */
char *
barcode_sql(const Mapping *m, const char *alias)
{
	if (m->patrons && m->patrons->barcode_column)
		return psprintf("%s.barcode::pg_catalog.text", alias);
	if (m->cards)
		return psprintf("(SELECT pg_catalog.max(c.barcode::pg_catalog.text) FROM %s c "
						"WHERE c.patron_id OPERATOR(pg_catalog.=) %s.patron_id AND c.is_active)",
						m->cards->mapping_name, alias);
	return "NULL::pg_catalog.text";
}

/*
 * SQL listing the patron ids whose barcodes normalize to $1 (at most two),
 * through the mapping views, so that the expression index on
 * normalize_barcode() is used:
 *
 *	 SELECT DISTINCT s.patron FROM (
 *	   SELECT p.patron_id::int8 AS patron FROM <patron mapping> p
 *	    WHERE patron_group.normalize_barcode(p.barcode) = $1
 *	   UNION ALL
 *	   SELECT c.patron_id::int8 FROM <card mapping> c
 *	    WHERE patron_group.normalize_barcode(c.barcode) = $1 AND c.is_active
 *	 ) s ORDER BY 1 LIMIT 2
 */
char *
barcode_lookup_sql(const Mapping *m)
{
	StringInfoData sql;
	bool		own = m->patrons && m->patrons->barcode_column;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT DISTINCT s.patron FROM (");
	if (own)
		appendStringInfo(&sql,
						 "SELECT p.patron_id::pg_catalog.int8 AS patron FROM %s p "
						 "WHERE " PG_SCHEMA ".normalize_barcode(p.barcode) OPERATOR(pg_catalog.=) $1",
						 m->patrons->mapping_name);
	if (own && m->cards)
		appendStringInfoString(&sql, " UNION ALL ");
	if (m->cards)
		appendStringInfo(&sql,
						 "SELECT c.patron_id::pg_catalog.int8 AS patron FROM %s c "
						 "WHERE " PG_SCHEMA ".normalize_barcode(c.barcode) OPERATOR(pg_catalog.=) $1 "
						 "AND c.is_active", m->cards->mapping_name);
	appendStringInfoString(&sql, ") s ORDER BY 1 LIMIT 2");
	return sql.data;
}

/*
 * SQL: the money of the transactions in $1 (int8[]), over every money table
 * naming this transaction table, one row per transaction:
 *
 *	 SELECT d.x, sum(d.o)::int8, sum(d.l)::int8, sum(d.b), sum(d.y) FROM (
 *	   SELECT m.xact_id::int8 AS x, m.items_out AS o, ... FROM <mapping> m
 *	    WHERE m.xact_id = ANY ($1) UNION ALL ...) d GROUP BY d.x
 */
char *
money_of_xacts_sql(List *sources)
{
	StringInfoData rows;
	ListCell   *lc;

	initStringInfo(&rows);
	foreach(lc, sources)
		appendStringInfo(&rows, "%sSELECT m.xact_id::pg_catalog.int8 AS x, m.items_out AS o, "
						 "m.items_lost AS l, m.amount_billed AS b, m.amount_paid AS y FROM %s m "
						 "WHERE m.xact_id OPERATOR(pg_catalog.=) ANY ($1)",
						 rows.len ? " UNION ALL " : "", ((Attachment *) lfirst(lc))->mapping_name);
	return psprintf("SELECT d.x, pg_catalog.sum(d.o)::pg_catalog.int8, pg_catalog.sum(d.l)::pg_catalog.int8, "
					"pg_catalog.sum(d.b), pg_catalog.sum(d.y) FROM (%s) d GROUP BY d.x", rows.data);
}

/*
 * SQL: the consent of kind (circulations, bills) of the account aliased
 * alias is in force:
 *
 *	 (a.share_<kind> AND (a.share_<kind>_until IS NULL
 *	                      OR a.share_<kind>_until > statement_timestamp()))
 *
 * Compared with the time the statement started, not the transaction's: no
 * statement that starts after a consent ends sees under it.  This is the
 * consent rule; every statement that applies it takes it from here.
 */
char *
consent_sql(const char *alias, const char *kind)
{
	return psprintf("(%s.share_%s AND (%s.share_%s_until IS NULL OR "
					"%s.share_%s_until OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp()))",
					alias, kind, alias, kind, alias, kind);
}

/*
 * The limits a patron's group exceeds: rows (name, figure, limit, group_id),
 * for patron $1 with $2 more loans to come.  No rows for a patron in no group.
 * The overdue count is computed only when the group has an overdue limit: it
 * reads the circulation tables.
 */
char *
violations_sql(List *sources)
{
	char	   *overdue = overdue_sql(sources, "m.patron_id");

	return psprintf("SELECT v.name, v.figure, v.lim, g.group_id "
					"FROM " PG_SCHEMA ".accounts a "
					"JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) a.group_id "
					"LEFT JOIN " PG_SCHEMA ".limits d ON d.group_id IS NULL "
					"LEFT JOIN " PG_SCHEMA ".limits o ON o.group_id OPERATOR(pg_catalog.=) g.group_id "
					"CROSS JOIN LATERAL (VALUES "
					"(1, 'balance_owed', g.amount_billed OPERATOR(pg_catalog.-) g.amount_paid, "
					" COALESCE(o.max_balance_owed, d.max_balance_owed), 0::pg_catalog.numeric), "
					"(2, 'items_out', g.items_out::pg_catalog.numeric, "
					" COALESCE(o.max_items_out, d.max_items_out)::pg_catalog.numeric, $2), "
					"(3, 'items_overdue', CASE WHEN COALESCE(o.max_items_overdue, d.max_items_overdue) IS NOT NULL "
					" THEN (SELECT COALESCE(pg_catalog.sum(%s), 0) FROM " PG_SCHEMA ".accounts m "
					"       WHERE m.group_id OPERATOR(pg_catalog.=) g.group_id) END, "
					" COALESCE(o.max_items_overdue, d.max_items_overdue)::pg_catalog.numeric, 0), "
					"(4, 'items_lost', g.items_lost::pg_catalog.numeric, "
					" COALESCE(o.max_items_lost, d.max_items_lost)::pg_catalog.numeric, 0)) "
					"AS v(ord, name, figure, lim, pending) "
					"WHERE a.patron_id OPERATOR(pg_catalog.=) $1 AND v.lim IS NOT NULL "
					"AND v.figure OPERATOR(pg_catalog.+) v.pending OPERATOR(pg_catalog.>) v.lim "
					"ORDER BY v.ord", overdue);
}

/*
 * SQL: the lines a payment for a group can be spread over, the open balances
 * of the members in $1 (int8[]), oldest first, the member $3 first when
 * given, and how much of the amount $2 goes to each:
 *
 *	 WITH l AS (SELECT tt, xact, patron, sum(amt) AS bal FROM (
 *	              SELECT <transaction table>::oid AS tt, t.<id>::int8 AS xact, t.<patron>::int8 AS patron,
 *	                     m.amount_billed - m.amount_paid AS amt
 *	                FROM <mapping> m JOIN <transactions> t ON t.<id> = m.xact_id
 *	               WHERE t.<patron> = ANY ($1)
 *	              UNION ALL
 *	              SELECT NULL, NULL, m.patron_id::int8, m.amount_billed - m.amount_paid
 *	                FROM <mapping> m WHERE m.patron_id = ANY ($1)) ...
 *	            GROUP BY 1, 2, 3 HAVING sum(amt) > 0),
 *	      o AS (... running sum in payment order ...)
 *	 SELECT tt::regclass, xact, patron, bal, LEAST(bal, $2 - (running - bal)) FROM o
 *	  WHERE running - bal < $2 ORDER BY ord
 */
char *
payment_lines_sql(List *sources)
{
	StringInfoData lines;
	ListCell   *lc;

	initStringInfo(&lines);
	foreach(lc, sources)
	{
		Attachment *s = lfirst(lc);

		if (s->kind != MAP_MONEY)
			continue;
		if (lines.len)
			appendStringInfoString(&lines, " UNION ALL ");
		/* a row's signed amount: its charge, or minus its payment, as the totals count it */
		if (OidIsValid(s->via_relid))
			appendStringInfo(&lines,
							 "SELECT %u::pg_catalog.oid AS tt, t.%s::pg_catalog.int8 AS xact, "
							 "t.%s::pg_catalog.int8 AS patron, "
							 "m.amount_billed OPERATOR(pg_catalog.-) m.amount_paid AS amt "
							 "FROM %s m JOIN %s t ON t.%s OPERATOR(pg_catalog.=) m.xact_id "
							 "WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1)",
							 s->via_relid, s->via_id_column, s->via_patron_column,
							 s->mapping_name, s->via_relname, s->via_id_column, s->via_patron_column);
		else
			appendStringInfo(&lines,
							 "SELECT NULL::pg_catalog.oid, NULL::pg_catalog.int8, "
							 "m.patron_id::pg_catalog.int8, m.amount_billed OPERATOR(pg_catalog.-) m.amount_paid "
							 "FROM %s m WHERE m.patron_id OPERATOR(pg_catalog.=) ANY ($1)",
							 s->mapping_name);
	}
	if (lines.len == 0)
		appendStringInfoString(&lines, "SELECT NULL::pg_catalog.oid, NULL::pg_catalog.int8, "
							   "NULL::pg_catalog.int8, NULL::pg_catalog.numeric WHERE false");
	return psprintf("WITH l AS (SELECT u.tt, u.xact, u.patron, pg_catalog.sum(u.amt) AS bal "
				   " FROM (%s) AS u(tt, xact, patron, amt) GROUP BY 1, 2, 3 "
				   " HAVING pg_catalog.sum(u.amt) OPERATOR(pg_catalog.>) 0), "
				   "o AS (SELECT l.*, pg_catalog.sum(l.bal) OVER w AS running, "
				   " pg_catalog.row_number() OVER w AS ord FROM l "
				   " WINDOW w AS (ORDER BY l.patron IS DISTINCT FROM $3, l.xact NULLS LAST, l.tt, l.patron "
				   " ROWS UNBOUNDED PRECEDING)) "
				   "SELECT o.tt::pg_catalog.regclass, o.xact, o.patron, o.bal, "
				   "LEAST(o.bal, $2 OPERATOR(pg_catalog.-) (o.running OPERATOR(pg_catalog.-) o.bal)) "
				   "FROM o WHERE o.running OPERATOR(pg_catalog.-) o.bal OPERATOR(pg_catalog.<) $2 "
				   "ORDER BY o.ord", lines.data);
}

/*
 * SQL of Group Member Details for patron $1, as seen by $2 (NULL: staff,
 * who see everything; else the patron a patron-facing session acts for):
 * every member with barcode, name, lead flag and figures, then one row
 * (member_id NULL) with the group's totals.  A viewer who is not a lead
 * sees only themselves; a lead sees every member's name, a member's loans
 * only with their consent to share circulations and their balance only
 * with consent to share bills, and a total of what is shown.
 *
 *	 WITH m AS (SELECT a.group_id, a.patron_id, <barcode, own only> AS barcode,
 *	                   p.display_name, a.is_lead,
 *	                   CASE WHEN <may see loans> THEN a.items_out END AS items_out, ...
 *	              FROM accounts a JOIN <patron mapping> p ON p.patron_id = a.patron_id
 *	             WHERE (a.patron_id = $1 OR a.group_id = <$1's group>) AND <the viewer may list>)
 *	 SELECT * FROM (<members> UNION ALL <the group's total>) x
 *	  ORDER BY x.ord, x.is_lead DESC, x.display_name COLLATE "und-x-icu", x.member_id
 */
char *
group_members_sql(const Mapping *m)
{
	char	   *see_circ = psprintf("($2 IS NULL OR a.patron_id OPERATOR(pg_catalog.=) $2 OR %s)",
									consent_sql("a", "circulations"));
	char	   *see_bills = psprintf("($2 IS NULL OR a.patron_id OPERATOR(pg_catalog.=) $2 OR %s)",
									 consent_sql("a", "bills"));

	return psprintf("WITH m AS (SELECT a.group_id, a.patron_id, "
				   "CASE WHEN $2 IS NULL OR a.patron_id OPERATOR(pg_catalog.=) $2 THEN %s END AS barcode, "
				   "%s AS display_name, a.is_lead, "
				   "CASE WHEN %s THEN a.items_out END AS items_out, "
				   "CASE WHEN %s THEN (%s)::pg_catalog.int8 END AS items_overdue, "
				   "CASE WHEN %s THEN a.items_lost END AS items_lost, "
				   "CASE WHEN %s THEN a.amount_billed OPERATOR(pg_catalog.-) a.amount_paid END AS balance_owed "
				   "FROM " PG_SCHEMA ".accounts a "
				   "JOIN %s p ON p.%s OPERATOR(pg_catalog.=) a.patron_id "
				   "WHERE (a.patron_id OPERATOR(pg_catalog.=) $1 "
				   "OR a.group_id OPERATOR(pg_catalog.=) (SELECT group_id FROM " PG_SCHEMA ".accounts "
				   "WHERE patron_id OPERATOR(pg_catalog.=) $1)) "
				   "AND ($2 IS NULL OR a.patron_id OPERATOR(pg_catalog.=) $2 OR (SELECT is_lead FROM "
				   PG_SCHEMA ".accounts WHERE patron_id OPERATOR(pg_catalog.=) $2))) "
				   "SELECT * FROM ("
				   "SELECT g.group_id, g.label, g.created_at, m.patron_id AS member_id, m.barcode, "
				   "m.display_name, m.is_lead, m.items_out, m.items_overdue, m.items_lost, m.balance_owed, 0 AS ord "
				   "FROM m LEFT JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) m.group_id "
				   "UNION ALL "
				   "SELECT g.group_id, g.label, g.created_at, NULL, NULL, 'Group total', NULL, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.items_out, pg_catalog.sum(m.items_out)::pg_catalog.int8) "
				   "ELSE pg_catalog.sum(m.items_out)::pg_catalog.int8 END, "
				   "pg_catalog.sum(m.items_overdue)::pg_catalog.int8, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.items_lost, pg_catalog.sum(m.items_lost)::pg_catalog.int8) "
				   "ELSE pg_catalog.sum(m.items_lost)::pg_catalog.int8 END, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.amount_billed OPERATOR(pg_catalog.-) g.amount_paid, "
				   "pg_catalog.sum(m.balance_owed)) ELSE pg_catalog.sum(m.balance_owed) END, 1 "
				   "FROM m LEFT JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) m.group_id "
				   "GROUP BY g.group_id HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0) x "
				   "ORDER BY x.ord, x.is_lead DESC, x.display_name COLLATE \"und-x-icu\", x.member_id",
				   barcode_sql(m, "p"), "p.display_name",
				   see_circ, see_circ, overdue_sql(m->totals, "a.patron_id"),
				   see_circ, see_bills, m->patrons->mapping_name, "patron_id");
}

/*
 * SQL: a patron's barcode and display name from the patron mapping view, and
 * the open loans that are overdue now, for patron $1, read with the
 * caller's rights:
 *
 *	 SELECT x.b, x.n, (<overdue of $1>)::int8 FROM (SELECT 1) o
 *	   LEFT JOIN (SELECT <barcode> AS b, p.display_name AS n FROM <patron mapping> p
 *	               WHERE p.patron_id = $1) x ON true
 */
char *
patron_details_sql(const Mapping *m)
{
	return psprintf("SELECT x.b, x.n, (%s)::pg_catalog.int8 FROM (SELECT 1) o LEFT JOIN "
					"(SELECT %s AS b, p.display_name AS n FROM %s p "
					"WHERE p.patron_id OPERATOR(pg_catalog.=) $1) x ON true",
					overdue_sql(m->totals, "$1"), barcode_sql(m, "p"), m->patrons->mapping_name);
}

/*
 * SQL: who patron $1 is, to confirm a move: id, barcode, display name,
 * group and the group's size, read with the caller's rights.
 */
char *
find_patron_sql(const Mapping *m)
{
	return psprintf("SELECT p.patron_id::pg_catalog.int8, %s, p.display_name, a.group_id, g.member_count "
					"FROM %s p JOIN " PG_SCHEMA ".accounts a ON a.patron_id OPERATOR(pg_catalog.=) p.patron_id "
					"LEFT JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) a.group_id "
					"WHERE p.patron_id OPERATOR(pg_catalog.=) $1",
					barcode_sql(m, "p"), m->patrons->mapping_name);
}

/*
 * SQL: write the expected totals (expected_sql, as expected_totals_sql
 * makes them) into the accounts that differ, of everyone or of the patrons
 * in $1 (int8[]):
 *
 *	 UPDATE accounts a SET items_out = x.o, ... FROM (
 *	   SELECT a2.patron_id, COALESCE(e.o, 0) AS o, ... FROM accounts a2
 *	     LEFT JOIN (<expected>) e ON e.p = a2.patron_id [WHERE a2.patron_id = ANY ($1)]) x
 *	  WHERE a.patron_id = x.patron_id AND (a.items_out, ...) IS DISTINCT FROM (x.o, ...)
 */
char *
recount_accounts_sql(const char *expected_sql, bool filtered)
{
	return psprintf("UPDATE " PG_SCHEMA ".accounts a SET "
					"items_out = x.o, items_lost = x.l, amount_billed = x.b, amount_paid = x.y "
					"FROM (SELECT a2.patron_id, COALESCE(e.o, 0) AS o, COALESCE(e.l, 0) AS l, "
					"COALESCE(e.b, 0) AS b, COALESCE(e.y, 0) AS y "
					"FROM " PG_SCHEMA ".accounts a2 LEFT JOIN (%s) e ON e.p OPERATOR(pg_catalog.=) a2.patron_id %s) x "
					"WHERE a.patron_id OPERATOR(pg_catalog.=) x.patron_id "
					"AND (a.items_out, a.items_lost, a.amount_billed, a.amount_paid) "
					"IS DISTINCT FROM (x.o, x.l, x.b, x.y)",
					expected_sql,
					filtered ? "WHERE a2.patron_id OPERATOR(pg_catalog.=) ANY ($1)" : "");
}

/*
 * SQL: sum the accounts into the groups of everyone, or of the patrons in
 * $1 (int8[]), writing the groups that differ:
 *
 *	 UPDATE groups g SET member_count = s.n, ... FROM (
 *	   SELECT group_id, count(*) AS n, ... FROM accounts
 *	    WHERE group_id = ANY (ARRAY(SELECT group_id FROM accounts [WHERE patron_id = ANY ($1)]))
 *	    GROUP BY group_id) s
 *	  WHERE g.group_id = s.group_id AND (g.member_count, ...) IS DISTINCT FROM (s.n, ...)
 */
char *
recount_groups_sql(bool filtered)
{
	return psprintf("UPDATE " PG_SCHEMA ".groups g SET "
					"member_count = s.n, lead_count = s.leads, items_out = s.o, items_lost = s.l, "
					"amount_billed = s.b, amount_paid = s.y "
					"FROM (SELECT group_id, pg_catalog.count(*)::int4 AS n, "
					"pg_catalog.count(*) FILTER (WHERE is_lead)::int4 AS leads, "
					"pg_catalog.sum(items_out)::int8 AS o, pg_catalog.sum(items_lost)::int8 AS l, "
					"pg_catalog.sum(amount_billed) AS b, pg_catalog.sum(amount_paid) AS y "
					"FROM " PG_SCHEMA ".accounts WHERE group_id OPERATOR(pg_catalog.=) ANY "
					"(ARRAY(SELECT group_id FROM " PG_SCHEMA ".accounts %s)) GROUP BY group_id) s "
					"WHERE g.group_id OPERATOR(pg_catalog.=) s.group_id "
					"AND (g.member_count, g.lead_count, g.items_out, g.items_lost, g.amount_billed, g.amount_paid) "
					"IS DISTINCT FROM (s.n, s.leads, s.o, s.l, s.b, s.y)",
					filtered ? "WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1)" : "");
}
