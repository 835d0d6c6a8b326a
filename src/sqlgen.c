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

#include "access/relation.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "patron_group.h"

/* SQL of a condition given to attach, NULL meaning 'dflt'. */
static const char *
condition_or(const char *condition, const char *dflt)
{
	return condition ? psprintf("COALESCE((%s), false)", condition) : dflt;
}

/* The states of an open loan counted apart, as attach's out_includes names them. */
const char *const loan_states[N_LOAN_STATES] = {"lost", "claims_returned", "long_overdue"};

/* The figures kept per account and group, in the order of the mapping views' columns. */
const char *const figure_names[N_FIGURES] = {
	"items_out", "items_lost", "items_claims_returned", "items_long_overdue",
	"amount_billed", "amount_paid", "balance_owed"
};

/* The SQL type of a figure in the accounts and groups. */
static const char *
figure_type(int f)
{
	return f < N_COUNTS ? "pg_catalog.int8" : "pg_catalog.numeric";
}

/* Does a list of state names hold this one? */
static bool
includes(List *states, const char *state)
{
	ListCell   *lc;

	foreach(lc, states)
		if (strcmp(lfirst(lc), state) == 0)
			return true;
	return false;
}

/*
 * The SELECT of a table's mapping view:
 *
 *	 patrons:      SELECT p.<id> AS patron_id, p.<barcode> AS barcode,
 *	                      <display name> AS display_name,
 *	                      COALESCE((<deleted_when>), false) AS is_deleted FROM <table> p
 *	 cards:        SELECT c.<patron> AS patron_id, c.<barcode> AS barcode,
 *	                      COALESCE((<active_when>), false) AS is_active,
 *	                      c.<card id>::int8 AS card_id FROM <table> c
 *	 circulations: SELECT r.<patron> AS patron_id, r.<due> AS due,
 *	                      <open> AS is_open, <lost> AS is_lost,
 *	                      <claims returned> AS is_claims_returned,
 *	                      <long overdue> AS is_long_overdue, <renewal> AS is_renewal,
 *	                      CASE WHEN <open> AND <counted as out> THEN 1 ELSE 0 END AS items_out,
 *	                      CASE WHEN <open> AND <lost> THEN 1 ELSE 0 END AS items_lost,
 *	                      CASE WHEN <open> AND NOT <lost> AND <claims> THEN 1 ... AS items_claims_returned,
 *	                      CASE WHEN <open> AND NOT <lost> AND NOT <claims> AND <long> ... AS items_long_overdue,
 *	                      0::numeric AS amount_billed, ... FROM <table> r
 *	 money:        SELECT r.<patron or transaction> AS patron_id (or xact_id),
 *	                      r.<amount>::numeric AS amount,
 *	                      COALESCE((<counts_when>), false) AS counts,
 *	                      0 AS items_out, ..., <the row's charge> AS amount_billed,
 *	                      <its payment> AS amount_paid,
 *	                      <what it leaves owed> AS balance_owed FROM <table> r
 *
 * An open loan is in one state, the first that holds of lost, claims
 * returned and long overdue, else out (and overdue when its due date has
 * passed, counted when read); items_out counts those out and the states in
 * out_includes.  What a money row leaves owed is its charge minus its
 * payment, or the library system's own outstanding column when it has one.
 * patron_id (and xact_id) keep the table's own type, so that comparing them
 * with a bigint uses the table's index.
 */
char *
mapping_view_sql(const MappingSpec *m, const char *rel)
{
	StringInfoData sql;
	const char *zero_amounts = "0::pg_catalog.numeric AS amount_billed, 0::pg_catalog.numeric AS amount_paid, "
		"0::pg_catalog.numeric AS balance_owed";

	initStringInfo(&sql);
	switch (m->kind)
	{
		case MAP_PATRONS:
			appendStringInfo(&sql, "SELECT p.%s AS patron_id, %s AS barcode, %s AS display_name, "
							 "%s AS is_deleted FROM %s p",
							 quote_identifier(m->id_column),
							 m->barcode_column ? psprintf("p.%s", quote_identifier(m->barcode_column))
							 : "NULL::pg_catalog.text",
							 display_name_sql(m->name_columns, quote_identifier(m->id_column), "p"),
							 condition_or(m->deleted_condition, "false"), rel);
			break;
		case MAP_CARDS:
			appendStringInfo(&sql, "SELECT c.%s AS patron_id, c.%s AS barcode, %s AS is_active, "
							 "%s AS card_id FROM %s c",
							 quote_identifier(m->patron_column), quote_identifier(m->barcode_column),
							 condition_or(m->condition, "true"),
							 m->card_id_column ? psprintf("c.%s::pg_catalog.int8", quote_identifier(m->card_id_column)) :
							 "NULL::pg_catalog.int8", rel);
			break;
		case MAP_CIRCULATIONS:
			{
				const char *open = condition_or(m->condition, "true");
				const char *lost = condition_or(m->lost_condition, "false");
				const char *claims = condition_or(m->claims_returned_condition, "false");
				const char *longo = condition_or(m->long_overdue_condition, "false");
				char	   *in_claims = psprintf("NOT %s AND %s", lost, claims);
				char	   *in_long = psprintf("NOT %s AND NOT %s AND %s", lost, claims, longo);
				StringInfoData out;

				/* items out: every open loan, but for the states not counted as out */
				initStringInfo(&out);
				appendStringInfoString(&out, open);
				if (!includes(m->out_includes, loan_states[LOAN_LOST]))
					appendStringInfo(&out, " AND NOT %s", lost);
				if (!includes(m->out_includes, loan_states[LOAN_CLAIMS_RETURNED]))
					appendStringInfo(&out, " AND NOT (%s)", in_claims);
				if (!includes(m->out_includes, loan_states[LOAN_LONG_OVERDUE]))
					appendStringInfo(&out, " AND NOT (%s)", in_long);
				appendStringInfo(&sql,
								 "SELECT r.%s AS patron_id, r.%s AS due, %s AS is_open, %s AS is_lost, "
								 "%s AS is_claims_returned, %s AS is_long_overdue, %s AS is_renewal, "
								 "CASE WHEN %s THEN 1 ELSE 0 END AS items_out, "
								 "CASE WHEN %s AND %s THEN 1 ELSE 0 END AS items_lost, "
								 "CASE WHEN %s AND %s THEN 1 ELSE 0 END AS items_claims_returned, "
								 "CASE WHEN %s AND %s THEN 1 ELSE 0 END AS items_long_overdue, "
								 "%s FROM %s r",
								 quote_identifier(m->patron_column), quote_identifier(m->due_column),
								 open, lost, claims, longo, condition_or(m->renewal_condition, "false"),
								 out.data, open, lost, open, in_claims, open, in_long, zero_amounts, rel);
				break;
			}
		case MAP_MONEY:
			{
				const char *counts = condition_or(m->condition, "true");
				char	   *amount = psprintf("r.%s::pg_catalog.numeric", quote_identifier(m->amount_column));
				const char *zero = "0::pg_catalog.numeric";
				char	   *billed;
				char	   *paid;
				char	   *owed;

				if (strcmp(m->money_kind, "charge") == 0)
				{
					billed = psprintf("CASE WHEN %s THEN %s ELSE %s END", counts, amount, zero);
					paid = (char *) zero;
					owed = billed;
				}
				else if (strcmp(m->money_kind, "payment") == 0)
				{
					billed = (char *) zero;
					paid = psprintf("CASE WHEN %s THEN %s ELSE %s END", counts, amount, zero);
					owed = psprintf("CASE WHEN %s THEN OPERATOR(pg_catalog.-) %s ELSE %s END", counts, amount, zero);
				}
				else
				{
					/* signed: charges positive, credits negative */
					billed = psprintf("CASE WHEN %s AND %s OPERATOR(pg_catalog.>) 0 THEN %s ELSE %s END",
									  counts, amount, amount, zero);
					paid = psprintf("CASE WHEN %s AND %s OPERATOR(pg_catalog.<) 0 "
									"THEN OPERATOR(pg_catalog.-) %s ELSE %s END",
									counts, amount, amount, zero);
					owed = psprintf("CASE WHEN %s THEN %s ELSE %s END", counts, amount, zero);
				}
				if (m->outstanding_column)
					owed = psprintf("CASE WHEN %s THEN COALESCE(r.%s::pg_catalog.numeric, %s) ELSE %s END",
									counts, quote_identifier(m->outstanding_column), zero, zero);
				appendStringInfo(&sql,
								 "SELECT r.%s AS %s, %s AS amount, %s AS counts, "
								 "0 AS items_out, 0 AS items_lost, 0 AS items_claims_returned, "
								 "0 AS items_long_overdue, %s AS amount_billed, %s AS amount_paid, "
								 "%s AS balance_owed FROM %s r",
								 quote_identifier(m->patron_column), m->via ? "xact_id" : "patron_id",
								 amount, counts, billed, paid, owed, rel);
				break;
			}
	}
	return sql.data;
}

