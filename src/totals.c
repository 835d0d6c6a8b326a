/*
 * totals.c
 *		Exact circulation and billing totals per patron and per group, kept by
 *		statement-level triggers on the library system's own tables.
 *
 * The design, and why.
 *
 * Each attached circulation or money table carries AFTER ... FOR EACH
 * STATEMENT triggers with transition tables.  A statement, whether it touches
 * one row or a million, is turned into one delta per patron: each transition
 * row is evaluated in C with the same expressions verify() counts with
 * (analyzed once per table and kept), new rows count plus and old rows count
 * minus, so an UPDATE that moves a loan from one patron to another, as a
 * patron merge does, moves it, and an UPDATE that changes nothing that
 * counts nets to zero and never enters SPI.  The deltas are then applied in
 * one pass:
 *
 *	 1. lock the account rows, in patron_id order (only when there are
 *		several patrons: one row needs no ordering);
 *	 2. one UPDATE of patron_group.accounts adds every patron's delta and
 *		returns each patron's current group_id; the row lock makes a
 *		concurrent move wait for us, or us for it, and READ COMMITTED then
 *		sees the group the move left;
 *	 3. lock the group rows, in group_id order (again only when several);
 *	 4. one UPDATE of patron_group.groups adds the per-group sums.
 *
 * A statement that concerns one patron (a checkout, a bill, a payment) skips
 * the sorting and the arrays: two single-row UPDATEs with scalar
 * parameters, the second only for a member of a group.  Every plan is
 * prepared once per backend and kept generic.
 *
 * That is the lock order every path of the extension follows (accounts by
 * patron_id, then groups by group_id; see groups.c), so a checkout, a
 * payment, a move and a rebuild never deadlock through the extension.
 *
 * Money that names a transaction rather than a patron (Evergreen's billing
 * points at a billable transaction whose row names the patron) keeps an SQL
 * delta query, which joins the transaction table.  It locks the account
 * first and then reads the transaction's patron again with a fresh snapshot
 * (apply_via_statement); a patron merge that reassigns transactions locks
 * both accounts before it reads the money it moves (via_trigger).  Neither
 * side holds a transaction row while waiting for an account, so the money
 * always follows the transaction and a merge never deadlocks with a bill.
 * The transaction table's triggers: an UPDATE that changes its patron moves
 * the money of those transactions; a DELETE subtracts it before the row goes
 * (a cascaded delete of the bills then finds no transaction and counts
 * nothing); a TRUNCATE rebuilds.
 *
 * Plans are prepared once per backend and table, and dropped when the
 * table's relcache entry is invalidated (CREATE or DROP TRIGGER, ALTER
 * TABLE).  All writes run as the extension owner.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_totals_trigger);
PG_FUNCTION_INFO_V1(pg_via_trigger);

/*
 * What a row of the table contributes, as five compiled expressions over the
 * row: the patron (int8), items out and lost (int4), billed and paid
 * (numeric).  They are the very expressions verify() counts with, analyzed
 * once and evaluated here in C on each transition tuple.
 */
#define ROW_VALUES 5

/* The kept plans and compiled row expressions of one attached table. */
typedef struct TotalsPlans
{
	Oid			relid;			/* hash key */
	bool		valid;
	SPIPlanPtr	insert_plan;
	SPIPlanPtr	update_plan;
	SPIPlanPtr	delete_plan;
	/* set up on first use; NULL for money resolved through a transaction */
	bool		compiled;
	bool		via;
	MemoryContext cxt;
	ExprState  *row_exprs[ROW_VALUES];	/* NULL: always zero, never evaluated */
	ExprContext *econtext;
	TupleTableSlot *slot;
} TotalsPlans;

static HTAB *plans_by_table = NULL;

/* Forget the plans of a table whose definition or triggers changed. */
static void
invalidate_plans(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TotalsPlans *entry;

	if (plans_by_table == NULL)
		return;
	hash_seq_init(&status, plans_by_table);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->relid == relid)
			entry->valid = false;
}

/* The cached plans of a table, creating the cache on first use. */
static TotalsPlans *
plans_for(Oid relid)
{
	TotalsPlans *entry;
	bool		found;

	if (plans_by_table == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TotalsPlans);
		plans_by_table = hash_create("patron_group totals plans", 16, &ctl,
									 HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(invalidate_plans, (Datum) 0);
	}
	entry = hash_search(plans_by_table, &relid, HASH_ENTER, &found);
	if (!found || !entry->valid)
	{
		if (found)
		{
			if (entry->insert_plan)
				SPI_freeplan(entry->insert_plan);
			if (entry->update_plan)
				SPI_freeplan(entry->update_plan);
			if (entry->delete_plan)
				SPI_freeplan(entry->delete_plan);
			if (entry->cxt)
				MemoryContextDelete(entry->cxt);
		}
		entry->insert_plan = entry->update_plan = entry->delete_plan = NULL;
		entry->compiled = false;
		entry->cxt = NULL;
		entry->valid = true;
	}
	return entry;
}

