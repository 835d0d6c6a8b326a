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
 * The limits a patron's group exceeds: rows (name, figure, limit, group_id),
 * for patron $1 with $2 more loans to come.  No rows for a patron in no group.
 * The overdue count is computed only when the group has an overdue limit: it
 * reads the circulation tables.
 */
static char *
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

static TextPlan violations_plan;
static SPIPlanPtr lock_accounts_plan = NULL;
static SPIPlanPtr lock_groups_plan = NULL;

/*
 * Run violations_sql for one patron; the rows are in SPI_tuptable.  The
 * text changes only with the attachments, so its plan is kept while the
 * text stays the same: a checkout is not planned again each time.
 */
static void
find_violations(const char *sql, int64 patron, int pending)
{
	Oid			types[2] = {INT8OID, NUMERICOID};
	Datum		values[2];

	values[0] = Int64GetDatum(patron);
	values[1] = DirectFunctionCall1(int4_numeric, Int32GetDatum(pending));
	if (SPI_execute_plan(kept_plan_for_text(&violations_plan, sql, 2, types),
						 values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the group limits");
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
	find_violations(violations_sql(load_totals_sources(InvalidOid)), patron, 1);
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
	char		nulls[6] = "      ";
	bool		has_group = !PG_ARGISNULL(0);
	char	   *before = NULL;

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
			if (numeric_is_nan(PG_GETARG_NUMERIC(1)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("max_balance_owed must be a number")));
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

	SPI_connect();
	become_extension_owner(&oc);
	if (has_group)
	{
		/* lock the group so that it cannot disappear under the new row */
		if (SPI_execute_with_args("SELECT FROM " PG_SCHEMA ".groups g "
								  "WHERE g.group_id OPERATOR(pg_catalog.=) $1 FOR KEY SHARE",
								  1, types, values, nulls, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not lock the group");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("group " INT64_FORMAT " does not exist", PG_GETARG_INT64(0))));
	}
	if (SPI_execute_with_args("SELECT max_balance_owed, max_items_out, max_items_overdue, max_items_lost "
							  "FROM " PG_SCHEMA ".limits l WHERE l.group_id IS NOT DISTINCT FROM $1 FOR UPDATE",
							  1, types, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the limits");
	if (SPI_processed == 1)
		before = limits_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (SPI_execute_with_args("INSERT INTO " PG_SCHEMA ".limits AS l (group_id, max_balance_owed, max_items_out, "
							  "max_items_overdue, max_items_lost, set_by) VALUES ($1, $2, $3, $4, $5, $6) "
							  "ON CONFLICT ON CONSTRAINT limits_one_per_group DO UPDATE "
							  "SET max_balance_owed = EXCLUDED.max_balance_owed, "
							  "max_items_out = EXCLUDED.max_items_out, "
							  "max_items_overdue = EXCLUDED.max_items_overdue, "
							  "max_items_lost = EXCLUDED.max_items_lost, "
							  "set_at = pg_catalog.now(), set_by = EXCLUDED.set_by "
							  "RETURNING max_balance_owed, max_items_out, max_items_overdue, max_items_lost",
							  6, types, values, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store the limits");
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

	SPI_connect();
	become_extension_owner(&oc);
	if (SPI_execute_with_args("DELETE FROM " PG_SCHEMA ".limits l WHERE l.group_id IS NOT DISTINCT FROM $1 "
							  "RETURNING max_balance_owed, max_items_out, max_items_overdue, max_items_lost",
							  1, types, values, nulls, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not remove the limits");
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
	override_lxid = MyProc->lxid;
	PG_RETURN_VOID();
}

Datum
pg_limits_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	OwnerContext oc;
	TotalsSource *src = NULL;
	ListCell   *lc;
	char	   *vsql;
	int64	   *patrons;
	uint64		npatrons;
	Datum	   *pdatums;
	ArrayType  *parray;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	bool		overridden = false;
	List	   *sources;
	bool		use_override = override_lxid == MyProc->lxid && override_reason != NULL;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || td->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("limits_trigger must be created by patron_group.enforce_limits")));

	SPI_connect();
	SPI_register_trigger_data(td);
	become_extension_owner(&oc);

	sources = load_totals_sources(InvalidOid);
	foreach(lc, sources)
	{
		TotalsSource *s = lfirst(lc);

		if (!s->is_money && s->relid == RelationGetRelid(td->tg_relation))
			src = s;
	}
	if (src == NULL)
	{
		/* detached: nothing counts here any more */
		restore_user(&oc);
		SPI_finish();
		return PointerGetDatum(NULL);
	}

	/* the patrons with a new open loan in this statement, in lock order */
	{
		int			n;

		patrons = new_open_loans(td, &n);
		npatrons = n;
	}
	if (npatrons == 0)
	{
		restore_user(&oc);
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	pdatums = palloc(sizeof(Datum) * npatrons);
	for (uint64 r = 0; r < npatrons; r++)
		pdatums[r] = Int64GetDatum(patrons[r]);
	parray = construct_array(pdatums, (int) npatrons, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	values[0] = PointerGetDatum(parray);

	/*
	 * Lock the accounts, then their groups, in the lock order, before reading
	 * the figures.  The totals trigger has usually locked them already; this
	 * keeps the check right whatever changed the totals.
	 */
	kept_plan(&lock_accounts_plan,
			  "SELECT FROM " PG_SCHEMA ".accounts a "
			  "WHERE a.patron_id OPERATOR(pg_catalog.=) ANY ($1) "
			  "ORDER BY a.patron_id FOR NO KEY UPDATE", 1, types);
	kept_plan(&lock_groups_plan,
			  "SELECT FROM " PG_SCHEMA ".groups g "
			  "WHERE g.group_id OPERATOR(pg_catalog.=) ANY (SELECT a.group_id "
			  "FROM " PG_SCHEMA ".accounts a "
			  "WHERE a.patron_id OPERATOR(pg_catalog.=) ANY ($1)) "
			  "ORDER BY g.group_id FOR NO KEY UPDATE", 1, types);
	if (SPI_execute_plan(lock_accounts_plan, values, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_execute_plan(lock_groups_plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the accounts and groups");

	vsql = violations_sql(sources);
	for (uint64 p = 0; p < npatrons; p++)
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

/*
 * payment_plan(patron_id, amount, first_member): how a payment of amount
 * would be spread over the open balances of the patron's group, as rows the
 * library system can insert into its own payment table.  Nothing is written.
 *
 * An open balance is, for money attached through a transaction table, a
 * transaction's charges minus its payments (over every money table naming
 * that transaction table); for money naming the patron directly, the
 * patron's charges minus payments as one line with no transaction.  Lines
 * are paid oldest first (ascending transaction id; a patron's direct line
 * after the transactions), the chosen member's lines before everybody
 * else's.  Staff see every member; a patron-facing session acting for a lead
 * sees the lead and the members who consent to share their bills.
 */
PG_FUNCTION_INFO_V1(pg_payment_plan);

Datum
pg_payment_plan(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OwnerContext oc;
	int64		patron;
	int64		viewer = 0;
	bool		patron_facing;
	Numeric		amount;
	StringInfoData lines;
	ListCell   *lc;
	Oid			types[4] = {INT8OID, INT8OID, NUMERICOID, INT8OID};
	Datum		values[4];
	char		nulls[4] = "    ";
	bool		isnull;
	Datum		members;
	char	   *sql;

	require_arg(fcinfo, 0, "patron_id");
	require_arg(fcinfo, 1, "amount");
	patron = PG_GETARG_INT64(0);
	amount = PG_GETARG_NUMERIC(1);
	if (numeric_is_nan(amount) ||
		DatumGetBool(DirectFunctionCall2(numeric_le, NumericGetDatum(amount),
										 DirectFunctionCall1(int4_numeric, Int32GetDatum(0)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the amount of a payment must be a positive number")));
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	patron_facing = patron_facing_about(patron, &viewer,
										"a patron-facing session may plan payments only as the patron it acts for");
	become_extension_owner(&oc);

	/* the members whose bills the caller may see */
	values[0] = Int64GetDatum(patron);
	values[1] = Int64GetDatum(viewer);
	if (!patron_facing)
		nulls[1] = 'n';
	if (SPI_execute_with_args("SELECT a.group_id, a.is_lead, "
							  "(SELECT pg_catalog.array_agg(m.patron_id ORDER BY m.patron_id) "
							  " FROM " PG_SCHEMA ".accounts m "
							  " WHERE m.group_id OPERATOR(pg_catalog.=) a.group_id "
							  " AND ($2 IS NULL OR m.patron_id OPERATOR(pg_catalog.=) $2 OR "
							  CONSENT_IN_FORCE("m", "bills") ")) "
							  "FROM " PG_SCHEMA ".accounts a WHERE a.patron_id OPERATOR(pg_catalog.=) $1",
							  2, types, values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the group");
	isnull = true;
	if (SPI_processed == 1)
		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("patron " INT64_FORMAT " is not in a group", patron)));
	if (patron_facing &&
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a lead of the group may plan a payment for it")));
	members = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	members = PointerGetDatum(DatumGetArrayTypePCopy(members));

	if (!PG_ARGISNULL(2))
	{
		Oid			t1[2] = {INT8ARRAYOID, INT8OID};
		Datum		v1[2] = {members, PG_GETARG_DATUM(2)};

		if (SPI_execute_with_args("SELECT $2 OPERATOR(pg_catalog.=) ANY ($1)", 2, t1, v1, NULL,
								  true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not check the member");
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("patron " INT64_FORMAT " is not a member of the group whose bills this session may see",
							PG_GETARG_INT64(2))));
	}

	/* one signed amount per counted money row, with its transaction */
	initStringInfo(&lines);
	foreach(lc, load_totals_sources(InvalidOid))
	{
		TotalsSource *s = lfirst(lc);

		if (!s->is_money)
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

	sql = psprintf("WITH l AS (SELECT u.tt, u.xact, u.patron, pg_catalog.sum(u.amt) AS bal "
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
	{
		Oid			t2[3] = {INT8ARRAYOID, NUMERICOID, INT8OID};
		Datum		v2[3] = {members, NumericGetDatum(amount), PG_GETARG_DATUM(2)};
		char		n2[3] = {' ', ' ', PG_ARGISNULL(2) ? 'n' : ' '};

		if (SPI_execute_with_args(sql, 3, t2, v2, n2, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the open balances");
	}
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		out[5];
		bool		outnull[5];

		for (int c = 0; c < 5; c++)
			out[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &outnull[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, outnull);
	}
	restore_user(&oc);
	SPI_finish();
	return (Datum) 0;
}