/* "<alias>.items_out, <alias>.items_lost, ...": the figures of a row (alias NULL: the bare names). */
static char *
figures_of(const char *alias)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int f = 0; f < N_FIGURES; f++)
		appendStringInfo(&s, "%s%s%s%s", f ? ", " : "", alias ? alias : "", alias ? "." : "",
						 figure_names[f]);
	return s.data;
}

/* "sum(<alias>.items_out)::int8 AS items_out, ...": the figures summed, named. */
static char *
figure_sums(const char *alias)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int f = 0; f < N_FIGURES; f++)
		appendStringInfo(&s, "%spg_catalog.sum(%s.%s)::%s AS %s", f ? ", " : "", alias,
						 figure_names[f], figure_type(f), figure_names[f]);
	return s.data;
}

/* "0::int8 AS items_out, ...": no figures. */
static char *
figure_zeros(void)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int f = 0; f < N_FIGURES; f++)
		appendStringInfo(&s, "%s0::%s AS %s", f ? ", " : "", figure_type(f), figure_names[f]);
	return s.data;
}

/* "items_out = <target>.items_out + <delta>.items_out, ...", or "= $k" from first_param. */
static char *
figure_adds(const char *target, const char *delta, int first_param)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int f = 0; f < N_FIGURES; f++)
	{
		appendStringInfo(&s, "%s%s = %s%s%s OPERATOR(pg_catalog.+) ", f ? ", " : "", figure_names[f],
						 target ? target : "", target ? "." : "", figure_names[f]);
		if (delta)
			appendStringInfo(&s, "%s.%s", delta, figure_names[f]);
		else
			appendStringInfo(&s, "$%d", first_param + f);
	}
	return s.data;
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
 * "patron_group.ils_rows(<source>, <by_patron>, <by_xact>) AS alias(...)":
 * the rows of an attachment's mapping view (ILS_MAPPING), of its transaction
 * table (ILS_VIA: xact_id, patron_id) or of its patron table's primary card
 * column (ILS_PRIMARY_CARD: patron_id, primary_card), read as the table's
 * owner (ils_rows.c), for a statement run as the extension owner, with the
 * column list its function scan needs.  by_patron and by_xact are SQL
 * expressions of type bigint[] (or NULL: all).
 */
char *
ils_rows_sql(const Attachment *a, IlsSource source, const char *alias,
			 const char *by_patron, const char *by_xact)
{
	StringInfoData cols;
	Oid			relid = source == ILS_VIA ? a->via_relid : source == ILS_MAPPING ? a->mapping : a->relid;

	initStringInfo(&cols);
	if (source == ILS_VIA)
		appendStringInfoString(&cols, "xact_id pg_catalog.int8, patron_id pg_catalog.int8");
	else if (source == ILS_PRIMARY_CARD)
		appendStringInfoString(&cols, "patron_id pg_catalog.int8, primary_card pg_catalog.int8");
	else
	{
		Relation	view = relation_open(relid, AccessShareLock);
		TupleDesc	desc = RelationGetDescr(view);

		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attisdropped)
				continue;
			appendStringInfo(&cols, "%s%s %s", cols.len ? ", " : "", quote_identifier(NameStr(att->attname)),
							 format_type_extended(att->atttypid, att->atttypmod,
												  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
		}
		relation_close(view, AccessShareLock);
	}
	return psprintf(PG_SCHEMA ".ils_rows(%u::pg_catalog.oid, %s, %s) AS %s(%s)",
					relid, by_patron ? by_patron : "NULL::pg_catalog.int8[]",
					by_xact ? by_xact : "NULL::pg_catalog.int8[]", alias, cols.data);
}

/*
 * SQL: each row of an attached table as its mapping view gives it, with the
 * patron it counts for:
 *
 *	 SELECT m.patron_id::int8 AS p, m.items_out, ..., m.balance_owed FROM <mapping> m
 *	        [WHERE m.patron_id = ANY ($1)]
 *
 * or, for money naming a transaction, joined to the transaction table:
 *
 *	 SELECT v.<patron>::int8 AS p, m.items_out, ... FROM <mapping> m
 *	   JOIN <transactions> v ON v.<id> = m.xact_id [WHERE v.<patron> = ANY ($1)]
 */
