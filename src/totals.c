/*
 * totals.c
 *		The totals triggers: exact circulation and billing totals per patron
 *		and per group, kept by statement-level triggers on the library
 *		system's own tables.
 *
 * The design, and why.
 *
 * Each attached circulation or money table carries AFTER ... FOR EACH
 * STATEMENT triggers with transition tables.  A statement, whether it touches
 * one row or a million, is turned into one delta per patron: each transition
 * row is evaluated in C with the expressions of the table's mapping view,
 * which verify() counts with too (compiled once per table and kept), new rows
 * count plus and old rows count minus, so an UPDATE that moves a loan from
 * one patron to another, as a patron merge does, moves it, and an UPDATE that
 * changes nothing that counts nets to zero and never enters SPI.  The deltas
 * are then written by deltas.c, in the lock order of locks.c: accounts by
 * patron_id, then groups by group_id, the order every path of the extension
 * follows, so a checkout, a payment, a move and a rebuild never deadlock
 * through the extension.
 *
 * Money that names a transaction rather than a patron (Evergreen's billing
 * points at a billable transaction whose row names the patron) is summed per
 * transaction, then counted for the transaction's patron: the accounts are
 * locked first and the transactions' patrons read again after that, with a
 * fresh snapshot (apply_via_deltas); a patron merge that reassigns
 * transactions locks both accounts before it reads the money it moves
 * (via_trigger).  Neither side holds a transaction row while waiting for an
 * account, so the money always follows the transaction and a merge never
 * deadlocks with a bill.  The transaction table's triggers: an UPDATE that
 * changes its patron moves the money of those transactions; a DELETE
 * subtracts it before the row goes (a cascaded delete of the bills then
 * finds no transaction and counts nothing); a TRUNCATE rebuilds.
 *
 * The compiled expressions are kept per backend and table, and dropped when
 * the table's, its mapping view's or its transaction table's relcache entry
 * is invalidated (CREATE or DROP TRIGGER, ALTER TABLE, alter_attachment()).
 * The deltas are written by direct.c, which needs neither SPI nor a change
 * of user; every other write (and the SQL path of the deltas) runs as the
 * extension owner.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
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
	uint64		generation;		/* of the mapping it was compiled from */
	MemoryContext cxt;
	/*
	 * What a row contributes, compiled from the mapping view: the key (the
	 * patron, or the transaction), then the figures; the very expressions
	 * verify() counts with.  NULL: always zero.  And whether a new loan
	 * renews one (NULL: never), which limits do not refuse.
	 */
	ExprState  *row_exprs[MAPPING_VALUES];
	ExprState  *renewal_expr;
	Oid			key_type;		/* int2, int4 or int8 */
	ExprContext *econtext;
	TupleTableSlot *slot;
	char	   *resolve_sql;	/* the patrons of transactions, by id */
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

	/*
	 * The attachments changed since this was compiled (alter_attachment(),
	 * detach(), the owner's own write): still the same view?
	 */
	if (found && entry->valid && entry->compiled && entry->generation != mapping_generation())
	{
		const Mapping *m = get_mapping();
		const Attachment *a = attachment_covering(relid);

		if (a == NULL || a->dropped || a->mapping != entry->mapping || a->via_relid != entry->via_relid)
			entry->valid = false;
		else
			entry->generation = m->generation;
	}
	if (!found || !entry->valid)
	{
		if (found)
		{
			if (entry->resolve_sql)
				pfree(entry->resolve_sql);
			if (entry->cxt)
				MemoryContextDelete(entry->cxt);
		}
		entry->resolve_sql = NULL;
		entry->compiled = false;
		entry->mapping = entry->via_relid = InvalidOid;
		entry->cxt = NULL;
		entry->valid = true;
	}
	return entry;
}

/* Add each row of a transition table to the deltas, or subtract it. */
static void
add_transition_rows(TotalsPlans *plans, Tuplestorestate *rows, bool negate, DeltaSet *set)
{
	ExprContext *econtext = plans->econtext;
	TupleTableSlot *slot = plans->slot;
	int			ptr;

	Assert(plans->compiled && plans->econtext != NULL);
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
		d = delta_for(set, int_datum_to_int64(v[0], plans->key_type));
		delta_add_values(set, d, v + 1, isnull + 1, false, negate);
		MemoryContextSwitchTo(old);
	}
	ExecClearTuple(slot);
	ResetExprContext(econtext);
}

