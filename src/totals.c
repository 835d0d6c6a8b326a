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
#include "miscadmin.h"
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

/* The compiled row expressions of one attached table, and its kept plans. */
typedef struct TotalsPlans
{
	Oid			relid;			/* hash key */
	bool		valid;
	bool		compiled;		/* set up on first use */
	Oid			mapping;		/* the mapping view compiled */
	Oid			via_relid;		/* money naming a transaction: its table */
	MemoryContext cxt;
	/*
	 * What a row contributes, compiled from the mapping view: the key (the
	 * patron, or the transaction), items out and lost, billed and paid; the
	 * very expressions verify() counts with.  NULL: always zero.
	 */
	ExprState  *row_exprs[MAPPING_VALUES];
	Oid			key_type;		/* int2, int4 or int8 */
	ExprContext *econtext;
	TupleTableSlot *slot;
	SPIPlanPtr	resolve_plan;	/* the patrons of transactions, by id */
} TotalsPlans;

static HTAB *plans_by_table = NULL;

/*
 * Forget what was compiled for a table when its definition, its triggers,
 * its mapping view or its transaction table changed.
 */
static void
invalidate_plans(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TotalsPlans *entry;

	if (plans_by_table == NULL)
		return;
	hash_seq_init(&status, plans_by_table);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->relid == relid || entry->mapping == relid ||
			entry->via_relid == relid)
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
			if (entry->resolve_plan)
				SPI_freeplan(entry->resolve_plan);
			if (entry->cxt)
				MemoryContextDelete(entry->cxt);
		}
		entry->resolve_plan = NULL;
		entry->compiled = false;
		entry->mapping = entry->via_relid = InvalidOid;
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
	"relid::pg_catalog.oid, kind, patron_column, money_kind, via_relid::pg_catalog.oid, " \
	"via_id_column, via_patron_column, mapping::pg_catalog.oid"

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
	s->money_kind = spi_text_at(row, 4);
	via = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 5, &isnull);
	if (!isnull)
	{
		s->via_relid = DatumGetObjectId(via);
		s->via_relname = qualified_relname(s->via_relid);
		s->via_id_name = spi_text_at(row, 6);
		s->via_patron_name = spi_text_at(row, 7);
		s->via_id_column = quote_or_null(s->via_id_name);
		s->via_patron_column = quote_or_null(s->via_patron_name);
	}
	s->mapping = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 8, &isnull));
	s->mapping_name = qualified_relname(s->mapping);
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

	(void) extension_owner();	/* refuses a schema this library cannot read */
	/* kept: read at every statement of a transaction table and every check */
	kept_plan(&plan, "SELECT " SOURCE_COLUMNS " FROM " PG_SCHEMA ".attachments "
			  "WHERE kind OPERATOR(pg_catalog.=) ANY ('{circulations,money}') "
			  "AND ($1 OPERATOR(pg_catalog.=) 0 OR via_relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass) "
			  /* a table the library system dropped counts nothing any more */
			  "AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) relid::pg_catalog.oid) "
			  "AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) mapping::pg_catalog.oid) "
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
 * SQL: each row of an attached table as its mapping view gives it, with
 * the patron it counts for: p (int8), o (items out), l (lost), b (billed),
 * y (paid).  Money naming a transaction counts for the transaction's
 * patron.  With a patron filter ($1, int8[]), only those patrons' rows.
 */
static char *
source_rows_sql(TotalsSource *s, bool filtered)
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
 * SQL for the per-patron expected totals over whole tables (verify,
 * rebuild): p, o, l, b, y; with 'filtered', only the patrons in $1.
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
		Datum		v[MAPPING_VALUES];
		bool		isnull[MAPPING_VALUES];
		PatronDelta *d;
		MemoryContext old;

		ResetExprContext(econtext);
		for (int c = 0; c < MAPPING_VALUES; c++)
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
		d = delta_for(set, plans->key_type == INT8OID ? DatumGetInt64(v[0]) :
					  plans->key_type == INT4OID ? DatumGetInt32(v[0]) : DatumGetInt16(v[0]));
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
 * Compile the table's row expressions from its mapping view, once per
 * backend until the table, its view or its transaction table changes.  The
 * caller is connected to SPI and runs as the extension owner.
 */
static void
compile_row_values(TotalsPlans *plans, Relation rel)
{
	TotalsSource *s = load_totals_source(RelationGetRelid(rel));
	Expr	   *exprs[MAPPING_VALUES];
	MemoryContext old;

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" is not attached", RelationGetRelationName(rel)),
				 errhint("Drop the trigger, or attach the table with patron_group.attach_circulations() or attach_money().")));
	plans->cxt = AllocSetContextCreate(CacheMemoryContext, "patron_group row values",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(plans->cxt);
	compile_mapping(s->mapping, s->relid, exprs, &plans->key_type);
	if (plans->key_type != INT2OID && plans->key_type != INT4OID && plans->key_type != INT8OID)
		elog(ERROR, "mapping view of \"%s\" has a key of type %s",
			 RelationGetRelationName(rel), format_type_be(plans->key_type));
	for (int c = 0; c < MAPPING_VALUES; c++)
		plans->row_exprs[c] = exprs[c] ? ExecInitExpr(exprs[c], NULL) : NULL;
	plans->econtext = CreateStandaloneExprContext();
	/* a private copy of the descriptor: a kept slot must not pin the relcache's */
	plans->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
										   &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(old);
	plans->mapping = s->mapping;
	plans->via_relid = s->via_relid;
	if (OidIsValid(s->via_relid))
	{
		Oid			types[1] = {INT8ARRAYOID};

		/* the patron of each transaction, read afresh at each use */
		plans->resolve_plan = SPI_prepare_cursor(psprintf("SELECT v.%s::pg_catalog.int8, v.%s::pg_catalog.int8 "
														  "FROM %s v WHERE v.%s OPERATOR(pg_catalog.=) ANY ($1)",
														  s->via_id_column, s->via_patron_column,
														  s->via_relname, s->via_id_column),
												 1, types, CURSOR_OPT_GENERIC_PLAN);
		if (plans->resolve_plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plans->resolve_plan);
	}
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

/* An int8[] Datum of sorted, distinct C values (the input is sorted in place). */
static Datum
sorted_int8_array(int64 *v, int *n)
{
	Datum	   *d;
	int			m = 0;

	if (*n > 1)
		qsort(v, *n, sizeof(int64), compare_int64);
	for (int i = 0; i < *n; i++)
		if (m == 0 || v[m - 1] != v[i])
			v[m++] = v[i];
	*n = m;
	d = palloc(sizeof(Datum) * Max(m, 1));
	for (int i = 0; i < m; i++)
		d[i] = Int64GetDatum(v[i]);
	return make_array(d, m, INT8OID);
}

/*
 * Money that names a transaction: the deltas are per transaction, and count
 * for the transaction's patron.  Lock order: the accounts first, then read
 * which patron each transaction names, with a fresh snapshot, and count the
 * money for that patron.  A patron merge that reassigns a transaction (see
 * via_trigger) also locks both accounts before it reads the money to move,
 * so whichever comes second sees what the first committed; and neither
 * holds a transaction row while waiting for an account, so a merge that
 * reassigns loans in one statement and transactions in another cannot
 * deadlock with a bill in between.  When the transaction changed patron
 * while we waited, the new patron's account is locked too and the
 * transactions read again.  A transaction that does not exist counts for
 * nobody, as in verify().
 */
static void
apply_via_deltas(TotalsPlans *plans, PatronDelta **xacts, int n, DeltaSet *set)
{
	int64	   *ids = palloc(sizeof(int64) * n);
	int			nids = n;
	Datum		idarray;
	int64	   *locked = NULL;
	int			nlocked = 0;
	DeltaSet	byp;
	PatronDelta **deltas;
	int			np;

	for (int i = 0; i < n; i++)
		ids[i] = xacts[i]->patron;
	idarray = sorted_int8_array(ids, &nids);
	memset(&byp, 0, sizeof(byp));
	byp.cxt = set->cxt;

	for (;;)
	{
		int64	   *missing;
		int			nmissing = 0;

		CHECK_FOR_INTERRUPTS();
		if (SPI_execute_plan(plans->resolve_plan, &idarray, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the transactions' patrons");
		missing = palloc(sizeof(int64) * Max(SPI_processed, 1));
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Datum		p = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);
			int64		patron = DatumGetInt64(p);

			if (!isnull &&
				(nlocked == 0 || !bsearch(&patron, locked, nlocked, sizeof(int64), compare_int64)))
				missing[nmissing++] = patron;
		}
		if (nmissing == 0)
			break;
		lock_accounts(sorted_int8_array(missing, &nmissing));
		locked = locked ? repalloc(locked, sizeof(int64) * (nlocked + nmissing))
			: palloc(sizeof(int64) * nmissing);
		memcpy(locked + nlocked, missing, sizeof(int64) * nmissing);
		nlocked += nmissing;
		qsort(locked, nlocked, sizeof(int64), compare_int64);
	}

	/* every patron is locked and the transactions were read after that: sum by patron */
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		xact = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		Datum		p = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);
		PatronDelta key;
		PatronDelta *keyp = &key;
		PatronDelta **found;
		PatronDelta *x;
		PatronDelta *d;

		if (isnull)
			continue;
		key.patron = xact;
		found = bsearch(&keyp, xacts, n, sizeof(PatronDelta *), compare_deltas);
		if (found == NULL)
			continue;
		x = *found;
		d = delta_for(&byp, DatumGetInt64(p));
		d->out += x->out;
		d->lost += x->lost;
		if (x->billed)
			add_amount(&byp, &d->billed, &d->billed_room, NumericGetDatum(x->billed), false);
		if (x->paid)
			add_amount(&byp, &d->paid, &d->paid_room, NumericGetDatum(x->paid), false);
	}
	deltas = nonzero_deltas(&byp, &np);
	if (np > 0)
		apply_deltas(deltas, np);
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
	if (TRIGGER_FIRED_BY_TRUNCATE(ev) || !plans->compiled)
	{
		SPI_connect();
		become_extension_owner(&oc);
		if (TRIGGER_FIRED_BY_TRUNCATE(ev))
			rebuild_totals(NULL);
		else
			compile_row_values(plans, td->tg_relation);
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
		if (OidIsValid(plans->via_relid))
			apply_via_deltas(plans, deltas, n, &set);
		else
			apply_deltas(deltas, n);
		restore_user(&oc);
		SPI_finish();
	}
	MemoryContextDelete(set.cxt);
	return PointerGetDatum(NULL);
}

