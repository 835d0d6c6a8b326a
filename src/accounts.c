/*
 * accounts.c
 *		Triggers that keep patron_group's accounts in step with the library
 *		system, whatever SQL changed it:
 *
 *		- patrons_trigger, on the attached patron table: one account row per
 *		  patron, created on insert and removed on delete or truncate, and
 *		  following a patron whose id changes;
 *		- accounts_trigger, on patron_group.accounts: group member and lead
 *		  counts, the carrying of a member's totals from group to group,
 *		  removal of an emptied group, and a history row for every
 *		  membership, lead and consent change, so that a DBA's direct UPDATE
 *		  is recorded as faithfully as a group operation.
 *
 * Lock order (locks.c): the group updates made here happen while the caller
 * already holds the account row, and the group operations lock the groups
 * they touch beforehand (and patrons_trigger does the same before a bulk
 * delete), so the updates below never take a lock out of order.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_patrons_trigger);
PG_FUNCTION_INFO_V1(pg_accounts_trigger);

/* The patron ids an SQL over a transition table lists, as a Datum of int8[], or 0. */
static Datum
ids_of(const char *sql, int64 **ids, int *n)
{
	bool		isnull;
	Datum		d;
	Datum	   *elems;
	bool	   *nulls;

	spi_exec(sql);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*n = 0;
	if (isnull)
		return (Datum) 0;
	d = PointerGetDatum(DatumGetArrayTypePCopy(d));
	deconstruct_array(DatumGetArrayTypeP(d), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, n);
	*ids = palloc(sizeof(int64) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		(*ids)[i] = DatumGetInt64(elems[i]);
	return d;
}

/*
 * The patron ids of the rows of a transition table for which 'deleted' (the
 * patron mapping's is_deleted, over a row of rel) holds, sorted.
 */
static int64 *
deleted_rows(Relation rel, Tuplestorestate *rows, ExprState *deleted, ExprContext *econtext,
			 int idattnum, int *count)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	int			max = 16;
	int			n = 0;
	int64	   *ids = palloc(sizeof(int64) * max);
	int			ptr = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);

	tuplestore_select_read_pointer(rows, ptr);
	tuplestore_rescan(rows);
	econtext->ecxt_scantuple = slot;
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		isnull;
		Datum		d;

		CHECK_FOR_INTERRUPTS();
		ResetExprContext(econtext);
		d = ExecEvalExprSwitchContext(deleted, econtext, &isnull);
		if (isnull || !DatumGetBool(d))
			continue;
		d = slot_getattr(slot, idattnum, &isnull);
		if (isnull)
			continue;
		if (n == max)
			ids = repalloc(ids, sizeof(int64) * (max *= 2));
		ids[n++] = int_datum_to_int64(d, TupleDescAttr(RelationGetDescr(rel), idattnum - 1)->atttypid);
	}
	ExecDropSingleTupleTableSlot(slot);
	sort_distinct_int64(ids, &n);
	*count = n;
	return ids;
}

/*
 * An UPDATE of patrons (deleted_when given): a patron the library system
 * has just deleted (Evergreen's DELETE rule and actor.usr_delete() set
 * deleted = true) leaves the group, lead and consent with it, and the
 * history says why.
 */
static void
patrons_updated(TriggerData *td)
{
	const Attachment *a = mapping_patrons(false);
	Expr	   *expr = compile_view_column(a, RelationGetRelid(td->tg_relation), "is_deleted");
	ExprContext *econtext;
	ExprState  *deleted;
	int			idattnum = SPI_fnumber(RelationGetDescr(td->tg_relation), td->tg_trigger->tgargs[0]);
	int64	   *before,
			   *after,
			   *newly;
	int			nbefore,
				nafter,
				n = 0;

	if (a->group_name)
		follow_households(td, a);
	if (expr == NULL || idattnum <= 0)
		return;
	econtext = CreateStandaloneExprContext();
	deleted = ExecInitExpr(expr, NULL);
	before = deleted_rows(td->tg_relation, td->tg_oldtable, deleted, econtext, idattnum, &nbefore);
	after = deleted_rows(td->tg_relation, td->tg_newtable, deleted, econtext, idattnum, &nafter);
	FreeExprContext(econtext, true);
	newly = palloc(sizeof(int64) * Max(nafter, 1));
	for (int i = 0; i < nafter; i++)
		if (!bsearch(&after[i], before, nbefore, sizeof(int64), compare_int64))
			newly[n++] = after[i];
	if (n == 0)
		return;
	lock_groups_of_accounts(newly, n);
	history_context_set(NULL, "deleted in the library system");
	set_accounts_group(newly, n, 0);
	history_context_clear();
}

