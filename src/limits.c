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
							  " AND ($2 IS NULL OR m.patron_id OPERATOR(pg_catalog.=) $2 OR (m.share_bills AND "
							  " (m.share_bills_until IS NULL OR m.share_bills_until OPERATOR(pg_catalog.>) pg_catalog.now())))) "
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
		const char *sign;

		if (!s->is_money)
			continue;
		sign = strcmp(s->money_kind, "payment") == 0 ? "OPERATOR(pg_catalog.-)" : "";
		if (lines.len)
			appendStringInfoString(&lines, " UNION ALL ");
		/* the condition is evaluated on the money row alone, as the totals do */
		if (OidIsValid(s->via_relid))
			appendStringInfo(&lines,
							 "SELECT %u::pg_catalog.oid AS tt, t.%s::pg_catalog.int8 AS xact, "
							 "t.%s::pg_catalog.int8 AS patron, %s r.a::pg_catalog.numeric AS amt "
							 "FROM (SELECT r.%s AS k, r.%s AS a FROM %s r WHERE (%s)) r "
							 "JOIN %s t ON t.%s OPERATOR(pg_catalog.=) r.k "
							 "WHERE t.%s OPERATOR(pg_catalog.=) ANY ($1)",
							 s->via_relid, s->via_id_column, s->via_patron_column, sign,
							 s->patron_column, s->amount_column, s->relname, s->condition,
							 s->via_relname, s->via_id_column, s->via_patron_column);
		else
			appendStringInfo(&lines,
							 "SELECT NULL::pg_catalog.oid, NULL::pg_catalog.int8, "
							 "r.%s::pg_catalog.int8, %s r.%s::pg_catalog.numeric "
							 "FROM %s r WHERE (%s) AND r.%s OPERATOR(pg_catalog.=) ANY ($1)",
							 s->patron_column, sign, s->amount_column, s->relname,
							 s->condition, s->patron_column);
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