static char *
source_rows_sql(const Attachment *s, bool filtered)
{
	const char *filter = filtered ? "$1" : NULL;

	if (s->via_relid == InvalidOid)
		return psprintf("SELECT m.patron_id::pg_catalog.int8 AS p, %s FROM %s",
						figures_of("m"), ils_rows_sql(s, ILS_MAPPING, "m", filter, NULL));
	/* the money of the transactions the patrons have, not all money */
	return psprintf("SELECT v.patron_id AS p, %s FROM %s JOIN %s ON m.xact_id OPERATOR(pg_catalog.=) v.xact_id",
					figures_of("m"), ils_rows_sql(s, ILS_VIA, "v", filter, NULL),
					ils_rows_sql(s, ILS_MAPPING, "m", NULL,
								 filtered ? psprintf("(SELECT pg_catalog.array_agg(t.xact_id) FROM %s)",
													 ils_rows_sql(s, ILS_VIA, "t", filter, NULL)) : NULL));
}

/*
 * SQL: the per-patron totals the attached tables hold (verify, rebuild),
 * only of the patrons in $1 (int8[]) when filtered:
 *
 *	 SELECT d.p, sum(d.items_out)::int8 AS items_out, ..., sum(d.balance_owed) AS balance_owed
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
		appendStringInfo(&rows, "SELECT NULL::pg_catalog.int8 AS p, %s WHERE false", figure_zeros());
	return psprintf("SELECT d.p, %s FROM (%s) d WHERE d.p IS NOT NULL GROUP BY d.p",
					figure_sums("d"), rows.data);
}

/*
 * SQL counting the overdue loans of the patron patron_expr at read time:
 *
 *	 (SELECT count(*) FROM <mapping> overdue_loan
 *	   WHERE overdue_loan.patron_id = <patron_expr> AND overdue_loan.is_open
 *	     AND NOT overdue_loan.is_lost AND NOT overdue_loan.is_claims_returned
 *	     AND NOT overdue_loan.is_long_overdue AND overdue_loan.due < now()) + ...
 *
 * Overdue depends on the clock, not on a row change, so it is never stored.
 */
char *
overdue_sql(List *sources, const char *patron_expr, bool as_owner)
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
		appendStringInfo(&sql, "%s(SELECT pg_catalog.count(*) FROM %s "
						 "WHERE overdue_loan.patron_id OPERATOR(pg_catalog.=) %s "
						 "AND overdue_loan.is_open AND NOT overdue_loan.is_lost "
						 "AND NOT overdue_loan.is_claims_returned AND NOT overdue_loan.is_long_overdue "
						 "AND overdue_loan.due OPERATOR(pg_catalog.<) pg_catalog.now())",
						 sql.len ? " OPERATOR(pg_catalog.+) " : "",
						 as_owner ? ils_rows_sql(s, ILS_MAPPING, "overdue_loan",
												 psprintf("ARRAY[%s]::pg_catalog.int8[]", patron_expr), NULL)
						 : psprintf("%s overdue_loan", s->mapping_name),
						 patron_expr);
	}
	if (sql.len == 0)
		appendStringInfoString(&sql, "0::pg_catalog.int8");
	return sql.data;
}

/*
 * SQL for a patron's barcode, over alias, a row of the patron mapping view:
 * the patron's own (p.barcode::text), or the primary card's when the
 * patron table names one (primary_card_column) and it is active, or an
 * active card's:
 *
 *	 COALESCE((SELECT c.barcode::text FROM <card mapping> c JOIN <patrons> pt
 *	             ON c.card_id = pt.<primary card> WHERE pt.<id> = <alias>.patron_id AND c.is_active),
 *	          (SELECT max(c.barcode::text) FROM <card mapping> c
 *	            WHERE c.patron_id = <alias>.patron_id AND c.is_active))
 */
char *
barcode_sql(const Mapping *m, const char *alias, bool as_owner)
{
	char	   *cards = NULL;

	if (m->patrons && m->patrons->barcode_column)
		return psprintf("%s.barcode::pg_catalog.text", alias);
	if (m->cards)
		cards = as_owner ?
			ils_rows_sql(m->cards, ILS_MAPPING, "c", psprintf("ARRAY[%s.patron_id]::pg_catalog.int8[]", alias), NULL) :
			psprintf("%s c", m->cards->mapping_name);
	if (m->cards && m->cards->primary_card_name)
		return psprintf("COALESCE((SELECT c.barcode::pg_catalog.text FROM %s JOIN %s "
						"ON c.card_id OPERATOR(pg_catalog.=) pt.primary_card "
						"WHERE pt.patron_id OPERATOR(pg_catalog.=) %s.patron_id AND c.is_active), "
						"(SELECT pg_catalog.max(c.barcode::pg_catalog.text) FROM %s "
						"WHERE c.patron_id OPERATOR(pg_catalog.=) %s.patron_id AND c.is_active))",
						cards,
						as_owner ?
						ils_rows_sql(m->patrons, ILS_PRIMARY_CARD, "pt", psprintf("ARRAY[%s.patron_id]::pg_catalog.int8[]", alias), NULL) :
						psprintf("(SELECT p.%s::pg_catalog.int8 AS patron_id, p.%s::pg_catalog.int8 AS primary_card "
								 "FROM %s p) pt", m->patrons->id_column,
								 quote_identifier(m->cards->primary_card_name), m->patrons->relname),
						alias, cards, alias);
	if (m->cards)
		return psprintf("(SELECT pg_catalog.max(c.barcode::pg_catalog.text) FROM %s "
						"WHERE c.patron_id OPERATOR(pg_catalog.=) %s.patron_id AND c.is_active)",
						cards, alias);
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
 *	 ) s WHERE NOT EXISTS (SELECT FROM <patron mapping> d WHERE d.patron_id = s.patron AND d.is_deleted)
 *	 ORDER BY 1 LIMIT 2
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
	/* a patron the library system deleted is found by no barcode */
	appendStringInfo(&sql, ") s WHERE NOT EXISTS (SELECT FROM %s d "
					 "WHERE d.patron_id OPERATOR(pg_catalog.=) s.patron AND d.is_deleted) "
					 "ORDER BY 1 LIMIT 2", m->patrons->mapping_name);
	return sql.data;
}

/*
 * SQL: the money of the transactions in $1 (int8[]), over every money table
 * naming this transaction table, one row per transaction:
 *
 *	 SELECT d.x, sum(d.items_out)::int8, ..., sum(d.balance_owed) FROM (
 *	   SELECT m.xact_id::int8 AS x, m.items_out, ... FROM <mapping> m
 *	    WHERE m.xact_id = ANY ($1) UNION ALL ...) d GROUP BY d.x
 */
char *
money_of_xacts_sql(List *sources)
{
	StringInfoData rows;
	ListCell   *lc;

	initStringInfo(&rows);
	foreach(lc, sources)
		appendStringInfo(&rows, "%sSELECT m.xact_id::pg_catalog.int8 AS x, %s FROM %s",
						 rows.len ? " UNION ALL " : "", figures_of("m"),
						 ils_rows_sql((Attachment *) lfirst(lc), ILS_MAPPING, "m", NULL, "$1"));
	return psprintf("SELECT d.x, %s FROM (%s) d GROUP BY d.x", figure_sums("d"), rows.data);
}