/* patrons_trigger: keep one account row per patron of the attached table. */
Datum
pg_patrons_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	TriggerEvent ev;
	const char *id;
	OwnerContext oc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(((TriggerData *) fcinfo->context)->tg_event) ||
		((TriggerData *) fcinfo->context)->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("patrons_trigger must be an AFTER trigger with the id column as argument"),
				 errhint("Create it with patron_group.attach_patrons().")));
	td = (TriggerData *) fcinfo->context;
	ev = td->tg_event;
	id = quote_identifier(td->tg_trigger->tgargs[0]);

	refuse_if_replicated();
	SPI_connect();
	SPI_register_trigger_data(td);
	become_extension_owner(&oc);
	if (TRIGGER_FIRED_BY_INSERT(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev) && td->tg_newtable)
	{
		int64	   *ids;
		int			n;
		Datum		array;

		spi_exec(psprintf("INSERT INTO " PG_SCHEMA ".accounts (patron_id) "
						  "SELECT n.%s FROM patron_group_new n ON CONFLICT DO NOTHING", id));

		/*
		 * Count what the attached tables already hold for the new patrons:
		 * rows may name a patron id before the patron row exists (a library
		 * system without foreign keys, a patron deleted and inserted again).
		 */
		array = ids_of(psprintf("SELECT pg_catalog.array_agg(n.%s::pg_catalog.int8) FROM patron_group_new n", id),
					   &ids, &n);
		if (array)
			(void) rebuild_totals(DatumGetArrayTypeP(array));
	}
	else if (TRIGGER_FIRED_BY_DELETE(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev) && td->tg_oldtable)
	{
		int64	   *ids;
		int			n;

		/* in the lock order, so that a bulk DELETE cannot deadlock with a group operation */
		if (ids_of(psprintf("SELECT pg_catalog.array_agg(o.%s::pg_catalog.int8) FROM patron_group_old o", id),
				   &ids, &n))
			lock_groups_of_accounts(ids, n);
		spi_exec(psprintf("DELETE FROM " PG_SCHEMA ".accounts a USING patron_group_old o "
						  "WHERE a.patron_id OPERATOR(pg_catalog.=) o.%s", id));
	}
	else if (TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		lock_everyone();
		spi_exec("DELETE FROM " PG_SCHEMA ".accounts");
	}
	else if (TRIGGER_FIRED_BY_UPDATE(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev) && td->tg_newtable)
		patrons_updated(td);
	else if (TRIGGER_FIRED_BY_UPDATE(ev) && TRIGGER_FIRED_FOR_ROW(ev))
	{
		static SPIPlanPtr plan = NULL;
		TupleDesc	desc = RelationGetDescr(td->tg_relation);
		int			attnum = SPI_fnumber(desc, td->tg_trigger->tgargs[0]);
		Oid			types[2] = {INT8OID, INT8OID};
		int64		old_id,
					new_id;
		Datum		values[2];

		/* a patron's id changed (rare): the account follows it */
		if (tuple_int64(td->tg_trigtuple, desc, attnum, &old_id) &&
			tuple_int64(td->tg_newtuple, desc, attnum, &new_id))
		{
			values[0] = Int64GetDatum(old_id);
			values[1] = Int64GetDatum(new_id);
			run_kept(kept_plan(&plan,
							   "UPDATE " PG_SCHEMA ".accounts SET patron_id = $2 "
							   "WHERE patron_id OPERATOR(pg_catalog.=) $1", 2, types),
					 values, NULL, false, SPI_OK_UPDATE);
			/* and its totals are counted once the cascades, if any, are done */
			recount_at_commit(new_id);
		}
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("patrons_trigger fired for an unexpected event"),
				 errhint("Create it with patron_group.attach_patrons().")));
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* An account row's figures, to carry from group to group (counts int8, amounts numeric). */
typedef struct AccountTotals
{
	Datum		figures[N_FIGURES];
} AccountTotals;

/* Read the figures of an accounts row. */
static void
account_totals(TriggerData *td, HeapTuple tuple, AccountTotals *t)
{
	TupleDesc	desc = td->tg_relation->rd_att;

	for (int f = 0; f < N_FIGURES; f++)
	{
		bool		isnull;

		t->figures[f] = SPI_getbinval(tuple, desc, SPI_fnumber(desc, figure_names[f]), &isnull);
	}
}

/*
 * Record every change of a member's consent, whichever statement made it
 * (set_consent, or leaving a group, which clears it).
 */
