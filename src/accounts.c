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
 * Set while the extension itself writes the library system's household
 * columns, or follows a change of them: the patron table's own trigger
 * then leaves the households alone.
 */
bool		writing_households = false;

/*
 * A patron's group or lead changed: where the library system keeps
 * households (group_column, lead_column), write them, so that its own
 * screens agree.  A group takes the household of its first member; a
 * patron who leaves gets the column's default (Evergreen: a household of
 * their own).  A patron the library system deleted is left as it left them.
 */
static void
household_follows(int64 patron, bool grouped, int64 group, bool group_changed, bool lead)
{
	const Attachment *a = mapping_patrons(true);
	Oid			types[3] = {INT8OID, INT8OID, BOOLOID};
	Datum		values[3] = {Int64GetDatum(patron), Int64GetDatum(group), BoolGetDatum(lead)};
	char	   *col;
	char	   *alive;
	bool		household_null = true;
	Datum		household = (Datum) 0;

	if (a == NULL || a->group_name == NULL)
		return;
	col = (char *) quote_identifier(a->group_name);
	alive = psprintf("NOT EXISTS (SELECT FROM %s v WHERE v.patron_id OPERATOR(pg_catalog.=) p.%s AND v.is_deleted)",
					 a->mapping_name, a->id_column);

	/*
	 * A group without a household takes its first member's, unless another
	 * group has it (the library system's households disagree with the
	 * groups there; the members' columns are then left alone).  This holds
	 * when the extension follows the library system too.  The patron's
	 * household is read from the library system's table as its owner; the
	 * group's is written as the extension owner.
	 */
	if (group_changed && grouped)
	{
		bool		isnull;

		ils_exec(a->relid,
				 psprintf("SELECT p.%s::pg_catalog.int8 FROM %s p WHERE p.%s OPERATOR(pg_catalog.=) $1",
						  col, a->relname, a->id_column),
				 1, types, values, NULL, false, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			household = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
			{
				values[1] = household;
				run_sql("UPDATE " PG_SCHEMA ".groups g SET household = $2 "
						"WHERE g.group_id OPERATOR(pg_catalog.=) $1 AND g.household IS NULL "
						"AND NOT EXISTS (SELECT FROM " PG_SCHEMA ".groups o "
						"WHERE o.household OPERATOR(pg_catalog.=) $2)",
						2, types, (Datum[]) {Int64GetDatum(group), household}, NULL, false, SPI_OK_UPDATE);
				values[1] = Int64GetDatum(group);
			}
		}
		/* the group's household now, which its members' columns take */
		run_sql("SELECT household FROM " PG_SCHEMA ".groups WHERE group_id OPERATOR(pg_catalog.=) $1",
				1, types + 1, values + 1, NULL, false, SPI_OK_SELECT);
		if (SPI_processed == 1)
			household = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &household_null);
	}
	if (writing_households)
		return;					/* the library system wrote its columns itself */
	writing_households = true;
	PG_TRY();
	{
		if (group_changed && grouped && !household_null)
		{
			values[1] = household;
			ils_exec(a->relid,
					 psprintf("UPDATE %s p SET %s = $2 WHERE p.%s OPERATOR(pg_catalog.=) $1 "
							  "AND p.%s IS DISTINCT FROM $2 AND %s",
							  a->relname, col, a->id_column, col, alive),
					 2, types, values, NULL, false, SPI_OK_UPDATE);
		}
		else if (group_changed && !grouped)
			ils_exec(a->relid,
					 psprintf("UPDATE %s p SET %s = DEFAULT WHERE p.%s OPERATOR(pg_catalog.=) $1 AND %s",
							  a->relname, col, a->id_column, alive),
					 1, types, values, NULL, false, SPI_OK_UPDATE);
		if (a->lead_name)
			ils_exec(a->relid,
					 psprintf("UPDATE %s p SET %s = $3 WHERE p.%s OPERATOR(pg_catalog.=) $1 "
							  "AND p.%s IS DISTINCT FROM $3 AND %s",
							  a->relname, quote_identifier(a->lead_name), a->id_column,
							  quote_identifier(a->lead_name), alive),
					 3, types, values, NULL, false, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		writing_households = false;
	}
	PG_END_TRY();
}

/* A grouped patron's lead flag, as the library system's lead column has it. */
static void
set_lead_from_column(const Attachment *a, int64 patron, const char *reason)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(patron)};

	bool		isnull;
	bool		is_lead;

	lock_groups_of_accounts(&patron, 1);
	ils_exec(a->relid,
			 psprintf("SELECT COALESCE(p.%s, false) FROM %s p WHERE p.%s OPERATOR(pg_catalog.=) $1",
					  quote_identifier(a->lead_name), a->relname, a->id_column),
			 1, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return;
	is_lead = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	history_context_set(NULL, reason);
	run_sql("UPDATE " PG_SCHEMA ".accounts a SET is_lead = $2 "
			"WHERE a.patron_id OPERATOR(pg_catalog.=) $1 "
			"AND a.group_id IS NOT NULL AND a.is_lead IS DISTINCT FROM $2",
			2, (Oid[]) {INT8OID, BOOLOID}, (Datum[]) {Int64GetDatum(patron), BoolGetDatum(is_lead)},
			NULL, false, SPI_OK_UPDATE);
	history_context_clear();
}

/*
 * The library system changed households itself (Evergreen's staff client
 * sets usrgroup, or master_account): each patron whose household changed
 * joins the group of another patron of that household (a new group, if
 * that one is in none), or leaves the group when nobody else has it; a
 * changed lead flag becomes the lead.  The reason in the history says so.
 */