/* Text of column 'col' of SPI row 'row', or NULL. */
static char *
spi_text_at(uint64 row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* Quote an identifier that may be NULL. */
static char *
quote_or_null(char *s)
{
	return s ? (char *) quote_identifier(s) : NULL;
}

#define SOURCE_COLUMNS \
	"relid::pg_catalog.oid, kind, patron_column, due_column, condition, " \
	"lost_condition, money_kind, amount_column, via_relid::pg_catalog.oid, " \
	"via_id_column, via_patron_column"

/* A TotalsSource from the current SPI result's row. */
static TotalsSource *
source_from_row(uint64 row)
{
	TotalsSource *s = palloc0(sizeof(TotalsSource));
	bool		isnull;
	Datum		via;

	s->relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1, &isnull));
	s->relname = qualified_relname(s->relid);
	s->is_money = strcmp(spi_text_at(row, 2), "money") == 0;
	s->patron_column = quote_or_null(spi_text_at(row, 3));
	s->due_column = quote_or_null(spi_text_at(row, 4));
	s->condition = spi_text_at(row, 5);
	s->lost_condition = spi_text_at(row, 6);
	s->money_kind = spi_text_at(row, 7);
	s->amount_column = quote_or_null(spi_text_at(row, 8));
	via = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 9, &isnull);
	if (!isnull)
	{
		s->via_relid = DatumGetObjectId(via);
		s->via_relname = qualified_relname(s->via_relid);
		s->via_id_name = spi_text_at(row, 10);
		s->via_patron_name = spi_text_at(row, 11);
		s->via_id_column = quote_or_null(s->via_id_name);
		s->via_patron_column = quote_or_null(s->via_patron_name);
	}
	return s;
}

/*
 * The attached circulation and money tables (all of them, or only those
 * whose transactions live in via_relid).  The caller is connected to SPI.
 * Read with a fresh snapshot: an attach reads the row it has just written.
 */
List *
load_totals_sources(Oid via_relid)
{
	List	   *result = NIL;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(via_relid)};

	static SPIPlanPtr plan = NULL;

	/* kept: read at every statement of a transaction table and every check */
	kept_plan(&plan, "SELECT " SOURCE_COLUMNS " FROM " PG_SCHEMA ".attachments "
			  "WHERE kind OPERATOR(pg_catalog.=) ANY ('{circulations,money}') "
			  "AND ($1 OPERATOR(pg_catalog.=) 0 OR via_relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass) "
			  /* a table the library system dropped counts nothing any more */
			  "AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) relid::pg_catalog.oid) "
			  "AND (via_relid IS NULL OR EXISTS (SELECT FROM pg_catalog.pg_class c "
			  "WHERE c.oid OPERATOR(pg_catalog.=) via_relid::pg_catalog.oid)) "
			  "ORDER BY relid::pg_catalog.oid", 1, types);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	for (uint64 r = 0; r < SPI_processed; r++)
		result = lappend(result, source_from_row(r));
	return result;
}

/* The attachment of one table, or NULL. */
static TotalsSource *
load_totals_source(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (SPI_execute_with_args("SELECT " SOURCE_COLUMNS " FROM " PG_SCHEMA ".attachments "
							  "WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass "
							  "AND kind OPERATOR(pg_catalog.=) ANY ('{circulations,money}')",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	return SPI_processed == 1 ? source_from_row(0) : NULL;
}

/*
 * SQL selecting, for every row of 'from' (a table, or a transition table)
 * seen as alias r: k (the patron, or the transaction for money via a
 * transaction table) and the row's contribution o (items out), l (lost),
 * b (billed), y (paid).  The conditions are evaluated over r alone.
 */
static char *
row_values_sql(TotalsSource *s, const char *from, const char *where)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT r.%s%s AS k, ", s->patron_column,
					 s->via_relid == InvalidOid ? "::pg_catalog.int8" : "");
	if (!s->is_money)
		appendStringInfo(&sql,
						 "CASE WHEN (%s) THEN 1 ELSE 0 END AS o, "
						 "CASE WHEN (%s) AND (%s) THEN 1 ELSE 0 END AS l, "
						 "0::pg_catalog.numeric AS b, 0::pg_catalog.numeric AS y",
						 s->condition, s->condition, s->lost_condition);
	else if (strcmp(s->money_kind, "signed") == 0)
		appendStringInfo(&sql,
						 "0 AS o, 0 AS l, "
						 "CASE WHEN (%s) AND r.%s OPERATOR(pg_catalog.>) 0 THEN r.%s::pg_catalog.numeric ELSE 0 END AS b, "
						 "CASE WHEN (%s) AND r.%s OPERATOR(pg_catalog.<) 0 THEN OPERATOR(pg_catalog.-) r.%s::pg_catalog.numeric ELSE 0 END AS y",
						 s->condition, s->amount_column, s->amount_column,
						 s->condition, s->amount_column, s->amount_column);
	else
		appendStringInfo(&sql,
						 "0 AS o, 0 AS l, %s AS b, %s AS y",
						 strcmp(s->money_kind, "charge") == 0 ?
						 psprintf("CASE WHEN (%s) THEN r.%s::pg_catalog.numeric ELSE 0 END",
								  s->condition, s->amount_column) : "0::pg_catalog.numeric",
						 strcmp(s->money_kind, "payment") == 0 ?
						 psprintf("CASE WHEN (%s) THEN r.%s::pg_catalog.numeric ELSE 0 END",
								  s->condition, s->amount_column) : "0::pg_catalog.numeric");
	appendStringInfo(&sql, " FROM %s r", from);
	if (where)
		appendStringInfo(&sql, " WHERE %s", where);
	return sql.data;
}

/*
 * SQL giving each row's patron p and contribution, sign applied.  Money via a
 * transaction table joins it, locking the transaction rows when lock is set.
 */