/*
 * The patrons with a new loan that is out and not lost among the rows an
 * INSERT on a circulation table added, sorted and distinct, as the totals
 * count them (limits.c refuses them over a limit).  The caller is connected
 * to SPI and runs as the extension owner.
 */
int64 *
new_open_loans(TriggerData *td, int *count)
{
	TotalsPlans *plans = plans_for(RelationGetRelid(td->tg_relation));
	ExprContext *econtext;
	TupleTableSlot *slot;
	Tuplestorestate *rows = td->tg_newtable;
	int64	   *result;
	int			n = 0,
				max = 16;
	int			ptr;

	if (!plans->compiled)
		compile_row_values(plans, td->tg_relation);
	econtext = plans->econtext;
	slot = plans->slot;
	result = palloc(sizeof(int64) * max);
	ptr = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, ptr);
	tuplestore_rescan(rows);
	econtext->ecxt_scantuple = slot;
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		isnull;
		Datum		key;
		int32		out = 0,
					lost = 0;

		ResetExprContext(econtext);
		key = ExecEvalExprSwitchContext(plans->row_exprs[0], econtext, &isnull);
		if (isnull)
			continue;
		if (plans->row_exprs[1])
		{
			bool		n1;
			Datum		v = ExecEvalExprSwitchContext(plans->row_exprs[1], econtext, &n1);

			out = n1 ? 0 : DatumGetInt32(v);
		}
		if (plans->row_exprs[2])
		{
			bool		n2;
			Datum		v = ExecEvalExprSwitchContext(plans->row_exprs[2], econtext, &n2);

			lost = n2 ? 0 : DatumGetInt32(v);
		}
		if (out - lost <= 0)
			continue;
		if (n == max)
		{
			max *= 2;
			result = repalloc(result, sizeof(int64) * max);
		}
		result[n++] = plans->key_type == INT8OID ? DatumGetInt64(key) :
			plans->key_type == INT4OID ? DatumGetInt32(key) : DatumGetInt16(key);
	}
	ExecClearTuple(slot);
	ResetExprContext(econtext);
	(void) sorted_int8_array(result, &n);
	*count = n;
	return result;
}

