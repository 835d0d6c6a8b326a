/*
 * payments.c
 *		payment_plan(): how a payment for a group would be spread over its
 *		members' open balances.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "patron_group.h"

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
	Oid			types[4] = {INT8OID, INT8OID, NUMERICOID, INT8OID};
	Datum		values[4];
	char		nulls[4];
	bool		isnull;
	Datum		members;

	memset(nulls, ' ', sizeof(nulls));
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
	run_sql(psprintf("SELECT a.group_id, a.is_lead, "
					 "(SELECT pg_catalog.array_agg(m.patron_id ORDER BY m.patron_id) "
					 " FROM " PG_SCHEMA ".accounts m "
					 " WHERE m.group_id OPERATOR(pg_catalog.=) a.group_id "
					 " AND ($2 IS NULL OR m.patron_id OPERATOR(pg_catalog.=) $2 OR %s)) "
					 "FROM " PG_SCHEMA ".accounts a WHERE a.patron_id OPERATOR(pg_catalog.=) $1",
					 consent_sql("m", "bills")),
			2, types, values, nulls, true, SPI_OK_SELECT);
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

		run_sql("SELECT $2 OPERATOR(pg_catalog.=) ANY ($1)", 2, t1, v1, NULL, true, SPI_OK_SELECT);
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("patron " INT64_FORMAT " is not a member of the group whose bills this session may see",
							PG_GETARG_INT64(2))));
	}

	/* the open balances, and how much of the amount goes to each */
	{
		Oid			t2[3] = {INT8ARRAYOID, NUMERICOID, INT8OID};
		Datum		v2[3] = {members, NumericGetDatum(amount), PG_GETARG_DATUM(2)};
		char		n2[3] = {' ', ' ', PG_ARGISNULL(2) ? 'n' : ' '};

		run_sql(payment_lines_sql(get_mapping()->totals), 3, t2, v2, n2, true, SPI_OK_SELECT);
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