/*
 * The SQL of the library system's households (households.c), built from the
 * patron table's mapping (a) and its group_column and lead_column:
 *
 *	HH_OF_PATRON		a patron's household ($1 the patron)
 *	HH_WRITE			set a patron's household to $2, unless deleted
 *	HH_RESET			give a patron the household column's default, unless deleted
 *	HH_WRITE_LEAD		set a patron's lead flag to $3, unless deleted
 *	HH_LEAD_OF_PATRON	a patron's lead flag ($1)
 *	HH_CHANGES			the patrons whose household or lead a statement changed
 *						(its transition tables): id, household, lead, moved
 *	HH_ACCOUNT			a patron's group and whether deleted ($2), as the
 *						extension owner reads it (through ils_rows())
 *	HH_OTHERS			the other live patrons of household $1 ($2 the patron)
 *	HH_IMPORT			the households of two patrons or more: arrays of
 *						household, patron and lead, by patron
 *
 * All but HH_CHANGES and HH_ACCOUNT run on the patron table as its owner.
 */
char *
household_sql(const Attachment *a, HouseholdSql which)
{
	const char *col = quote_identifier(a->group_name);
	const char *lead = a->lead_name ? quote_identifier(a->lead_name) : NULL;
	char	   *alive = psprintf("NOT EXISTS (SELECT FROM %s v WHERE v.patron_id OPERATOR(pg_catalog.=) p.%s "
								 "AND v.is_deleted)", a->mapping_name, a->id_column);

	switch (which)
	{
		case HH_OF_PATRON:
			return psprintf("SELECT p.%s::pg_catalog.int8 FROM %s p WHERE p.%s OPERATOR(pg_catalog.=) $1",
							col, a->relname, a->id_column);
		case HH_WRITE:
			return psprintf("UPDATE %s p SET %s = $2 WHERE p.%s OPERATOR(pg_catalog.=) $1 "
							"AND p.%s IS DISTINCT FROM $2 AND %s",
							a->relname, col, a->id_column, col, alive);
		case HH_RESET:
			return psprintf("UPDATE %s p SET %s = DEFAULT WHERE p.%s OPERATOR(pg_catalog.=) $1 AND %s",
							a->relname, col, a->id_column, alive);
		case HH_WRITE_LEAD:
			return psprintf("UPDATE %s p SET %s = $3 WHERE p.%s OPERATOR(pg_catalog.=) $1 "
							"AND p.%s IS DISTINCT FROM $3 AND %s",
							a->relname, lead, a->id_column, lead, alive);
		case HH_LEAD_OF_PATRON:
			return psprintf("SELECT COALESCE(p.%s, false) FROM %s p WHERE p.%s OPERATOR(pg_catalog.=) $1",
							lead, a->relname, a->id_column);
		case HH_CHANGES:
			return psprintf("SELECT n.%s::pg_catalog.int8, n.%s::pg_catalog.int8, %s, o.%s IS DISTINCT FROM n.%s "
							"FROM patron_group_old o JOIN patron_group_new n ON o.%s OPERATOR(pg_catalog.=) n.%s "
							"WHERE o.%s IS DISTINCT FROM n.%s%s ORDER BY 1",
							a->id_column, col, lead ? psprintf("COALESCE(n.%s, false)", lead) : "false",
							col, col, a->id_column, a->id_column, col, col,
							lead ? psprintf(" OR o.%s IS DISTINCT FROM n.%s", lead, lead) : "");
		case HH_ACCOUNT:
			return psprintf("SELECT a.group_id, v.is_deleted FROM " PG_SCHEMA ".accounts a "
							"JOIN %s ON v.patron_id OPERATOR(pg_catalog.=) a.patron_id "
							"WHERE a.patron_id OPERATOR(pg_catalog.=) $2",
							ils_rows_sql(a, ILS_MAPPING, "v", "ARRAY[$2]::pg_catalog.int8[]", NULL));
		case HH_OTHERS:
			return psprintf("SELECT pg_catalog.array_agg(p.%s::pg_catalog.int8) FROM %s p "
							"JOIN %s v ON v.patron_id OPERATOR(pg_catalog.=) p.%s "
							"WHERE p.%s OPERATOR(pg_catalog.=) $1 AND p.%s OPERATOR(pg_catalog.<>) $2 "
							"AND NOT v.is_deleted",
							a->id_column, a->relname, a->mapping_name, a->id_column, col, a->id_column);
		case HH_IMPORT:
			return psprintf("SELECT pg_catalog.array_agg(household ORDER BY patron), "
							"pg_catalog.array_agg(patron ORDER BY patron), pg_catalog.array_agg(lead ORDER BY patron) "
							"FROM (SELECT p.%s::pg_catalog.int8 AS household, p.%s::pg_catalog.int8 AS patron, "
							"%s AS lead, pg_catalog.count(*) OVER (PARTITION BY p.%s) AS n "
							"FROM %s p JOIN %s v ON v.patron_id OPERATOR(pg_catalog.=) p.%s "
							"WHERE p.%s IS NOT NULL AND NOT v.is_deleted) h "
							"WHERE n OPERATOR(pg_catalog.>=) 2",
							col, a->id_column, lead ? psprintf("COALESCE(p.%s, false)", lead) : "false",
							col, a->relname, a->mapping_name, a->id_column, col);
	}
	elog(ERROR, "unknown household statement %d", (int) which);
	return NULL;				/* keep compiler quiet */
}

/*
 * SQL: the consent of kind (circulations, bills) of the account aliased
 * alias is in force, as patron_group.consent_in_force() says, the one place
 * the rule is written (the install script; health() calls it too):
 *
 *	 patron_group.consent_in_force(a.share_<kind>, a.share_<kind>_until)
 *
 * which is given AND (until IS NULL OR until > statement_timestamp()): a
 * consent is compared with the time the statement started, not the
 * transaction's, so no statement that starts after a consent ends sees
 * under it.  PostgreSQL inlines so simple an SQL function where it is used.
 */