static char *
patron_values_sql(TotalsSource *s, const char *from, const char *where,
				  bool negate, bool lock)
{
	const char *sign = negate ? "OPERATOR(pg_catalog.-) " : "";

	if (s->via_relid == InvalidOid)
		return psprintf("SELECT x.k::pg_catalog.int8 AS p, %sx.o AS o, %sx.l AS l, %sx.b AS b, %sx.y AS y "
						"FROM (%s) x",
						sign, sign, sign, sign, row_values_sql(s, from, where));
	return psprintf("SELECT * FROM (SELECT v.%s::pg_catalog.int8 AS p, %sx.o AS o, %sx.l AS l, %sx.b AS b, %sx.y AS y "
					"FROM (%s) x JOIN %s v ON v.%s OPERATOR(pg_catalog.=) x.k%s) z",
					s->via_patron_column, sign, sign, sign, sign,
					row_values_sql(s, from, where), s->via_relname, s->via_id_column,
					lock ? " FOR SHARE OF v" : "");
}

/* Wrap per-row values into per-patron sums, dropping patrons that net to zero. */
static char *
aggregate_sql(const char *rows)
{
	return psprintf("SELECT d.p, pg_catalog.sum(d.o)::pg_catalog.int8 AS o, pg_catalog.sum(d.l)::pg_catalog.int8 AS l, "
					"pg_catalog.sum(d.b) AS b, pg_catalog.sum(d.y) AS y FROM (%s) d "
					"WHERE d.p IS NOT NULL GROUP BY d.p "
					"HAVING pg_catalog.sum(d.o) OPERATOR(pg_catalog.<>) 0 "
					"OR pg_catalog.sum(d.l) OPERATOR(pg_catalog.<>) 0 "
					"OR pg_catalog.sum(d.b) OPERATOR(pg_catalog.<>) 0 "
					"OR pg_catalog.sum(d.y) OPERATOR(pg_catalog.<>) 0 "
					"ORDER BY d.p", rows);
}

/* SQL for the per-patron expected totals over whole tables (verify, rebuild). */
char *
expected_totals_sql(List *sources, const char *patron_filter)
{
	StringInfoData rows;
	ListCell   *lc;

	initStringInfo(&rows);
	foreach(lc, sources)
	{
		TotalsSource *s = lfirst(lc);
		char	   *where = NULL;
		char	   *part;

		if (patron_filter && s->via_relid == InvalidOid)
			where = psprintf("r.%s OPERATOR(pg_catalog.=) ANY (%s)", s->patron_column, patron_filter);
		part = patron_values_sql(s, s->relname, where, false, false);
		if (patron_filter && s->via_relid != InvalidOid)
			part = psprintf("%s WHERE z.p OPERATOR(pg_catalog.=) ANY (%s)", part, patron_filter);
		appendStringInfo(&rows, "%s%s", rows.len ? " UNION ALL " : "", part);
	}
	if (rows.len == 0)
		appendStringInfoString(&rows, "SELECT NULL::pg_catalog.int8 AS p, 0 AS o, 0 AS l, "
							   "0::pg_catalog.numeric AS b, 0::pg_catalog.numeric AS y WHERE false");
	return psprintf("SELECT d.p, pg_catalog.sum(d.o)::pg_catalog.int8 AS o, "
					"pg_catalog.sum(d.l)::pg_catalog.int8 AS l, pg_catalog.sum(d.b) AS b, "
					"pg_catalog.sum(d.y) AS y FROM (%s) d WHERE d.p IS NOT NULL GROUP BY d.p",
					rows.data);
}

/*
 * SQL counting the overdue loans of the patron patron_expr at read time: open,
 * not lost, due before now.  Overdue depends on the clock, not on a row
 * change, so it is never stored.
 */
char *
overdue_sql(List *sources, const char *patron_expr)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	foreach(lc, sources)
	{
		TotalsSource *s = lfirst(lc);

		if (s->is_money)
			continue;
		appendStringInfo(&sql, "%s(SELECT pg_catalog.count(*) FROM %s r "
						 "WHERE r.%s OPERATOR(pg_catalog.=) %s AND (%s) "
						 "AND NOT COALESCE((%s), false) "
						 "AND r.%s OPERATOR(pg_catalog.<) pg_catalog.now())",
						 sql.len ? " OPERATOR(pg_catalog.+) " : "",
						 s->relname, s->patron_column, patron_expr, s->condition,
						 s->lost_condition, s->due_column);
	}
	if (sql.len == 0)
		appendStringInfoString(&sql, "0::pg_catalog.int8");
	return sql.data;
}

static SPIPlanPtr one_account_plan;
static SPIPlanPtr one_group_plan;
static SPIPlanPtr lock_accounts_plan;
static SPIPlanPtr update_accounts_plan;
static SPIPlanPtr lock_groups_plan;
static SPIPlanPtr update_groups_plan;

/* An array Datum from n Datums of a type. */
static Datum
make_array(Datum *d, int n, Oid type)
{
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_array(d, n, type, len, byval, align));
}

/*
 * The current SPI result's five columns (an id, two counts, two amounts) as
 * five arrays, ready to be passed to a plan as $1..$5.
 */
static void
result_to_arrays(Datum *args)
{
	static const Oid elemtypes[5] = {INT8OID, INT8OID, INT8OID, NUMERICOID, NUMERICOID};
	uint64		n = SPI_processed;

	for (int c = 0; c < 5; c++)
	{
		Datum	   *col = palloc(sizeof(Datum) * Max(n, 1));

		for (uint64 r = 0; r < n; r++)
		{
			bool		isnull;

			col[r] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &isnull);
		}
		args[c] = make_array(col, (int) n, elemtypes[c]);
	}
}

/*
 * The common case, a statement that concerns one patron (a checkout, a
 * payment): two single-row UPDATEs with scalar parameters, account then
 * group.  Lock order needs no sorting with one row of each.  args holds the
 * patron, items out, items lost, billed and paid.
 */