/*
 * Compile the table's row expressions from its mapping view, once per
 * backend until the table, its view or its transaction table changes.  The
 * caller is connected to SPI and runs as the extension owner.
 */
static void
compile_row_values(TotalsPlans *plans, Relation rel)
{
	const Attachment *s = attachment_covering(RelationGetRelid(rel));
	Expr	   *exprs[MAPPING_VALUES];
	Expr	   *renewal = NULL;
	MemoryContext old;

	if (s == NULL || (s->kind != MAP_CIRCULATIONS && s->kind != MAP_MONEY))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" is not attached", RelationGetRelationName(rel)),
				 errhint("Drop the trigger, or attach the table with patron_group.attach_circulations() or attach_money().")));
	plans->cxt = AllocSetContextCreate(CacheMemoryContext, "patron_group row values",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(plans->cxt);
	compile_mapping(s->mapping, s->relid, RelationGetRelid(rel), exprs, &plans->key_type,
					s->kind == MAP_CIRCULATIONS ? &renewal : NULL);
	if (plans->key_type != INT2OID && plans->key_type != INT4OID && plans->key_type != INT8OID)
		elog(ERROR, "mapping view of \"%s\" has a key of type %s",
			 RelationGetRelationName(rel), format_type_be(plans->key_type));
	for (int c = 0; c < MAPPING_VALUES; c++)
		plans->row_exprs[c] = exprs[c] ? ExecInitExpr(exprs[c], NULL) : NULL;
	plans->renewal_expr = renewal ? ExecInitExpr(renewal, NULL) : NULL;
	plans->econtext = CreateStandaloneExprContext();
	/* a private copy of the descriptor: a kept slot must not pin the relcache's */
	plans->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
										   &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(old);
	plans->mapping = s->mapping;
	plans->via_relid = s->via_relid;
	plans->generation = get_mapping()->generation;
	if (OidIsValid(s->via_relid))
	{
		/* the patron of each transaction, read afresh at each use, as its table's owner */
		plans->resolve_sql = MemoryContextStrdup(TopMemoryContext,
												 psprintf("SELECT v.%s::pg_catalog.int8, v.%s::pg_catalog.int8 "
														  "FROM %s v WHERE v.%s OPERATOR(pg_catalog.=) ANY ($1)",
														  s->via_id_column, s->via_patron_column,
														  s->via_relname, s->via_id_column));
	}
	plans->compiled = true;
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
	DeltaSet	byp;
	PatronDelta **deltas;
	int			np;

	for (int i = 0; i < n; i++)
		ids[i] = xacts[i]->key;
	sort_distinct_int64(ids, &nids);
	idarray = int8_array(ids, nids);
	memset(&byp, 0, sizeof(byp));
	byp.cxt = set->cxt;

	lock_accounts_of_xacts(plans->via_relid, plans->resolve_sql, idarray);

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
		key.key = xact;
		found = bsearch(&keyp, xacts, n, sizeof(PatronDelta *), compare_deltas);
		if (found == NULL)
			continue;
		x = *found;
		d = delta_for(&byp, DatumGetInt64(p));
		delta_add(&byp, d, x, false);
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
	TriggerData *td = trigger_data(fcinfo, "totals_trigger", true);
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

	deltas_init(&set, "patron_group deltas");
	if (TRIGGER_FIRED_BY_INSERT(ev) || TRIGGER_FIRED_BY_UPDATE(ev))
		add_transition_rows(plans, td->tg_newtable, false, &set);
	if (TRIGGER_FIRED_BY_DELETE(ev) || TRIGGER_FIRED_BY_UPDATE(ev))
		add_transition_rows(plans, td->tg_oldtable, true, &set);
	deltas = nonzero_deltas(&set, &n);
	if (n > 0 && OidIsValid(plans->via_relid))
	{
		/* the transactions' patrons are read through SPI, as the owner */
		SPI_connect();
		become_extension_owner(&oc);
		apply_via_deltas(plans, deltas, n, &set);
		restore_user(&oc);
		SPI_finish();
	}
	else if (n > 0)
		apply_deltas(deltas, n);
	deltas_free(&set);
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
		if (plans->row_exprs[1 + FIGURE_OUT])
		{
			bool		n1;
			Datum		v = ExecEvalExprSwitchContext(plans->row_exprs[1 + FIGURE_OUT], econtext, &n1);

			out = n1 ? 0 : DatumGetInt32(v);
		}
		if (plans->row_exprs[1 + FIGURE_LOST])
		{
			bool		n2;
			Datum		v = ExecEvalExprSwitchContext(plans->row_exprs[1 + FIGURE_LOST], econtext, &n2);

			lost = n2 ? 0 : DatumGetInt32(v);
		}
		if (out - lost <= 0)
			continue;
		if (plans->renewal_expr)
		{
			bool		rn;
			Datum		r = ExecEvalExprSwitchContext(plans->renewal_expr, econtext, &rn);

			if (!rn && DatumGetBool(r))
				continue;		/* a renewal is not a new checkout */
		}
		if (n == max)
		{
			max *= 2;
			result = repalloc(result, sizeof(int64) * max);
		}
		result[n++] = int_datum_to_int64(key, plans->key_type);
	}
	ExecClearTuple(slot);
	ResetExprContext(econtext);
	sort_distinct_int64(result, &n);
	*count = n;
	return result;
}


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
	sort_distinct_int64(ids, &nids);
	idarray = int8_array(ids, nids);
	run_sql(money_of_xacts_sql(sources), 1, types, &idarray, NULL, false, SPI_OK_SELECT);
	money = SPI_tuptable;
	nmoney = SPI_processed;

	deltas_init(&set, "patron_group moved money");
	for (uint64 r = 0; r < nmoney; r++)
	{
		bool		isnull;
		XactMove	key;
		XactMove   *m;
		Datum		v[N_FIGURES];
		bool		vnull[N_FIGURES];

		CHECK_FOR_INTERRUPTS();
		key.id = DatumGetInt64(SPI_getbinval(money->vals[r], money->tupdesc, 1, &isnull));
		m = bsearch(&key, moves, n, sizeof(XactMove), compare_moves);
		if (m == NULL)
			continue;
		for (int c = 0; c < N_FIGURES; c++)
			v[c] = SPI_getbinval(money->vals[r], money->tupdesc, c + 2, &vnull[c]);
		for (int side = 0; side < 2; side++)
		{
			if (side == 0 ? !m->has_from : !m->has_to)
				continue;
			delta_add_values(&set, delta_for(&set, side == 0 ? m->from : m->to), v, vnull, true, side == 0);
		}
	}
	deltas = nonzero_deltas(&set, &np);
	if (np > 0)
		apply_deltas(deltas, np);
	deltas_free(&set);
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
	const Attachment *first;
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
	sources = totals_via(relid);
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
		if (tuple_int64(td->tg_trigtuple, desc, column_of(td, first->via_id_name), &id) &&
			tuple_int64(td->tg_trigtuple, desc, column_of(td, first->via_patron_name), &patron))
		{
			XactMove	move = {id, true, patron, false, 0};
			int			one = 1;

			/* the account first, then read the money (see apply_via_deltas) */
			(void) lock_accounts(&patron, one, NULL);
			move_xact_money(sources, &move, 1);
		}
	}
	else if (TRIGGER_FIRED_BY_UPDATE(ev) && TRIGGER_FIRED_AFTER(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev))
	{
		SPITupleTable *changed;
		uint64		nchanged;

		/*
		 * The transactions whose patron changed: id, old patron, new patron.
		 * It reads the transition tables, so it is planned each time: a kept
		 * plan cannot name them.
		 */
		spi_exec(psprintf("SELECT o.%s::pg_catalog.int8, o.%s::pg_catalog.int8, n.%s::pg_catalog.int8 "
						  "FROM patron_group_old o JOIN patron_group_new n "
						  "ON o.%s OPERATOR(pg_catalog.=) n.%s "
						  "WHERE o.%s IS DISTINCT FROM n.%s",
						  first->via_id_column, first->via_patron_column,
						  first->via_patron_column, first->via_id_column,
						  first->via_id_column, first->via_patron_column,
						  first->via_patron_column));
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
			sort_distinct_int64(both, &nboth);
			(void) lock_accounts(both, nboth, NULL);
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