/*
 * SQL: the money of the transactions in $1 (int8[]), over every money table
 * naming this transaction table, one row per transaction: id, o, l, b, y.
 */
static char *
money_of_xacts_sql(List *sources)
{
	StringInfoData rows;
	ListCell   *lc;

	initStringInfo(&rows);
	foreach(lc, sources)
		appendStringInfo(&rows, "%sSELECT m.xact_id::pg_catalog.int8 AS x, m.items_out AS o, "
						 "m.items_lost AS l, m.amount_billed AS b, m.amount_paid AS y FROM %s m "
						 "WHERE m.xact_id OPERATOR(pg_catalog.=) ANY ($1)",
						 rows.len ? " UNION ALL " : "", ((TotalsSource *) lfirst(lc))->mapping_name);
	return psprintf("SELECT d.x, pg_catalog.sum(d.o)::pg_catalog.int8, pg_catalog.sum(d.l)::pg_catalog.int8, "
					"pg_catalog.sum(d.b), pg_catalog.sum(d.y) FROM (%s) d GROUP BY d.x", rows.data);
}

static TextPlan money_of_xacts_plan;

/* A transaction whose money moves, and between whom (NULL side: nobody). */
typedef struct XactMove
{
	int64		id;
	bool		has_from;
	int64		from;
	bool		has_to;
	int64		to;
} XactMove;