static void
apply_one_delta(Datum *args)
{
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, NUMERICOID, NUMERICOID};
	bool		isnull;

	kept_plan(&one_account_plan,
			  "UPDATE " PG_SCHEMA ".accounts SET "
			  "items_out = items_out OPERATOR(pg_catalog.+) $2, "
			  "items_lost = items_lost OPERATOR(pg_catalog.+) $3, "
			  "amount_billed = amount_billed OPERATOR(pg_catalog.+) $4, "
			  "amount_paid = amount_paid OPERATOR(pg_catalog.+) $5 "
			  "WHERE patron_id OPERATOR(pg_catalog.=) $1 RETURNING group_id",
			  5, types);
	if (SPI_execute_plan(one_account_plan, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not update account totals");
	if (SPI_processed == 0)
		return;					/* not a patron of the attached table */
	args[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;					/* not in a group */
	kept_plan(&one_group_plan,
			  "UPDATE " PG_SCHEMA ".groups SET "
			  "items_out = items_out OPERATOR(pg_catalog.+) $2, "
			  "items_lost = items_lost OPERATOR(pg_catalog.+) $3, "
			  "amount_billed = amount_billed OPERATOR(pg_catalog.+) $4, "
			  "amount_paid = amount_paid OPERATOR(pg_catalog.+) $5 "
			  "WHERE group_id OPERATOR(pg_catalog.=) $1",
			  5, types);
	if (SPI_execute_plan(one_group_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update group totals");
}

/*
 * Apply deltas given as five arrays (patron ids sorted ascending, items out,
 * items lost, billed, paid) to accounts and then groups, in the lock order
 * described above.
 */
static void
apply_many_deltas(Datum *args, uint64 n)
{
	Oid			types[5] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, NUMERICARRAYOID, NUMERICARRAYOID};
	uint64		ngroups;

	kept_plan(&lock_accounts_plan,
			  "SELECT NULL FROM " PG_SCHEMA ".accounts WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1) "
			  "ORDER BY patron_id FOR UPDATE", 1, types);
	if (SPI_execute_plan(lock_accounts_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock accounts");
	kept_plan(&update_accounts_plan,
			  "WITH d AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
			  "pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5)) AS d(p, o, l, b, y)), "
			  "u AS (UPDATE " PG_SCHEMA ".accounts a SET "
			  "items_out = a.items_out OPERATOR(pg_catalog.+) d.o, "
			  "items_lost = a.items_lost OPERATOR(pg_catalog.+) d.l, "
			  "amount_billed = a.amount_billed OPERATOR(pg_catalog.+) d.b, "
			  "amount_paid = a.amount_paid OPERATOR(pg_catalog.+) d.y "
			  "FROM d WHERE a.patron_id OPERATOR(pg_catalog.=) d.p "
			  "RETURNING a.group_id, d.o, d.l, d.b, d.y) "
			  "SELECT u.group_id, pg_catalog.sum(u.o)::pg_catalog.int8, pg_catalog.sum(u.l)::pg_catalog.int8, "
			  "pg_catalog.sum(u.b), pg_catalog.sum(u.y) FROM u WHERE u.group_id IS NOT NULL "
			  "GROUP BY u.group_id ORDER BY u.group_id",
			  5, types);
	if (SPI_execute_plan(update_accounts_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not update account totals");

	ngroups = SPI_processed;
	if (ngroups == 0)
		return;
	result_to_arrays(args);
	if (ngroups > 1)
	{
		kept_plan(&lock_groups_plan,
				  "SELECT NULL FROM " PG_SCHEMA ".groups WHERE group_id OPERATOR(pg_catalog.=) ANY ($1) "
				  "ORDER BY group_id FOR UPDATE", 1, types);
		if (SPI_execute_plan(lock_groups_plan, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not lock groups");
	}
	kept_plan(&update_groups_plan,
			  "UPDATE " PG_SCHEMA ".groups g SET "
			  "items_out = g.items_out OPERATOR(pg_catalog.+) d.o, "
			  "items_lost = g.items_lost OPERATOR(pg_catalog.+) d.l, "
			  "amount_billed = g.amount_billed OPERATOR(pg_catalog.+) d.b, "
			  "amount_paid = g.amount_paid OPERATOR(pg_catalog.+) d.y "
			  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
			  "pg_catalog.unnest($4), pg_catalog.unnest($5)) AS d(g, o, l, b, y) "
			  "WHERE g.group_id OPERATOR(pg_catalog.=) d.g",
			  5, types);
	if (SPI_execute_plan(update_groups_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update group totals");
}

/*
 * Apply the deltas of the current SPI result (rows of p, o, l, b, y sorted
 * by p) to accounts and then groups.  The caller is connected to SPI and
 * runs as the extension owner.
 */
void
apply_deltas_from_result(void)
{
	uint64		n = SPI_processed;
	Datum		args[5];

	if (n == 0)
		return;
	if (n == 1)
	{
		bool		isnull;

		for (int c = 0; c < 5; c++)
			args[c] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, c + 1, &isnull);
		apply_one_delta(args);
		return;
	}
	result_to_arrays(args);
	apply_many_deltas(args, n);
}

/*
 * Per-patron deltas summed in C.  A statement usually concerns one patron or
 * a few, so the deltas live in a small array searched linearly; a bulk
 * statement switches to a hash table.  Amounts are kept in buffers that are
 * overwritten in place, so a million-row statement does not pile up garbage.
 */
typedef struct PatronDelta
{
	int64		patron;			/* hash key */
	int64		out;
	int64		lost;
	Numeric		billed;			/* NULL: zero */
	Numeric		paid;
	Size		billed_room;
	Size		paid_room;
} PatronDelta;

#define DELTA_ARRAY_SIZE 16

typedef struct DeltaSet
{
	MemoryContext cxt;
	int			n;
	PatronDelta small[DELTA_ARRAY_SIZE];
	HTAB	   *hash;
} DeltaSet;

static PatronDelta *
delta_for(DeltaSet *set, int64 patron)
{
	PatronDelta *d;
	bool		found;

	if (set->hash == NULL)
	{
		HASHCTL		ctl;

		for (int i = 0; i < set->n; i++)
			if (set->small[i].patron == patron)
				return &set->small[i];
		if (set->n < DELTA_ARRAY_SIZE)
		{
			d = &set->small[set->n++];
			memset(d, 0, sizeof(PatronDelta));
			d->patron = patron;
			return d;
		}
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(PatronDelta);
		ctl.hcxt = set->cxt;
		set->hash = hash_create("patron_group deltas", 1024, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < set->n; i++)
		{
			d = hash_search(set->hash, &set->small[i].patron, HASH_ENTER, NULL);
			memcpy(d, &set->small[i], sizeof(PatronDelta));
		}
	}
	d = hash_search(set->hash, &patron, HASH_ENTER, &found);
	if (!found)
	{
		memset(d, 0, sizeof(PatronDelta));
		d->patron = patron;
	}
	return d;
}

/* Numeric zero, made once per backend. */
static Numeric
numeric_zero(void)
{
	static Numeric zero = NULL;

	if (zero == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		zero = int64_to_numeric(0);
		MemoryContextSwitchTo(old);
	}
	return zero;
}

/* *sum += value (or -= when negate), reusing *sum's buffer when it fits. */
static void
add_amount(DeltaSet *set, Numeric *sum, Size *room, Datum value, bool negate)
{
	Numeric		base = *sum ? *sum : numeric_zero();
	Numeric		r;
	Size		len;

	r = negate ? numeric_sub_opt_error(base, DatumGetNumeric(value), NULL)
		: numeric_add_opt_error(base, DatumGetNumeric(value), NULL);
	len = VARSIZE(r);
	if (len > *room)
	{
		if (*sum)
			pfree(*sum);
		*room = Max(len, 32);
		*sum = MemoryContextAlloc(set->cxt, *room);
	}
	memcpy(*sum, r, len);
}

/* Add each row of a transition table to the deltas, or subtract it. */
static void
add_transition_rows(TotalsPlans *plans, Tuplestorestate *rows, bool negate, DeltaSet *set)
{
	ExprContext *econtext = plans->econtext;
	TupleTableSlot *slot = plans->slot;
	int			ptr;

	if (rows == NULL)
		elog(ERROR, "transition table missing: re-attach the table");
	/* a read pointer of our own, as a scan of the transition table takes */
	ptr = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, ptr);
	tuplestore_rescan(rows);
	econtext->ecxt_scantuple = slot;
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		Datum		v[ROW_VALUES];
		bool		isnull[ROW_VALUES];
		PatronDelta *d;
		MemoryContext old;

		ResetExprContext(econtext);
		for (int c = 0; c < ROW_VALUES; c++)
		{
			if (plans->row_exprs[c] == NULL)
			{
				v[c] = (Datum) 0;
				isnull[c] = true;	/* zero: nothing to add */
			}
			else
				v[c] = ExecEvalExprSwitchContext(plans->row_exprs[c], econtext, &isnull[c]);
		}
		if (isnull[0])
			continue;			/* no patron: counts for nobody, as in verify() */
		old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
		d = delta_for(set, DatumGetInt64(v[0]));
		if (!isnull[1])
			d->out += negate ? -(int64) DatumGetInt32(v[1]) : DatumGetInt32(v[1]);
		if (!isnull[2])
			d->lost += negate ? -(int64) DatumGetInt32(v[2]) : DatumGetInt32(v[2]);
		if (!isnull[3])
			add_amount(set, &d->billed, &d->billed_room, v[3], negate);
		if (!isnull[4])
			add_amount(set, &d->paid, &d->paid_room, v[4], negate);
		MemoryContextSwitchTo(old);
	}
	ExecClearTuple(slot);
	ResetExprContext(econtext);
}

static int
compare_deltas(const void *a, const void *b)
{
	int64		x = (*(PatronDelta *const *) a)->patron;
	int64		y = (*(PatronDelta *const *) b)->patron;

	return x < y ? -1 : x > y ? 1 : 0;
}

static bool
numeric_nonzero(Numeric n)
{
	return n != NULL &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(numeric_zero()))) != 0;
}

/*
 * The deltas that are not zero, sorted by patron (the lock order).  An
 * UPDATE that changes nothing that counts nets to zero and yields none.
 */
static PatronDelta **
nonzero_deltas(DeltaSet *set, int *count)
{
	int			total = set->hash ? (int) hash_get_num_entries(set->hash) : set->n;
	PatronDelta **out = palloc(sizeof(PatronDelta *) * Max(total, 1));
	int			n = 0;

	if (set->hash)
	{
		HASH_SEQ_STATUS status;
		PatronDelta *d;

		hash_seq_init(&status, set->hash);
		while ((d = hash_seq_search(&status)) != NULL)
			if (d->out != 0 || d->lost != 0 || numeric_nonzero(d->billed) || numeric_nonzero(d->paid))
				out[n++] = d;
	}
	else
		for (int i = 0; i < set->n; i++)
		{
			PatronDelta *d = &set->small[i];

			if (d->out != 0 || d->lost != 0 || numeric_nonzero(d->billed) || numeric_nonzero(d->paid))
				out[n++] = d;
		}
	if (n > 1)
		qsort(out, n, sizeof(PatronDelta *), compare_deltas);
	*count = n;
	return out;
}

/* Apply sorted deltas; the caller is connected to SPI as the extension owner. */
static void
apply_deltas(PatronDelta **deltas, int n)
{
	Datum		args[5];
	Datum		zero = NumericGetDatum(numeric_zero());

	if (n == 1)
	{
		args[0] = Int64GetDatum(deltas[0]->patron);
		args[1] = Int64GetDatum(deltas[0]->out);
		args[2] = Int64GetDatum(deltas[0]->lost);
		args[3] = deltas[0]->billed ? NumericGetDatum(deltas[0]->billed) : zero;
		args[4] = deltas[0]->paid ? NumericGetDatum(deltas[0]->paid) : zero;
		apply_one_delta(args);
		return;
	}
	else
	{
		Datum	   *cols[5];

		for (int c = 0; c < 5; c++)
			cols[c] = palloc(sizeof(Datum) * n);
		for (int i = 0; i < n; i++)
		{
			cols[0][i] = Int64GetDatum(deltas[i]->patron);
			cols[1][i] = Int64GetDatum(deltas[i]->out);
			cols[2][i] = Int64GetDatum(deltas[i]->lost);
			cols[3][i] = deltas[i]->billed ? NumericGetDatum(deltas[i]->billed) : zero;
			cols[4][i] = deltas[i]->paid ? NumericGetDatum(deltas[i]->paid) : zero;
		}
		args[0] = make_array(cols[0], n, INT8OID);
		args[1] = make_array(cols[1], n, INT8OID);
		args[2] = make_array(cols[2], n, INT8OID);
		args[3] = make_array(cols[3], n, NUMERICOID);
		args[4] = make_array(cols[4], n, NUMERICOID);
		apply_many_deltas(args, n);
	}
}

/*
 * Compile the table's row expressions: analyze the same SELECT list verify()
 * uses, over the table itself, and keep its planned expressions.  Money
 * resolved through a transaction table keeps the SQL path, which joins and
 * locks the transaction rows.  The caller is connected to SPI.
 */
static void
compile_row_values(TotalsPlans *plans, Relation rel)
{
	TotalsSource *s = load_totals_source(RelationGetRelid(rel));
	SPIPlanPtr	plan;
	Query	   *query;
	MemoryContext old;
	ListCell   *lc;
	int			c = 0;
	static const Oid want[ROW_VALUES] = {INT8OID, INT4OID, INT4OID, NUMERICOID, NUMERICOID};

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" is not attached", RelationGetRelationName(rel)),
				 errhint("Drop the trigger, or attach the table with patron_group.attach_circulations() or attach_money().")));
	if (s->via_relid != InvalidOid)
	{
		plans->via = true;
		plans->compiled = true;
		return;
	}
	plan = SPI_prepare(row_values_sql(s, psprintf("ONLY %s", s->relname), NULL), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	query = linitial_node(Query, ((CachedPlanSource *) linitial(SPI_plan_get_plan_sources(plan)))->query_list);

	plans->cxt = AllocSetContextCreate(CacheMemoryContext, "patron_group row values",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(plans->cxt);
	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Expr	   *e;

		if (c >= ROW_VALUES || exprType((Node *) tle->expr) != want[c])
			elog(ERROR, "unexpected row values of \"%s\"", RelationGetRelationName(rel));
		e = expression_planner((Expr *) copyObject(tle->expr));
		/* a loan never bills, a bill never lends: skip the constant zeros */
		if (c > 0 && IsA(e, Const) && !((Const *) e)->constisnull &&
			(want[c] == INT4OID ? DatumGetInt32(((Const *) e)->constvalue) == 0 :
			 !numeric_nonzero(DatumGetNumeric(((Const *) e)->constvalue))))
			plans->row_exprs[c++] = NULL;
		else
			plans->row_exprs[c++] = ExecInitExpr(e, NULL);
	}
	if (c != ROW_VALUES)
		elog(ERROR, "unexpected row values of \"%s\"", RelationGetRelationName(rel));
	plans->econtext = CreateStandaloneExprContext();
	/* a private copy of the descriptor: a kept slot must not pin the relcache's */
	plans->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
										   &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(old);
	SPI_freeplan(plan);
	plans->via = false;
	plans->compiled = true;
}

/* Check that a trigger function was called as an AFTER statement trigger. */
static TriggerData *
statement_trigger_data(FunctionCallInfo fcinfo, const char *name)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: not called by trigger manager", name)));
	td = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be fired FOR EACH STATEMENT", name),
				 errhint("Create it with the patron_group.attach_*() functions.")));
	return td;
}

/* The kept delta plan of a table for one trigger event. */
static SPIPlanPtr
delta_plan(TriggerData *td)
{
	TriggerEvent ev = td->tg_event;
	TotalsPlans *plans = plans_for(RelationGetRelid(td->tg_relation));
	SPIPlanPtr *slot;
	TotalsSource *s;
	char	   *rows;

	if (TRIGGER_FIRED_BY_INSERT(ev))
		slot = &plans->insert_plan;
	else if (TRIGGER_FIRED_BY_UPDATE(ev))
		slot = &plans->update_plan;
	else
		slot = &plans->delete_plan;
	if (*slot)
		return *slot;

	s = load_totals_source(RelationGetRelid(td->tg_relation));
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" is not attached", RelationGetRelationName(td->tg_relation)),
				 errhint("Drop the trigger, or attach the table with patron_group.attach_circulations() or attach_money().")));
	if (TRIGGER_FIRED_BY_INSERT(ev))
		rows = patron_values_sql(s, "patron_group_new", NULL, false, false);
	else if (TRIGGER_FIRED_BY_DELETE(ev))
		rows = patron_values_sql(s, "patron_group_old", NULL, true, false);
	else
		rows = psprintf("%s UNION ALL %s",
						patron_values_sql(s, "patron_group_new", NULL, false, false),
						patron_values_sql(s, "patron_group_old", NULL, true, false));
	return kept_plan(slot, aggregate_sql(rows), 0, NULL);
}

