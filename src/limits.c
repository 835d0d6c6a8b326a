/*
 * limits.c
 *		Group limits that block checkout.
 *
 * A group may be limited in its balance owed, items out, overdue items and
 * lost items (patron_group.limits: the row with group_id NULL is the default
 * for every group, a group's row overrides it limit by limit).
 *
 *		- checkout_allowed(patron): may the patron borrow one more item now,
 *		  and if not, every exceeded limit with its figure.
 *		- limits_trigger: created by enforce_limits() on an attached
 *		  circulation table, after the totals trigger of INSERT (trigger names
 *		  sort so).  It runs once the statement's loans are counted in the
 *		  group totals, so the figures it reads include them, and a concurrent
 *		  checkout by another member has waited for the group row the totals
 *		  trigger updated and sees this one's committed totals.
 *		- override_limits(reason): lets the next refused checkout statement of
 *		  the transaction pass, recording each exceeded limit in the history.
 *
 * Items out limit: a loan may be added while the group has fewer items out
 * than the limit (so after the checkout it has at most the limit).  The other
 * limits block while the figure is above the limit.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_checkout_allowed);
PG_FUNCTION_INFO_V1(pg_override_limits);
PG_FUNCTION_INFO_V1(pg_set_limits);
PG_FUNCTION_INFO_V1(pg_clear_limits);
PG_FUNCTION_INFO_V1(pg_limits_trigger);

/* The SQLSTATE of a checkout refused by a group limit. */
#define ERRCODE_GROUP_LIMIT_EXCEEDED	MAKE_SQLSTATE('P','G','L','0','1')

/* The override of the current transaction, if any. */
static LocalTransactionId override_lxid = InvalidLocalTransactionId;
static char *override_reason = NULL;

/*
 * Run violations_sql for one patron; the rows are in SPI_tuptable.  The
 * text changes only with the attachments, so its plan is kept (run_sql):
 * a checkout is not planned again each time.
 */
static void
find_violations(const char *sql, int64 patron, int pending)
{
	Oid			types[2] = {INT8OID, NUMERICOID};
	Datum		values[2];

	values[0] = Int64GetDatum(patron);
	values[1] = DirectFunctionCall1(int4_numeric, Int32GetDatum(pending));
	run_sql(sql, 2, types, values, NULL, false, SPI_OK_SELECT);
}

/* The text of violation row r of SPI_tuptable, "items_out 3 (limit 2)". */
static char *
violation_text(uint64 r)
{
	HeapTuple	tup = SPI_tuptable->vals[r];
	TupleDesc	desc = SPI_tuptable->tupdesc;

	return psprintf("%s %s (limit %s)", SPI_getvalue(tup, desc, 1),
					SPI_getvalue(tup, desc, 2), SPI_getvalue(tup, desc, 3));
}