static int
compare_moves(const void *a, const void *b)
{
	return compare_int64(&((const XactMove *) a)->id, &((const XactMove *) b)->id);
}

/*
 * Move the money of some transactions: for each, minus its money for its
 * 'from' patron and plus it for its 'to' patron, over every money table
 * naming this transaction table.  The accounts are locked by the caller,
 * before the money is read.
 */
static void
move_xact_money(List *sources, XactMove *moves, int n)
{
	Oid			types[1] = {INT8ARRAYOID};
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	int			nids = n;
	Datum		idarray;
	DeltaSet	set;
	PatronDelta **deltas;
	int			np;
	SPITupleTable *money;
	uint64		nmoney;

	qsort(moves, n, sizeof(XactMove), compare_moves);
	for (int i = 0; i < n; i++)
		ids[i] = moves[i].id;
	idarray = sorted_int8_array(ids, &nids);
	if (SPI_execute_plan(kept_plan_for_text(&money_of_xacts_plan, money_of_xacts_sql(sources), 1, types),
						 &idarray, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the money of the transactions");
	money = SPI_tuptable;
	nmoney = SPI_processed;

	memset(&set, 0, sizeof(set));
	set.cxt = AllocSetContextCreate(CurrentMemoryContext, "patron_group moved money",
									ALLOCSET_DEFAULT_SIZES);
	for (uint64 r = 0; r < nmoney; r++)
	{
		bool		isnull;
		XactMove	key;
		XactMove   *m;
		Datum		v[4];
		bool		vnull[4];

		CHECK_FOR_INTERRUPTS();
		key.id = DatumGetInt64(SPI_getbinval(money->vals[r], money->tupdesc, 1, &isnull));
		m = bsearch(&key, moves, n, sizeof(XactMove), compare_moves);
		if (m == NULL)
			continue;
		for (int c = 0; c < 4; c++)
			v[c] = SPI_getbinval(money->vals[r], money->tupdesc, c + 2, &vnull[c]);
		for (int side = 0; side < 2; side++)
		{
			PatronDelta *d;

			if (side == 0 ? !m->has_from : !m->has_to)
				continue;
			d = delta_for(&set, side == 0 ? m->from : m->to);
			if (!vnull[0])
				d->out += side == 0 ? -DatumGetInt64(v[0]) : DatumGetInt64(v[0]);
			if (!vnull[1])
				d->lost += side == 0 ? -DatumGetInt64(v[1]) : DatumGetInt64(v[1]);
			if (!vnull[2])
				add_amount(&set, &d->billed, &d->billed_room, v[2], side == 0);
			if (!vnull[3])
				add_amount(&set, &d->paid, &d->paid_room, v[3], side == 0);
		}
	}
	deltas = nonzero_deltas(&set, &np);
	if (np > 0)
		apply_deltas(deltas, np);
	MemoryContextDelete(set.cxt);
}

/* The attribute number of a column of a trigger's table, by name. */
static AttrNumber
column_of(TriggerData *td, const char *name)
{
	int			attnum = SPI_fnumber(RelationGetDescr(td->tg_relation), name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						name, RelationGetRelationName(td->tg_relation)),
				 errhint("Detach the money tables that name this transaction table and attach them again.")));
	return attnum;
}