/* Lock the account rows of the given patrons (int8[]), in patron_id order. */
static void
lock_accounts(Datum patrons)
{
	Oid			types[1] = {INT8ARRAYOID};

	kept_plan(&lock_accounts_plan,
			  "SELECT NULL FROM " PG_SCHEMA ".accounts WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1) "
			  "ORDER BY patron_id FOR UPDATE", 1, types);
	if (SPI_execute_plan(lock_accounts_plan, &patrons, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock accounts");
}

static int
compare_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Money that names a transaction: the patron is the transaction's.  Lock
 * order: the accounts first, then read which patron each transaction names,
 * with a fresh snapshot, and count the money for that patron.  A patron
 * merge that reassigns a transaction (see via_trigger) also locks both
 * accounts before it reads the money to move, so whichever comes second sees
 * what the first committed; and neither holds a transaction row while
 * waiting for an account, so a merge that reassigns loans in one statement
 * and transactions in another cannot deadlock with a bill in between.  When
 * the transaction changed patron while we waited, the new patron's account
 * is locked too and the money read again.
 */
static void
apply_via_statement(TriggerData *td)
{
	SPIPlanPtr	plan = delta_plan(td);
	int64	   *locked = NULL;
	int			nlocked = 0;

	for (;;)
	{
		SPITupleTable *result;
		uint64		n;
		int64	   *missing;
		int			nmissing = 0;

		if (SPI_execute_plan(plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not compute totals for \"%s\"", RelationGetRelationName(td->tg_relation));
		result = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			return;
		missing = palloc(sizeof(int64) * n);
		for (uint64 r = 0; r < n; r++)
		{
			bool		isnull;
			int64		p = DatumGetInt64(SPI_getbinval(result->vals[r], result->tupdesc, 1, &isnull));

			if (nlocked == 0 || !bsearch(&p, locked, nlocked, sizeof(int64), compare_int64))
				missing[nmissing++] = p;
		}
		if (nmissing == 0)
		{
			SPI_tuptable = result;
			SPI_processed = n;
			apply_deltas_from_result();
			return;
		}
		/* the result is sorted by patron, so missing is too */
		{
			Datum	   *d = palloc(sizeof(Datum) * nmissing);

			for (int i = 0; i < nmissing; i++)
				d[i] = Int64GetDatum(missing[i]);
			lock_accounts(make_array(d, nmissing, INT8OID));
		}
		locked = locked ? repalloc(locked, sizeof(int64) * (nlocked + nmissing))
			: palloc(sizeof(int64) * nmissing);
		memcpy(locked + nlocked, missing, sizeof(int64) * nmissing);
		nlocked += nmissing;
		qsort(locked, nlocked, sizeof(int64), compare_int64);
		SPI_freetuptable(result);
	}
}

/*
 * totals_trigger: turn a statement on an attached table into per-patron
 * deltas and apply them.  The deltas are summed in C from the transition
 * tables; SPI is entered only when something counts, so a statement that
 * changes nothing that counts (a renewal, a note) costs one pass over its
 * rows.
 */
Datum
pg_totals_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = statement_trigger_data(fcinfo, "totals_trigger");
	TriggerEvent ev = td->tg_event;
	TotalsPlans *plans;
	OwnerContext oc;
	DeltaSet	set;
	PatronDelta **deltas;
	int			n;

	plans = plans_for(RelationGetRelid(td->tg_relation));
	if (TRIGGER_FIRED_BY_TRUNCATE(ev) || !plans->compiled || plans->via)
	{
		SPI_connect();
		SPI_register_trigger_data(td);
		become_extension_owner(&oc);
		if (TRIGGER_FIRED_BY_TRUNCATE(ev))
			rebuild_totals(NULL);
		else
		{
			if (!plans->compiled)
				compile_row_values(plans, td->tg_relation);
			if (plans->via)
			{
				apply_via_statement(td);
				restore_user(&oc);
				SPI_finish();
				return PointerGetDatum(NULL);
			}
		}
		restore_user(&oc);
		SPI_finish();
		if (TRIGGER_FIRED_BY_TRUNCATE(ev))
			return PointerGetDatum(NULL);
	}

	memset(&set, 0, sizeof(set));
	set.cxt = AllocSetContextCreate(CurrentMemoryContext, "patron_group deltas",
									ALLOCSET_DEFAULT_SIZES);
	if (TRIGGER_FIRED_BY_INSERT(ev) || TRIGGER_FIRED_BY_UPDATE(ev))
		add_transition_rows(plans, td->tg_newtable, false, &set);
	if (TRIGGER_FIRED_BY_DELETE(ev) || TRIGGER_FIRED_BY_UPDATE(ev))
		add_transition_rows(plans, td->tg_oldtable, true, &set);
	deltas = nonzero_deltas(&set, &n);
	if (n > 0)
	{
		SPI_connect();
		become_extension_owner(&oc);
		apply_deltas(deltas, n);
		restore_user(&oc);
		SPI_finish();
	}
	MemoryContextDelete(set.cxt);
	return PointerGetDatum(NULL);
}

/*
 * via_trigger: on a transaction table that money is resolved through.
 * BEFORE DELETE (row): subtract the money of the transaction while its row
 * still names the patron.  AFTER UPDATE (statement): move the money of the
 * transactions whose patron changed.  AFTER TRUNCATE: rebuild.
 */
Datum
pg_via_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	TriggerEvent ev;
	Oid			relid;
	OwnerContext oc;
	List	   *sources;
	ListCell   *lc;
	StringInfoData rows;
	TotalsSource *first;
	HeapTuple	result = NULL;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("via_trigger: not called by trigger manager")));
	td = (TriggerData *) fcinfo->context;
	ev = td->tg_event;
	relid = RelationGetRelid(td->tg_relation);

	SPI_connect();
	SPI_register_trigger_data(td);
	become_extension_owner(&oc);
	sources = load_totals_sources(relid);
	if (sources == NIL || TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		if (sources != NIL)
			rebuild_totals(NULL);
		restore_user(&oc);
		SPI_finish();
		return PointerGetDatum(TRIGGER_FIRED_FOR_ROW(ev) ? td->tg_trigtuple : NULL);
	}
	first = linitial(sources);

	initStringInfo(&rows);
	if (TRIGGER_FIRED_BY_DELETE(ev) && TRIGGER_FIRED_BEFORE(ev) && TRIGGER_FIRED_FOR_ROW(ev))
	{
		TupleDesc	desc = td->tg_relation->rd_att;
		char	   *id = SPI_getvalue(td->tg_trigtuple, desc,
									  SPI_fnumber(desc, first->via_id_name));
		char	   *patron = SPI_getvalue(td->tg_trigtuple, desc,
										  SPI_fnumber(desc, first->via_patron_name));

		result = td->tg_trigtuple;
		if (id && patron)
		{
			/* the account first, then read the money (see apply_via_statement) */
			if (SPI_execute(psprintf("SELECT NULL FROM " PG_SCHEMA ".accounts "
									 "WHERE patron_id OPERATOR(pg_catalog.=) %s::pg_catalog.int8 FOR UPDATE",
									 quote_literal_cstr(patron)), false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not lock accounts");
			foreach(lc, sources)
			{
				TotalsSource *s = lfirst(lc);

				appendStringInfo(&rows, "%sSELECT %s::pg_catalog.int8 AS p, OPERATOR(pg_catalog.-) x.o AS o, "
								 "OPERATOR(pg_catalog.-) x.l AS l, OPERATOR(pg_catalog.-) x.b AS b, "
								 "OPERATOR(pg_catalog.-) x.y AS y FROM (%s) x",
								 rows.len ? " UNION ALL " : "", quote_literal_cstr(patron),
								 row_values_sql(s, s->relname,
												psprintf("r.%s OPERATOR(pg_catalog.=) %s",
														 s->patron_column, quote_literal_cstr(id))));
			}
		}
	}
	else if (TRIGGER_FIRED_BY_UPDATE(ev) && TRIGGER_FIRED_AFTER(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev))
	{
		char	   *changed = psprintf("SELECT o.%s AS id, o.%s::pg_catalog.int8 AS op, n.%s::pg_catalog.int8 AS np "
									   "FROM patron_group_old o JOIN patron_group_new n "
									   "ON o.%s OPERATOR(pg_catalog.=) n.%s "
									   "WHERE o.%s IS DISTINCT FROM n.%s",
									   first->via_id_column, first->via_patron_column,
									   first->via_patron_column, first->via_id_column,
									   first->via_id_column, first->via_patron_column,
									   first->via_patron_column);

		/*
		 * Lock both accounts of every reassigned transaction before reading
		 * its money, so that a bill being counted for the old patron either
		 * commits first and is moved here, or waits and then counts for the
		 * new patron (see apply_via_statement).
		 */
		if (SPI_execute(psprintf("SELECT NULL FROM " PG_SCHEMA ".accounts a "
								 "WHERE a.patron_id OPERATOR(pg_catalog.=) ANY (ARRAY("
								 "SELECT c.op FROM (%s) c UNION SELECT c.np FROM (%s) c)) "
								 "ORDER BY a.patron_id FOR UPDATE OF a", changed, changed),
						false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not lock accounts");
		foreach(lc, sources)
		{
			TotalsSource *s = lfirst(lc);
			char	   *vals = row_values_sql(s, s->relname,
											  psprintf("r.%s OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.id FROM (%s) c))",
													   s->patron_column, changed));

			appendStringInfo(&rows, "%sSELECT c.np AS p, x.o, x.l, x.b, x.y FROM (%s) c JOIN (%s) x ON x.k OPERATOR(pg_catalog.=) c.id "
							 "UNION ALL SELECT c.op, OPERATOR(pg_catalog.-) x.o, OPERATOR(pg_catalog.-) x.l, "
							 "OPERATOR(pg_catalog.-) x.b, OPERATOR(pg_catalog.-) x.y FROM (%s) c JOIN (%s) x "
							 "ON x.k OPERATOR(pg_catalog.=) c.id",
							 rows.len ? " UNION ALL " : "", changed, vals, changed, vals);
		}
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("via_trigger fired for an unexpected event"),
				 errhint("Create it with patron_group.attach_money().")));

	if (rows.len)
	{
		if (SPI_execute(aggregate_sql(rows.data), false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not compute totals for \"%s\"", RelationGetRelationName(td->tg_relation));
		apply_deltas_from_result();
	}
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(result);
}