static void
follow_households(TriggerData *td, const Attachment *a)
{
	const char *col = quote_identifier(a->group_name);
	const char *lead = a->lead_name ? quote_identifier(a->lead_name) : NULL;
	SPITupleTable *tt;
	uint64		n;
	const char *reason = "household changed in the library system";

	spi_exec(psprintf("SELECT n.%s::pg_catalog.int8, n.%s::pg_catalog.int8, %s, o.%s IS DISTINCT FROM n.%s "
					  "FROM patron_group_old o JOIN patron_group_new n ON o.%s OPERATOR(pg_catalog.=) n.%s "
					  "WHERE o.%s IS DISTINCT FROM n.%s%s ORDER BY 1",
					  a->id_column, col, lead ? psprintf("COALESCE(n.%s, false)", lead) : "false",
					  col, col, a->id_column, a->id_column, col, col,
					  lead ? psprintf(" OR o.%s IS DISTINCT FROM n.%s", lead, lead) : ""));
	tt = SPI_tuptable;
	n = SPI_processed;
	writing_households = true;
	PG_TRY();
	{
		for (uint64 r = 0; r < n; r++)
		{
			bool		isnull,
						household_null;
			int64		patron = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
			Datum		household = SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &household_null);
			bool		is_lead = DatumGetBool(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
			bool		moved = DatumGetBool(SPI_getbinval(tt->vals[r], tt->tupdesc, 4, &isnull));
			Oid			types[2] = {INT8OID, INT8OID};
			Datum		values[2] = {household, Int64GetDatum(patron)};
			int64		group = 0;
			bool		grouped;

			CHECK_FOR_INTERRUPTS();
			/* the patron's group now, and whether the library system deleted them */
			run_sql(psprintf("SELECT a.group_id, v.is_deleted FROM " PG_SCHEMA ".accounts a "
							 "JOIN %s ON v.patron_id OPERATOR(pg_catalog.=) a.patron_id "
							 "WHERE a.patron_id OPERATOR(pg_catalog.=) $2",
							 ils_rows_sql(a->mapping, "v", "ARRAY[$2]::pg_catalog.int8[]", NULL)),
					2, types, values, NULL, false, SPI_OK_SELECT);
			if (SPI_processed != 1 ||
				DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
				continue;
			(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &grouped);
			grouped = !grouped;
			if (grouped)
				group = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			if (moved)
			{
				int64		other = 0;
				int64		other_group = 0;
				Datum		others;

				if (!household_null)
				{
					/* the household's other patrons, read as the table's owner */
					ils_exec(a->relid,
							 psprintf("SELECT pg_catalog.array_agg(p.%s::pg_catalog.int8) FROM %s p "
									  "JOIN %s v ON v.patron_id OPERATOR(pg_catalog.=) p.%s "
									  "WHERE p.%s OPERATOR(pg_catalog.=) $1 AND p.%s OPERATOR(pg_catalog.<>) $2 "
									  "AND NOT v.is_deleted",
									  a->id_column, a->relname, a->mapping_name, a->id_column,
									  col, a->id_column),
							 2, types, values, NULL, false, SPI_OK_SELECT);
					others = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
					run_sql("SELECT a.patron_id, COALESCE(a.group_id, 0) FROM " PG_SCHEMA ".accounts a "
							"WHERE a.patron_id OPERATOR(pg_catalog.=) ANY ($1) "
							"ORDER BY a.group_id IS NULL, a.group_id, a.patron_id LIMIT 1",
							1, (Oid[]) {INT8ARRAYOID}, &others, isnull ? "n" : NULL, false, SPI_OK_SELECT);
					if (SPI_processed == 1)
					{
						other = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
						other_group = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
					}
				}
				if (other != 0 && (!grouped || other_group != group))
				{
					group = move_patrons(&patron, 1, other, reason);
					grouped = true;
					/* a household lead that was alone until now leads the new group */
					if (lead && other_group == 0)
						set_lead_from_column(a, other, reason);
				}
				else if (other == 0 && grouped)
				{
					lock_groups_of_accounts(&patron, 1);
					history_context_set(NULL, reason);
					run_sql("UPDATE " PG_SCHEMA ".accounts SET group_id = NULL, is_lead = false, "
							"share_circulations = false, share_bills = false, "
							"share_circulations_until = NULL, share_bills_until = NULL "
							"WHERE patron_id OPERATOR(pg_catalog.=) $2",
							2, types, values, NULL, false, SPI_OK_UPDATE);
					history_context_clear();
					grouped = false;
				}
			}
			if (lead && grouped)
			{
				Oid			ltypes[2] = {INT8OID, BOOLOID};
				Datum		lvalues[2] = {Int64GetDatum(patron), BoolGetDatum(is_lead)};

				lock_groups_of_accounts(&patron, 1);
				history_context_set(NULL, reason);
				run_sql("UPDATE " PG_SCHEMA ".accounts SET is_lead = $2 "
						"WHERE patron_id OPERATOR(pg_catalog.=) $1 AND is_lead OPERATOR(pg_catalog.<>) $2",
						2, ltypes, lvalues, NULL, false, SPI_OK_UPDATE);
				history_context_clear();
			}
		}
	}
	PG_FINALLY();
	{
		writing_households = false;
	}
	PG_END_TRY();
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
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];

	if (a->group_name && !writing_households)
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
	values[0] = int8_array(newly, n);
	lock_groups_of_accounts(newly, n);
	history_context_set(NULL, "deleted in the library system");
	run_kept(kept_plan(&plan,
					   "UPDATE " PG_SCHEMA ".accounts SET group_id = NULL, is_lead = false, "
					   "share_circulations = false, share_bills = false, "
					   "share_circulations_until = NULL, share_bills_until = NULL "
					   "WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1) AND group_id IS NOT NULL",
					   1, types),
			 values, NULL, false, SPI_OK_UPDATE);
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