char *
consent_sql(const char *alias, const char *kind)
{
	return psprintf(PG_SCHEMA ".consent_in_force(%s.share_%s, %s.share_%s_until)",
					alias, kind, alias, kind);
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
	char	   *overdue = overdue_sql(sources, "m.patron_id", true);

	return psprintf("SELECT v.name, v.figure, v.lim, g.group_id "
					"FROM " PG_SCHEMA ".accounts a "
					"JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) a.group_id "
					"LEFT JOIN " PG_SCHEMA ".limits d ON d.group_id IS NULL "
					"LEFT JOIN " PG_SCHEMA ".limits o ON o.group_id OPERATOR(pg_catalog.=) g.group_id "
					"CROSS JOIN LATERAL (VALUES "
					"(1, 'balance_owed', g.balance_owed, "
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
 *	                     m.balance_owed AS amt
 *	                FROM <mapping> m JOIN <transactions> t ON t.<id> = m.xact_id
 *	               WHERE t.<patron> = ANY ($1)
 *	              UNION ALL
 *	              SELECT NULL, NULL, m.patron_id::int8, m.balance_owed
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
							 "SELECT %u::pg_catalog.oid AS tt, t.xact_id AS xact, t.patron_id AS patron, "
							 "m.balance_owed AS amt "
							 "FROM %s JOIN %s ON t.xact_id OPERATOR(pg_catalog.=) m.xact_id",
							 s->via_relid, ils_rows_sql(s, ILS_VIA, "t", "$1", NULL),
							 ils_rows_sql(s, ILS_MAPPING, "m", NULL,
										  psprintf("(SELECT pg_catalog.array_agg(t2.xact_id) FROM %s)",
												   ils_rows_sql(s, ILS_VIA, "t2", "$1", NULL))));
		else
			appendStringInfo(&lines,
							 "SELECT NULL::pg_catalog.oid, NULL::pg_catalog.int8, "
							 "m.patron_id::pg_catalog.int8, m.balance_owed FROM %s",
							 ils_rows_sql(s, ILS_MAPPING, "m", "$1", NULL));
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
group_members_sql(const Mapping *m, bool as_owner)
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
				   "CASE WHEN %s THEN a.items_claims_returned END AS items_claims_returned, "
				   "CASE WHEN %s THEN a.items_long_overdue END AS items_long_overdue, "
				   "CASE WHEN %s THEN a.balance_owed END AS balance_owed "
				   "FROM " PG_SCHEMA ".accounts a "
				   "JOIN %s ON p.patron_id OPERATOR(pg_catalog.=) a.patron_id "
				   "WHERE (a.patron_id OPERATOR(pg_catalog.=) $1 "
				   "OR a.group_id OPERATOR(pg_catalog.=) (SELECT group_id FROM " PG_SCHEMA ".accounts "
				   "WHERE patron_id OPERATOR(pg_catalog.=) $1)) "
				   "AND ($2 IS NULL OR a.patron_id OPERATOR(pg_catalog.=) $2 OR (SELECT is_lead FROM "
				   PG_SCHEMA ".accounts WHERE patron_id OPERATOR(pg_catalog.=) $2))) "
				   "SELECT * FROM ("
				   "SELECT g.group_id, g.label, g.created_at, m.patron_id AS member_id, m.barcode, "
				   "m.display_name, m.is_lead, m.items_out, m.items_overdue, m.items_lost, "
				   "m.items_claims_returned, m.items_long_overdue, m.balance_owed, 0 AS ord "
				   "FROM m LEFT JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) m.group_id "
				   "UNION ALL "
				   "SELECT g.group_id, g.label, g.created_at, NULL, NULL, 'Group total', NULL, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.items_out, pg_catalog.sum(m.items_out)::pg_catalog.int8) "
				   "ELSE pg_catalog.sum(m.items_out)::pg_catalog.int8 END, "
				   "pg_catalog.sum(m.items_overdue)::pg_catalog.int8, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.items_lost, pg_catalog.sum(m.items_lost)::pg_catalog.int8) "
				   "ELSE pg_catalog.sum(m.items_lost)::pg_catalog.int8 END, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.items_claims_returned, "
				   "pg_catalog.sum(m.items_claims_returned)::pg_catalog.int8) "
				   "ELSE pg_catalog.sum(m.items_claims_returned)::pg_catalog.int8 END, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.items_long_overdue, "
				   "pg_catalog.sum(m.items_long_overdue)::pg_catalog.int8) "
				   "ELSE pg_catalog.sum(m.items_long_overdue)::pg_catalog.int8 END, "
				   "CASE WHEN $2 IS NULL THEN COALESCE(g.balance_owed, "
				   "pg_catalog.sum(m.balance_owed)) ELSE pg_catalog.sum(m.balance_owed) END, 1 "
				   "FROM m LEFT JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) m.group_id "
				   "GROUP BY g.group_id HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0) x "
				   "ORDER BY x.ord, x.is_lead DESC, x.display_name COLLATE \"und-x-icu\", x.member_id",
				   barcode_sql(m, "p", as_owner), "p.display_name",
				   see_circ, see_circ, overdue_sql(m->totals, "a.patron_id", as_owner),
				   see_circ, see_circ, see_circ, see_bills,
				   as_owner ? ils_rows_sql(m->patrons, ILS_MAPPING, "p",
										   "(SELECT pg_catalog.array_agg(x.patron_id) FROM " PG_SCHEMA ".accounts x "
										   "WHERE x.patron_id OPERATOR(pg_catalog.=) $1 "
										   "OR x.group_id OPERATOR(pg_catalog.=) (SELECT y.group_id FROM "
										   PG_SCHEMA ".accounts y WHERE y.patron_id OPERATOR(pg_catalog.=) $1))",
										   NULL)
				   : psprintf("%s p", m->patrons->mapping_name));
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
patron_details_sql(const Mapping *m, bool as_owner)
{
	return psprintf("SELECT x.b, x.n, (%s)::pg_catalog.int8 FROM (SELECT 1) o LEFT JOIN "
					"(SELECT %s AS b, p.display_name AS n FROM %s "
					"WHERE p.patron_id OPERATOR(pg_catalog.=) $1) x ON true",
					overdue_sql(m->totals, "$1", as_owner), barcode_sql(m, "p", as_owner),
					as_owner ? ils_rows_sql(m->patrons, ILS_MAPPING, "p", "ARRAY[$1]::pg_catalog.int8[]", NULL)
					: psprintf("%s p", m->patrons->mapping_name));
}

/*
 * SQL: who patron $1 is, to confirm a move: id, barcode, display name,
 * group and the group's size, read with the caller's rights.
 */
char *
find_patron_sql(const Mapping *m, bool as_owner)
{
	return psprintf("SELECT p.patron_id::pg_catalog.int8, %s, p.display_name, a.group_id, g.member_count "
					"FROM %s JOIN " PG_SCHEMA ".accounts a ON a.patron_id OPERATOR(pg_catalog.=) p.patron_id "
					"LEFT JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) a.group_id "
					"WHERE p.patron_id OPERATOR(pg_catalog.=) $1",
					barcode_sql(m, "p", as_owner),
					as_owner ? ils_rows_sql(m->patrons, ILS_MAPPING, "p", "ARRAY[$1]::pg_catalog.int8[]", NULL)
					: psprintf("%s p", m->patrons->mapping_name));
}