/* An int8 column of a tuple, or false when it is NULL. */
static bool
tuple_int8(HeapTuple tup, TupleDesc desc, AttrNumber attnum, int64 *value)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, desc, &isnull);
	Oid			type = TupleDescAttr(desc, attnum - 1)->atttypid;

	if (isnull)
		return false;
	*value = type == INT2OID ? DatumGetInt16(d) : type == INT4OID ? DatumGetInt32(d) : DatumGetInt64(d);
	return true;
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

	if (TRIGGER_FIRED_BY_DELETE(ev) && TRIGGER_FIRED_BEFORE(ev) && TRIGGER_FIRED_FOR_ROW(ev))
	{
		TupleDesc	desc = RelationGetDescr(td->tg_relation);
		int64		id,
					patron;

		result = td->tg_trigtuple;
		if (tuple_int8(td->tg_trigtuple, desc, column_of(td, first->via_id_name), &id) &&
			tuple_int8(td->tg_trigtuple, desc, column_of(td, first->via_patron_name), &patron))
		{
			XactMove	move = {id, true, patron, false, 0};
			int			one = 1;

			/* the account first, then read the money (see apply_via_deltas) */
			lock_accounts(sorted_int8_array(&patron, &one));
			move_xact_money(sources, &move, 1);
		}
	}
	else if (TRIGGER_FIRED_BY_UPDATE(ev) && TRIGGER_FIRED_AFTER(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev))
	{
		SPITupleTable *changed;
		uint64		nchanged;

		/* the transactions whose patron changed: id, old patron, new patron */
		if (SPI_execute(psprintf("SELECT o.%s::pg_catalog.int8, o.%s::pg_catalog.int8, n.%s::pg_catalog.int8 "
								 "FROM patron_group_old o JOIN patron_group_new n "
								 "ON o.%s OPERATOR(pg_catalog.=) n.%s "
								 "WHERE o.%s IS DISTINCT FROM n.%s",
								 first->via_id_column, first->via_patron_column,
								 first->via_patron_column, first->via_id_column,
								 first->via_id_column, first->via_patron_column,
								 first->via_patron_column), false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the reassigned transactions");
		changed = SPI_tuptable;
		nchanged = SPI_processed;
		if (nchanged > 0)
		{
			XactMove   *moves = palloc(sizeof(XactMove) * nchanged);
			int64	   *both = palloc(sizeof(int64) * nchanged * 2);
			int			nboth = 0;

			for (uint64 r = 0; r < nchanged; r++)
			{
				bool		isnull;

				CHECK_FOR_INTERRUPTS();
				moves[r].id = DatumGetInt64(SPI_getbinval(changed->vals[r], changed->tupdesc, 1, &isnull));
				/* a transaction of nobody counts for nobody */
				moves[r].from = DatumGetInt64(SPI_getbinval(changed->vals[r], changed->tupdesc, 2, &isnull));
				moves[r].has_from = !isnull;
				if (!isnull)
					both[nboth++] = moves[r].from;
				moves[r].to = DatumGetInt64(SPI_getbinval(changed->vals[r], changed->tupdesc, 3, &isnull));
				moves[r].has_to = !isnull;
				if (!isnull)
					both[nboth++] = moves[r].to;
			}

			/*
			 * Lock both accounts of every reassigned transaction before
			 * reading its money, so that a bill being counted for the old
			 * patron either commits first and is moved here, or waits and
			 * then counts for the new patron (see apply_via_deltas).
			 */
			lock_accounts(sorted_int8_array(both, &nboth));
			move_xact_money(sources, moves, (int) nchanged);
		}
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("via_trigger fired for an unexpected event"),
				 errhint("Create it with patron_group.attach_money().")));

	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(result);
}