Datum
pg_checkout_allowed(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OwnerContext oc;
	int64		patron;
	Datum		values[5];
	bool		nulls[5];

	require_arg(fcinfo, 0, "patron_id");
	patron = PG_GETARG_INT64(0);
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	become_extension_owner(&oc);
	find_violations(violations_sql(get_mapping()->totals), patron, 1);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		values[0] = BoolGetDatum(false);
		nulls[0] = false;
		for (int c = 1; c <= 4; c++)
			values[c] = SPI_getbinval(tup, desc, c, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (SPI_processed == 0)
	{
		values[0] = BoolGetDatum(true);
		nulls[0] = false;
		for (int c = 1; c <= 4; c++)
			nulls[c] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	restore_user(&oc);
	SPI_finish();
	return (Datum) 0;
}

/* The names of the four limits, in the order of their columns and arguments. */
static const char *const limit_names[] = {"max_balance_owed", "max_items_out",
"max_items_overdue", "max_items_lost"};

/*
 * "max_balance_owed 10, max_items_out 30" for the limits of an SPI row
 * whose columns first..first+3 are the four limits; "no limits" when all
 * are NULL.
 */
static char *
limits_text(HeapTuple tup, TupleDesc desc, int first)
{
	StringInfoData text;

	initStringInfo(&text);
	for (size_t i = 0; i < lengthof(limit_names); i++)
	{
		char	   *v = SPI_getvalue(tup, desc, first + (int) i);

		if (v)
			appendStringInfo(&text, "%s%s %s", text.len ? ", " : "", limit_names[i], v);
	}
	return text.len ? text.data : "no limits";
}

/*
 * set_limits(group_id, max_balance_owed, max_items_out, max_items_overdue,
 * max_items_lost): replace a group's limits (group_id NULL: the default),
 * as the extension owner, and record the change in the history.  Changing
 * a limit is a privilege of its own, granted by grant_supervisor(), since it
 * changes what checkout refuses.
 */
Datum
pg_set_limits(PG_FUNCTION_ARGS)
{
	OwnerContext oc;
	Oid			types[6] = {INT8OID, NUMERICOID, INT8OID, INT8OID, INT8OID, NAMEOID};
	Datum		values[6];
	char		nulls[6];
	bool		has_group = !PG_ARGISNULL(0);
	char	   *before = NULL;

	memset(nulls, ' ', sizeof(nulls));
	for (int i = 1; i <= 4; i++)
	{
		bool		negative;

		if (PG_ARGISNULL(i))
		{
			nulls[i] = 'n';
			continue;
		}
		values[i] = PG_GETARG_DATUM(i);
		if (i == 1)
		{
			if (numeric_is_nan(PG_GETARG_NUMERIC(1)) || numeric_is_inf(PG_GETARG_NUMERIC(1)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("max_balance_owed must be a finite number"),
						 errhint("Pass NULL for no limit on the balance owed.")));
			negative = DatumGetBool(DirectFunctionCall2(numeric_lt, values[1],
														DirectFunctionCall1(int4_numeric, Int32GetDatum(0))));
		}
		else
			negative = PG_GETARG_INT64(i) < 0;
		if (negative)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a limit must not be negative"),
					 errhint("NULL means no limit (in the default) or the default (for a group).")));
	}
	values[0] = has_group ? PG_GETARG_DATUM(0) : (Datum) 0;
	if (!has_group)
		nulls[0] = 'n';
	values[5] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetSessionUserId(), false)));

	refuse_if_replicated();
	SPI_connect();
	become_extension_owner(&oc);
	if (has_group)
	{
		/* lock the group so that it cannot disappear under the new row */
		if (!lock_group_key(DatumGetInt64(values[0])))
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("group " INT64_FORMAT " does not exist", PG_GETARG_INT64(0))));
	}
	lock_limits(values[0], nulls[0] == 'n');
	if (SPI_processed == 1)
		before = limits_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	run_sql("INSERT INTO " PG_SCHEMA ".limits AS l (group_id, max_balance_owed, max_items_out, "
			"max_items_overdue, max_items_lost, set_by) VALUES ($1, $2, $3, $4, $5, $6) "
			"ON CONFLICT ON CONSTRAINT limits_one_per_group DO UPDATE "
			"SET max_balance_owed = EXCLUDED.max_balance_owed, "
			"max_items_out = EXCLUDED.max_items_out, "
			"max_items_overdue = EXCLUDED.max_items_overdue, "
			"max_items_lost = EXCLUDED.max_items_lost, "
			"set_at = pg_catalog.now(), set_by = EXCLUDED.set_by "
			"RETURNING max_balance_owed, max_items_out, max_items_overdue, max_items_lost",
			6, types, values, nulls, false, SPI_OK_INSERT_RETURNING);
	record_group_event("limits_set", !has_group, has_group ? PG_GETARG_INT64(0) : 0, NULL,
					   psprintf("%s%s%s", limits_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
								before ? "; was " : "", before ? before : ""));
	restore_user(&oc);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * clear_limits(group_id): remove a group's own limits (it follows the
 * default again), or the default; true when there was something to remove,
 * which is then recorded in the history.
 */