/*
 * SQL: write the expected totals (expected_sql, as expected_totals_sql
 * makes them) into the accounts that differ, of everyone or of the patrons
 * in $1 (int8[]):
 *
 *	 UPDATE accounts a SET items_out = x.items_out, ... FROM (
 *	   SELECT a2.patron_id, COALESCE(e.items_out, 0) AS items_out, ... FROM accounts a2
 *	     LEFT JOIN (<expected>) e ON e.p = a2.patron_id [WHERE a2.patron_id = ANY ($1)]) x
 *	  WHERE a.patron_id = x.patron_id AND (a.items_out, ...) IS DISTINCT FROM (x.items_out, ...)
 */
char *
recount_accounts_sql(const char *expected_sql, bool filtered)
{
	StringInfoData set,
				cols;

	initStringInfo(&set);
	initStringInfo(&cols);
	for (int f = 0; f < N_FIGURES; f++)
	{
		appendStringInfo(&set, "%s%s = x.%s", f ? ", " : "", figure_names[f], figure_names[f]);
		appendStringInfo(&cols, ", COALESCE(e.%s, 0) AS %s", figure_names[f], figure_names[f]);
	}
	return psprintf("UPDATE " PG_SCHEMA ".accounts a SET %s "
					"FROM (SELECT a2.patron_id%s "
					"FROM " PG_SCHEMA ".accounts a2 LEFT JOIN (%s) e ON e.p OPERATOR(pg_catalog.=) a2.patron_id %s) x "
					"WHERE a.patron_id OPERATOR(pg_catalog.=) x.patron_id "
					"AND (%s) IS DISTINCT FROM (%s)",
					set.data, cols.data, expected_sql,
					filtered ? "WHERE a2.patron_id OPERATOR(pg_catalog.=) ANY ($1)" : "",
					figures_of("a"), figures_of("x"));
}

/*
 * SQL: sum the accounts into the groups of everyone, or of the patrons in
 * $1 (int8[]), writing the groups that differ:
 *
 *	 UPDATE groups g SET member_count = s.n, lead_count = s.leads, items_out = s.items_out, ...
 *	   FROM (SELECT group_id, count(*) AS n, ..., sum(items_out)::int8 AS items_out, ... FROM accounts
 *	          WHERE group_id = ANY (ARRAY(SELECT group_id FROM accounts [WHERE patron_id = ANY ($1)]))
 *	          GROUP BY group_id) s
 *	  WHERE g.group_id = s.group_id AND (g.member_count, ...) IS DISTINCT FROM (s.n, ...)
 */
char *
recount_groups_sql(bool filtered)
{
	StringInfoData set;

	initStringInfo(&set);
	for (int f = 0; f < N_FIGURES; f++)
		appendStringInfo(&set, ", %s = s.%s", figure_names[f], figure_names[f]);
	return psprintf("UPDATE " PG_SCHEMA ".groups g SET member_count = s.n, lead_count = s.leads%s "
					"FROM (SELECT a.group_id, pg_catalog.count(*)::int4 AS n, "
					"pg_catalog.count(*) FILTER (WHERE a.is_lead)::int4 AS leads, %s "
					"FROM " PG_SCHEMA ".accounts a WHERE a.group_id OPERATOR(pg_catalog.=) ANY "
					"(ARRAY(SELECT group_id FROM " PG_SCHEMA ".accounts %s)) GROUP BY a.group_id) s "
					"WHERE g.group_id OPERATOR(pg_catalog.=) s.group_id "
					"AND (g.member_count, g.lead_count, %s) IS DISTINCT FROM (s.n, s.leads, %s)",
					set.data, figure_sums("a"),
					filtered ? "WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1)" : "",
					figures_of("g"), figures_of("s"));
}

/*
 * SQL of verify(): every recorded figure that differs from a fresh count,
 * as (scope, id, item, recorded, actual), patrons first:
 *
 *	 WITH e AS (<expected>), a AS (accounts joined to e),
 *	      s AS (the accounts summed per group)
 *	 SELECT 'patron', a.patron_id, v.item, v.recorded, v.actual FROM a,
 *	        LATERAL (VALUES ('items_out', a.items_out, COALESCE(e.items_out, 0)), ...) v
 *	  WHERE v.recorded IS DISTINCT FROM v.actual
 *	 UNION ALL
 *	 SELECT 'group', g.group_id, ... ('member_count', ...), ('lead_count', ...), ('items_out', ...) ...
 */
char *
verify_sql(const char *expected_sql)
{
	StringInfoData pv,
				gv;

	initStringInfo(&pv);
	initStringInfo(&gv);
	for (int f = 0; f < N_FIGURES; f++)
	{
		appendStringInfo(&pv, "%s('%s', a.%s::pg_catalog.numeric, COALESCE(e.%s, 0)::pg_catalog.numeric)",
						 f ? ", " : "", figure_names[f], figure_names[f], figure_names[f]);
		appendStringInfo(&gv, ", ('%s', g.%s::pg_catalog.numeric, COALESCE(s.%s, 0)::pg_catalog.numeric)",
						 figure_names[f], figure_names[f], figure_names[f]);
	}
	return psprintf("WITH e AS (%s), "
					"s AS (SELECT a.group_id, pg_catalog.count(*) AS n, "
					"pg_catalog.count(*) FILTER (WHERE a.is_lead) AS leads, %s "
					"FROM " PG_SCHEMA ".accounts a WHERE a.group_id IS NOT NULL GROUP BY a.group_id) "
					"SELECT 'patron'::pg_catalog.text, a.patron_id, v.item, v.recorded, v.actual "
					"FROM " PG_SCHEMA ".accounts a LEFT JOIN e ON e.p OPERATOR(pg_catalog.=) a.patron_id, "
					"LATERAL (VALUES %s) v(item, recorded, actual) "
					"WHERE v.recorded IS DISTINCT FROM v.actual "
					"UNION ALL "
					"SELECT 'group', g.group_id, v.item, v.recorded, v.actual "
					"FROM " PG_SCHEMA ".groups g LEFT JOIN s USING (group_id), "
					"LATERAL (VALUES ('member_count', g.member_count::pg_catalog.numeric, "
					"COALESCE(s.n, 0)::pg_catalog.numeric), "
					"('lead_count', g.lead_count, COALESCE(s.leads, 0))%s) v(item, recorded, actual) "
					"WHERE v.recorded IS DISTINCT FROM v.actual "
					"ORDER BY 1 DESC, 2, 3",
					expected_sql, figure_sums("a"), pv.data, gv.data);
}

/*
 * SQL: add a delta to one account (key patron_id) or one group (key
 * group_id), the figures as $2 ... $8:
 *
 *	 UPDATE accounts SET items_out = items_out + $2, ... WHERE patron_id = $1 RETURNING group_id
 */
char *
apply_one_sql(const char *table, const char *key, bool returning_group)
{
	return psprintf("UPDATE " PG_SCHEMA ".%s SET %s WHERE %s OPERATOR(pg_catalog.=) $1%s",
					table, figure_adds(NULL, NULL, 2), key, returning_group ? " RETURNING group_id" : "");
}