static void
consent_history(TriggerData *td, HeapTuple oldtup, HeapTuple newtup, int64 patron,
				bool old_null, int64 old_group, bool new_null, int64 new_group)
{
	static const char *const kinds[] = {"circulations", "bills"};
	TupleDesc	desc = td->tg_relation->rd_att;

	for (size_t k = 0; k < lengthof(kinds); k++)
	{
		int			flag = SPI_fnumber(desc, psprintf("share_%s", kinds[k]));
		int			until = SPI_fnumber(desc, psprintf("share_%s_until", kinds[k]));
		bool		isnull;
		bool		old_on = false,
					new_on = false;
		bool		old_until_null = true,
					new_until_null = true;
		Datum		old_until = (Datum) 0,
					new_until = (Datum) 0;
		char	   *detail;

		if (oldtup)
		{
			old_on = DatumGetBool(SPI_getbinval(oldtup, desc, flag, &isnull));
			old_until = SPI_getbinval(oldtup, desc, until, &old_until_null);
		}
		if (newtup)
		{
			new_on = DatumGetBool(SPI_getbinval(newtup, desc, flag, &isnull));
			new_until = SPI_getbinval(newtup, desc, until, &new_until_null);
		}
		if (old_on == new_on &&
			(!new_on || (old_until_null == new_until_null &&
						 (new_until_null || DatumGetTimestampTz(old_until) == DatumGetTimestampTz(new_until)))))
			continue;
		detail = new_on && !new_until_null ?
			psprintf("%s until %s", kinds[k],
					 DatumGetCString(DirectFunctionCall1(timestamptz_out, new_until))) :
			pstrdup(kinds[k]);
		record_history(new_on ? "consent_on" : "consent_off", patron,
					   old_null, old_group, new_null, new_group, detail);
	}
}

/* Column value of an accounts row (patron_id, group_id, is_lead by number). */
static Datum
account_col(TriggerData *td, HeapTuple tuple, int attnum, bool *isnull)
{
	return heap_getattr(tuple, attnum, td->tg_relation->rd_att, isnull);
}

#define ACC_PATRON	1
#define ACC_GROUP	2
#define ACC_LEAD	3

/* accounts_trigger: group counts and history for every account change. */
Datum
pg_accounts_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "accounts_trigger", false);
	TriggerEvent ev = td->tg_event;
	HeapTuple	oldtup = NULL;
	HeapTuple	newtup = NULL;
	bool		old_null = true,
				new_null = true,
				isnull;
	int64		old_group = 0,
				new_group = 0,
				patron;
	bool		old_lead = false,
				new_lead = false;
	const char *action;
	OwnerContext oc;

	/*
	 * The extension inserts an account only for a new patron, in no group.
	 * A row that arrives already in a group is an existing membership being
	 * loaded, as pg_restore does with the groups (their counts included) and
	 * the history beside it: counting or recording it again would double
	 * both.  (Should a DBA insert one by hand, verify() reports the group's
	 * counts and rebuild() repairs them.)
	 */
	if (TRIGGER_FIRED_BY_INSERT(ev))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_DELETE(ev))
		oldtup = td->tg_trigtuple;
	else
	{
		oldtup = td->tg_trigtuple;
		newtup = td->tg_newtuple;
	}
	if (oldtup)
	{
		Datum		g = account_col(td, oldtup, ACC_GROUP, &old_null);

		old_group = old_null ? 0 : DatumGetInt64(g);
		old_lead = DatumGetBool(account_col(td, oldtup, ACC_LEAD, &isnull));
	}
	if (newtup)
	{
		Datum		g = account_col(td, newtup, ACC_GROUP, &new_null);

		new_group = new_null ? 0 : DatumGetInt64(g);
		new_lead = DatumGetBool(account_col(td, newtup, ACC_LEAD, &isnull));
	}
	patron = DatumGetInt64(account_col(td, newtup ? newtup : oldtup, ACC_PATRON, &isnull));

	/* the common case: an ungrouped patron appears or disappears */
	if (old_null && new_null)
		return PointerGetDatum(NULL);

	SPI_connect();
	become_extension_owner(&oc);
	if (old_null != new_null || old_group != new_group)
	{
		AccountTotals old_totals;
		AccountTotals new_totals;

		if (oldtup)
			account_totals(td, oldtup, &old_totals);
		if (newtup)
			account_totals(td, newtup, &new_totals);

		/* membership changed: carry the totals, lower group id first */
		if (!old_null && (new_null || old_group < new_group))
		{
			adjust_group(old_group, -1, old_lead, old_totals.figures);
			if (!new_null)
				adjust_group(new_group, 1, new_lead, new_totals.figures);
		}
		else
		{
			adjust_group(new_group, 1, new_lead, new_totals.figures);
			if (!old_null)
				adjust_group(old_group, -1, old_lead, old_totals.figures);
		}

		if (old_lead)
			record_history("lead_off", patron, false, old_group, false, old_group, NULL);
		action = history_context_action();
		if (action == NULL)
			action = newtup == NULL ? "delete" : old_null ? "join" : new_null ? "leave" : "move";
		record_history(action, patron, old_null, old_group, new_null, new_group, NULL);
		if (new_lead)
			record_history("lead_on", patron, new_null, new_group, new_null, new_group, NULL);
	}
	else if (old_lead != new_lead)
	{
		adjust_leads(new_group, new_lead ? 1 : -1);
		record_history(new_lead ? "lead_on" : "lead_off", patron,
					   false, old_group, false, new_group, NULL);
	}
	consent_history(td, oldtup, newtup, patron, old_null, old_group, new_null, new_group);
	if (newtup && (old_null != new_null || old_group != new_group || old_lead != new_lead))
		household_follows(patron, !new_null, new_group, old_null != new_null || old_group != new_group,
						  new_lead);
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}