Datum
pg_clear_limits(PG_FUNCTION_ARGS)
{
	OwnerContext oc;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0)};
	char		nulls[1] = {PG_ARGISNULL(0) ? 'n' : ' '};
	bool		removed;

	refuse_if_replicated();
	SPI_connect();
	become_extension_owner(&oc);
	run_sql("DELETE FROM " PG_SCHEMA ".limits l WHERE l.group_id IS NOT DISTINCT FROM $1 "
			"RETURNING max_balance_owed, max_items_out, max_items_overdue, max_items_lost",
			1, types, values, nulls, false, SPI_OK_DELETE_RETURNING);
	removed = SPI_processed > 0;
	if (removed)
		record_group_event("limits_cleared", PG_ARGISNULL(0), PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0), NULL,
						   psprintf("was %s", limits_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)));
	restore_user(&oc);
	SPI_finish();
	PG_RETURN_BOOL(removed);
}

Datum
pg_override_limits(PG_FUNCTION_ARGS)
{
	char	   *reason;

	require_arg(fcinfo, 0, "reason");
	reason = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strspn(reason, " \t\r\n") == strlen(reason))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an override of the group limits needs a reason")));
	if (override_reason)
		pfree(override_reason);
	override_reason = MemoryContextStrdup(TopMemoryContext, reason);
	override_lxid = PG_LXID();
	PG_RETURN_VOID();
}

Datum
pg_limits_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "limits_trigger", true);
	OwnerContext oc;
	const Attachment *a;
	ListCell   *lc;
	char	   *vsql;
	int64	   *patrons;
	int			npatrons;
	bool		overridden = false;
	bool		use_override = override_lxid == PG_LXID() && override_reason != NULL;

	if (!TRIGGER_FIRED_BY_INSERT(td->tg_event) || td->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("limits_trigger must be created by patron_group.enforce_limits")));

	SPI_connect();
	SPI_register_trigger_data(td);
	become_extension_owner(&oc);

	/* detached, or not a circulation table: nothing counts here any more */
	a = attachment_covering(RelationGetRelid(td->tg_relation));
	patrons = (a == NULL || a->dropped || a->kind != MAP_CIRCULATIONS) ? NULL :
		new_open_loans(td, &npatrons);
	if (patrons == NULL || npatrons == 0)
	{
		restore_user(&oc);
		SPI_finish();
		return PointerGetDatum(NULL);
	}

	/*
	 * Lock the accounts, then their groups, in the lock order, before reading
	 * the figures.  The totals trigger has usually locked them already; this
	 * keeps the check right whatever changed the totals.
	 */
	lock_groups_of_accounts(patrons, npatrons);

	vsql = violations_sql(get_mapping()->totals);
	for (int p = 0; p < npatrons; p++)
	{
		StringInfoData detail;
		int64		group;
		bool		isnull;

		find_violations(vsql, patrons[p], 0);
		if (SPI_processed == 0)
			continue;
		group = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 4, &isnull));
		if (use_override)
		{
			/* record each limit the override lets pass (the rows go with the insert) */
			List	   *texts = NIL;

			for (uint64 r = 0; r < SPI_processed; r++)
				texts = lappend(texts, violation_text(r));
			foreach(lc, texts)
				record_history_reason("limit_override", patrons[p], true, 0, false, group,
									  override_reason, lfirst(lc));
			overridden = true;
			continue;
		}
		initStringInfo(&detail);
		for (uint64 r = 0; r < SPI_processed; r++)
			appendStringInfo(&detail, "%s%s", r ? ", " : "", violation_text(r));
		ereport(ERROR,
				(errcode(ERRCODE_GROUP_LIMIT_EXCEEDED),
				 errmsg("checkout refused: group " INT64_FORMAT " of patron " INT64_FORMAT
						" has %s %s, over its limit of %s",
						group, patrons[p],
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3)),
				 errdetail("Exceeded limits of group " INT64_FORMAT ": %s.", group, detail.data),
				 errhint("Staff may allow one checkout with patron_group.override_limits(reason).")));
	}

	/* the override covers this one statement */
	if (overridden)
		override_lxid = InvalidLocalTransactionId;

	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}
