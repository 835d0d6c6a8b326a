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

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_checkout_allowed);
PG_FUNCTION_INFO_V1(pg_override_limits);
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
violations_sql(void)
{
	char	   *overdue = overdue_sql(load_totals_sources(InvalidOid), "m.patron_id");

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

/* Run violations_sql for one patron; the rows are in SPI_tuptable. */
static void
find_violations(const char *sql, int64 patron, int pending)
{
	Oid			types[2] = {INT8OID, NUMERICOID};
	Datum		values[2];

	values[0] = Int64GetDatum(patron);
	values[1] = DirectFunctionCall1(int4_numeric, Int32GetDatum(pending));
	if (SPI_execute_with_args(sql, 2, types, values, NULL, false, 0) != SPI_OK_SELECT)
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
	find_violations(violations_sql(), patron, 1);
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

/* Record that the override let violation row r of patron pass. */
static void
record_override(int64 patron, int64 group, const char *detail)
{
	Oid			types[7] = {NAMEOID, TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	const char *app_user = history_app_user();

	values[0] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false)));
	if (app_user)
		values[1] = CStringGetTextDatum(app_user);
	else
		nulls[1] = 'n';
	values[2] = CStringGetTextDatum("limit_override");
	values[3] = Int64GetDatum(patron);
	values[4] = Int64GetDatum(group);
	values[5] = CStringGetTextDatum(override_reason);
	values[6] = CStringGetTextDatum(detail);
	if (SPI_execute_with_args("INSERT INTO " PG_SCHEMA ".history (db_role, app_user, action, "
							  "patron_id, to_group, reason, detail) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7)",
							  7, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record history");
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
	List	   *overridden = NIL;	/* of char *: patron, group, detail */
	bool		use_override = override_lxid == MyProc->lxid && override_reason != NULL;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || td->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("limits_trigger must be created by patron_group.enforce_limits")));

	SPI_connect();
	SPI_register_trigger_data(td);
	become_extension_owner(&oc);

	foreach(lc, load_totals_sources(InvalidOid))
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
	if (SPI_execute(psprintf("SELECT DISTINCT r.%s::pg_catalog.int8 FROM patron_group_new r "
							 "WHERE r.%s IS NOT NULL AND (%s) AND NOT COALESCE((%s), false) "
							 "ORDER BY 1",
							 src->patron_column, src->patron_column, src->condition,
							 src->lost_condition), false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the new loans");
	npatrons = SPI_processed;
	if (npatrons == 0)
	{
		restore_user(&oc);
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	patrons = palloc(sizeof(int64) * npatrons);
	pdatums = palloc(sizeof(Datum) * npatrons);
	for (uint64 r = 0; r < npatrons; r++)
	{
		bool		isnull;

		patrons[r] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
												 SPI_tuptable->tupdesc, 1, &isnull));
		pdatums[r] = Int64GetDatum(patrons[r]);
	}
	parray = construct_array(pdatums, (int) npatrons, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	values[0] = PointerGetDatum(parray);

	/*
	 * Lock the accounts, then their groups, in the lock order, before reading
	 * the figures.  The totals trigger has usually locked them already; this
	 * keeps the check right whatever changed the totals.
	 */
	if (SPI_execute_with_args("SELECT FROM " PG_SCHEMA ".accounts a "
							  "WHERE a.patron_id OPERATOR(pg_catalog.=) ANY ($1) "
							  "ORDER BY a.patron_id FOR NO KEY UPDATE",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_execute_with_args("SELECT FROM " PG_SCHEMA ".groups g "
							  "WHERE g.group_id OPERATOR(pg_catalog.=) ANY (SELECT a.group_id "
							  "FROM " PG_SCHEMA ".accounts a "
							  "WHERE a.patron_id OPERATOR(pg_catalog.=) ANY ($1)) "
							  "ORDER BY g.group_id FOR NO KEY UPDATE",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the accounts and groups");

	vsql = violations_sql();
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
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				overridden = lappend(overridden, psprintf(INT64_FORMAT, patrons[p]));
				overridden = lappend(overridden, psprintf(INT64_FORMAT, group));
				overridden = lappend(overridden, violation_text(r));
			}
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

	/* the override covers this one statement: record what it let through */
	for (int i = 0; i < list_length(overridden); i += 3)
		record_override(pg_strtoint64(list_nth(overridden, i)),
						pg_strtoint64(list_nth(overridden, i + 1)),
						list_nth(overridden, i + 2));
	if (overridden != NIL)
		override_lxid = InvalidLocalTransactionId;

	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}