/* The arrays $1 (keys) and $2 ... $8 (the figures) as rows d(k, items_out, ...). */
static char *
delta_rows(void)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoString(&s, "ROWS FROM (pg_catalog.unnest($1)");
	for (int f = 0; f < N_FIGURES; f++)
		appendStringInfo(&s, ", pg_catalog.unnest($%d)", f + 2);
	appendStringInfo(&s, ") AS d(k, %s)", figures_of(NULL));
	return s.data;
}

/*
 * SQL: add the deltas of several accounts (arrays of keys and figures),
 * returning their sums per group, in group_id order:
 *
 *	 WITH d AS (SELECT * FROM ROWS FROM (unnest($1), ..., unnest($8)) AS d(k, items_out, ...)),
 *	      u AS (UPDATE accounts a SET items_out = a.items_out + d.items_out, ...
 *	             FROM d WHERE a.patron_id = d.k RETURNING a.group_id, d.items_out, ...)
 *	 SELECT u.group_id, sum(u.items_out)::int8, ... FROM u WHERE u.group_id IS NOT NULL
 *	  GROUP BY u.group_id ORDER BY u.group_id
 */
char *
apply_many_accounts_sql(void)
{
	return psprintf("WITH d AS (SELECT * FROM %s), "
					"u AS (UPDATE " PG_SCHEMA ".accounts a SET %s FROM d "
					"WHERE a.patron_id OPERATOR(pg_catalog.=) d.k RETURNING a.group_id, %s) "
					"SELECT u.group_id, %s FROM u WHERE u.group_id IS NOT NULL "
					"GROUP BY u.group_id ORDER BY u.group_id",
					delta_rows(), figure_adds("a", "d", 0), figures_of("d"), figure_sums("u"));
}

/* SQL: add the deltas of several groups (arrays of keys and figures). */
char *
apply_many_groups_sql(void)
{
	return psprintf("UPDATE " PG_SCHEMA ".groups g SET %s FROM %s WHERE g.group_id OPERATOR(pg_catalog.=) d.k",
					figure_adds("g", "d", 0), delta_rows());
}

/*
 * SQL: a member joins ($2 = 1) or leaves ($2 = -1) group $1, carrying lead
 * ($3) and figures ($4 ...), returning how many members are left:
 *
 *	 UPDATE groups SET member_count = member_count + $2, lead_count = lead_count + $3,
 *	        items_out = items_out + $4, ... WHERE group_id = $1 RETURNING member_count
 */
char *
adjust_group_sql(void)
{
	return psprintf("UPDATE " PG_SCHEMA ".groups SET member_count = member_count OPERATOR(pg_catalog.+) $2, "
					"lead_count = lead_count OPERATOR(pg_catalog.+) $3, %s "
					"WHERE group_id OPERATOR(pg_catalog.=) $1 RETURNING member_count",
					figure_adds(NULL, NULL, 4));
}

/* ---------------------------------------------------------------------------
 * The reporting views, as plain SQL over the attached tables
 * ------------------------------------------------------------------------- */

/*
 * SQL: the overdue loans of every circulation table, one row per loan
 * (NULL when none is attached):
 *
 *	 SELECT l.patron_id FROM <circulation mapping> l
 *	  WHERE l.is_open AND NOT l.is_lost AND NOT l.is_claims_returned
 *	    AND NOT l.is_long_overdue AND l.due < now()
 *	 UNION ALL ...
 *
 * The patron column keeps its type, so that a filter or a join on it
 * reaches each table's index.
 */
static char *
overdue_rows_sql(const Mapping *m)
{
	StringInfoData rows;
	ListCell   *lc;

	initStringInfo(&rows);
	foreach(lc, m->totals)
	{
		Attachment *s = lfirst(lc);

		if (s->kind != MAP_CIRCULATIONS)
			continue;
		appendStringInfo(&rows, "%sSELECT l.patron_id FROM %s l WHERE l.is_open AND NOT l.is_lost "
						 "AND NOT l.is_claims_returned AND NOT l.is_long_overdue "
						 "AND l.due OPERATOR(pg_catalog.<) pg_catalog.now()",
						 rows.len ? " UNION ALL " : "", s->mapping_name);
	}
	return rows.len ? rows.data : NULL;
}

/*
 * SQL: the overdue loans of every patron with any, one row per patron:
 *
 *	 SELECT d.patron_id, count(*) AS n FROM (<overdue rows>) d GROUP BY 1
 *
 * Grouped by the patron, so a filter on the patron reaches each table's
 * index, and a report that does not read it leaves it out of the plan.
 */
static char *
overdue_per_patron_sql(const Mapping *m)
{
	char	   *rows = overdue_rows_sql(m);

	if (rows == NULL)
		return NULL;
	return psprintf("SELECT d.patron_id, pg_catalog.count(*) AS n FROM (%s) d GROUP BY 1", rows);
}

/*
 * The joins that give the patron of account alias 'acc' (a bigint patron
 * id) a barcode and a name, and the expressions that read them:
 *
 *	 LEFT JOIN <patron mapping> p ON p.patron_id = <acc>.patron_id
 *	 [LEFT JOIN (SELECT c.patron_id, max(c.barcode::text) AS barcode FROM <card mapping> c
 *	              WHERE c.is_active GROUP BY c.patron_id) bc ON bc.patron_id = <acc>.patron_id]
 *
 * The barcode is the patron table's own, or the greatest active card's, or,
 * where the patron table names a primary card, that card's when it is
 * active.  Both joins give at most one row per patron (a primary key, a
 * grouping), so a report that reads neither name nor barcode has them left
 * out of its plan, and a filter on the patron reaches into them.
 */
static void
patron_joins(const Mapping *m, const char *acc, const char *suffix, StringInfo joins,
			 char **barcode, char **name)
{
	const Attachment *pa = m->patrons;
	const Attachment *c = m->cards;
	char	   *p = psprintf("p%s", suffix);
	char	   *bc = psprintf("bc%s", suffix);

	appendStringInfo(joins, " LEFT JOIN %s %s ON %s.patron_id OPERATOR(pg_catalog.=) %s.patron_id",
					 pa->mapping_name, p, p, acc);
	*name = psprintf("%s.display_name", p);
	if (pa->barcode_column)
		*barcode = psprintf("%s.barcode::pg_catalog.text", p);
	else if (c && c->primary_card_name)
	{
		char	   *pt = psprintf("pt%s", suffix);
		char	   *cp = psprintf("cp%s", suffix);

		appendStringInfo(joins,
						 " LEFT JOIN %s %s ON %s.%s OPERATOR(pg_catalog.=) %s.patron_id"
						 " LEFT JOIN %s %s ON %s.card_id OPERATOR(pg_catalog.=) %s.%s AND %s.is_active"
						 " LEFT JOIN (SELECT c.patron_id, pg_catalog.max(c.barcode::pg_catalog.text) AS barcode "
						 "FROM %s c WHERE c.is_active GROUP BY c.patron_id) %s "
						 "ON %s.patron_id OPERATOR(pg_catalog.=) %s.patron_id",
						 pa->relname, pt, pt, pa->id_column, acc,
						 c->mapping_name, cp, cp, pt, quote_identifier(c->primary_card_name), cp,
						 c->mapping_name, bc, bc, acc);
		*barcode = psprintf("COALESCE(%s.barcode::pg_catalog.text, %s.barcode)", cp, bc);
	}
	else if (c)
	{
		/* one aggregate of the cards, which a report that does not read the barcode leaves out */
		appendStringInfo(joins,
						 " LEFT JOIN (SELECT c.patron_id, pg_catalog.max(c.barcode::pg_catalog.text) AS barcode "
						 "FROM %s c WHERE c.is_active GROUP BY c.patron_id) %s "
						 "ON %s.patron_id OPERATOR(pg_catalog.=) %s.patron_id",
						 c->mapping_name, bc, bc, acc);
		*barcode = psprintf("%s.barcode", bc);
	}
	else
		*barcode = "NULL::pg_catalog.text";
}

/*
 * The columns of member_summary from the account (alias a) and its group
 * (g), from group_id to items_out; whether a consent is in force now, as
 * consent_sql() says.
 */
static const char *
member_columns(void)
{
	return psprintf("a.group_id, g.label AS group_label, a.is_lead, "
					"a.share_circulations, a.share_circulations_until, %s AS circulations_shared_now, "
					"a.share_bills, a.share_bills_until, %s AS bills_shared_now, a.items_out",
					consent_sql("a", "circulations"), consent_sql("a", "bills"));
}

/*
 * SQL of member_summary: one row per account, with the patron's barcode and
 * name, the group's label, consents and whether they are in force, and the
 * figures, overdue counted now:
 *
 *	 SELECT a.patron_id, <barcode>, p.display_name, a.group_id, g.label, ..., a.items_out,
 *	        COALESCE(o.n, 0)::int8 AS items_overdue, a.items_lost, ...
 *	   FROM accounts a LEFT JOIN groups g ON g.group_id = a.group_id
 *	        <patron joins> LEFT JOIN (<overdue per patron>) o ON o.patron_id = a.patron_id
 *
 * With no patron table attached: the accounts alone, barcode, name and
 * overdue NULL.
 */
char *
member_summary_sql(const Mapping *m)
{
	StringInfoData joins;
	char	   *barcode = "NULL::pg_catalog.text";
	char	   *name = "NULL::pg_catalog.text";
	char	   *overdue = m->patrons ? overdue_per_patron_sql(m) : NULL;

	initStringInfo(&joins);
	if (m->patrons)
		patron_joins(m, "a", "", &joins, &barcode, &name);
	if (overdue)
		appendStringInfo(&joins, " LEFT JOIN (%s) o ON o.patron_id OPERATOR(pg_catalog.=) a.patron_id", overdue);
	return psprintf("SELECT a.patron_id, %s AS barcode, %s AS display_name, %s, %s AS items_overdue, "
					"a.items_lost, a.amount_billed, a.amount_paid, a.balance_owed, "
					"a.items_claims_returned, a.items_long_overdue "
					"FROM " PG_SCHEMA ".accounts a "
					"LEFT JOIN " PG_SCHEMA ".groups g ON g.group_id OPERATOR(pg_catalog.=) a.group_id%s",
					barcode, name, member_columns(),
					overdue ? "COALESCE(o.n, 0)::pg_catalog.int8" :
					m->patrons ? "0::pg_catalog.int8" : "NULL::pg_catalog.int8",
					joins.data);
}

/*
 * SQL of group_summary: one row per group, its members' overdue loans
 * counted now by one aggregate:
 *
 *	 SELECT g.group_id, g.label, ..., COALESCE(go.n, 0)::int8 AS items_overdue, ...
 *	   FROM groups g LEFT JOIN (SELECT m.group_id, count(*) AS n FROM accounts m
 *	          JOIN (<overdue rows>) o ON o.patron_id = m.patron_id
 *	         WHERE m.group_id IS NOT NULL GROUP BY m.group_id) go ON go.group_id = g.group_id
 */
char *
group_summary_sql(const Mapping *m)
{
	char	   *overdue = m->patrons ? overdue_rows_sql(m) : NULL;

	return psprintf("SELECT g.group_id, g.label, g.created_at, g.member_count, g.lead_count, g.items_out, "
					"%s AS items_overdue, g.items_lost, g.amount_billed, g.amount_paid, g.balance_owed, "
					"g.items_claims_returned, g.items_long_overdue "
					"FROM " PG_SCHEMA ".groups g%s",
					overdue ? "COALESCE(go.n, 0)::pg_catalog.int8" :
					m->patrons ? "0::pg_catalog.int8" : "NULL::pg_catalog.int8",
					overdue ? psprintf(" LEFT JOIN (SELECT m.group_id, pg_catalog.count(*) AS n "
									   "FROM " PG_SCHEMA ".accounts m JOIN (%s) o "
									   "ON o.patron_id OPERATOR(pg_catalog.=) m.patron_id "
									   "WHERE m.group_id IS NOT NULL GROUP BY m.group_id) go "
									   "ON go.group_id OPERATOR(pg_catalog.=) g.group_id", overdue) : "");
}

/*
 * SQL of membership_history: every event, with the patron's barcode and
 * name now and the groups' labels now:
 *
 *	 SELECT h.event_id, ..., <barcode>, p.display_name, ... FROM history h
 *	   <patron joins on h> LEFT JOIN groups fg ... LEFT JOIN groups tg ...
 */
char *
membership_history_sql(const Mapping *m)
{
	StringInfoData joins;
	char	   *barcode = "NULL::pg_catalog.text";
	char	   *name = "NULL::pg_catalog.text";

	initStringInfo(&joins);
	if (m->patrons)
		patron_joins(m, "h", "", &joins, &barcode, &name);
	return psprintf("SELECT h.event_id, h.happened_at, h.action, h.patron_id, %s AS barcode, "
					"%s AS display_name, h.from_group, fg.label AS from_group_label, h.to_group, "
					"tg.label AS to_group_label, h.db_role, h.app_user, h.reason, h.detail "
					"FROM " PG_SCHEMA ".history h%s "
					"LEFT JOIN " PG_SCHEMA ".groups fg ON fg.group_id OPERATOR(pg_catalog.=) h.from_group "
					"LEFT JOIN " PG_SCHEMA ".groups tg ON tg.group_id OPERATOR(pg_catalog.=) h.to_group",
					barcode, name, joins.data);
}
