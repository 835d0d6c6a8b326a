/*
 * verify.c
 *		verify() recomputes every total from the attached tables and returns
 *		what differs; rebuild() repairs, safely while the library keeps
 *		working.
 *
 * rebuild() locks the account rows it repairs (patron_id order) before it
 * reads the attached tables, and the groups (group_id order) before it sums
 * their members, each read in a statement of its own.  A concurrent checkout
 * either finished first (its account lock made us wait, and our fresh read
 * sees its row) or waits for us and then adds its delta to what we wrote
 * (our read did not see its uncommitted row).  Either way nothing is counted
 * twice or lost.  Under REPEATABLE READ or SERIALIZABLE a row changed after
 * our snapshot makes the lock fail with a serialization error instead.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_verify);
PG_FUNCTION_INFO_V1(pg_rebuild);

/*
 * Recompute the totals of the given patrons (NULL: all) and of their groups.
 * Returns the number of account and group rows that were wrong.  The caller
 * is connected to SPI and runs as the extension owner.
 */
uint64
rebuild_totals(ArrayType *patron_ids)
{
	List	   *sources = load_totals_sources(InvalidOid);
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {PointerGetDatum(patron_ids)};
	const char *where = patron_ids ? "WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1)" : "";
	int			nargs = patron_ids ? 1 : 0;
	uint64		fixed;

	if (SPI_execute_with_args(psprintf("SELECT NULL FROM " PG_SCHEMA ".accounts %s "
									   "ORDER BY patron_id FOR UPDATE", where),
							  nargs, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock accounts");
	if (SPI_execute_with_args(psprintf("UPDATE " PG_SCHEMA ".accounts a SET "
									   "items_out = x.o, items_lost = x.l, amount_billed = x.b, amount_paid = x.y "
									   "FROM (SELECT a2.patron_id, COALESCE(e.o, 0) AS o, COALESCE(e.l, 0) AS l, "
									   "COALESCE(e.b, 0) AS b, COALESCE(e.y, 0) AS y "
									   "FROM " PG_SCHEMA ".accounts a2 LEFT JOIN (%s) e ON e.p OPERATOR(pg_catalog.=) a2.patron_id %s) x "
									   "WHERE a.patron_id OPERATOR(pg_catalog.=) x.patron_id "
									   "AND (a.items_out, a.items_lost, a.amount_billed, a.amount_paid) "
									   "IS DISTINCT FROM (x.o, x.l, x.b, x.y)",
									   expected_totals_sql(sources, patron_ids != NULL),
									   patron_ids ? "WHERE a2.patron_id OPERATOR(pg_catalog.=) ANY ($1)" : ""),
							  nargs, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not rebuild account totals");
	fixed = SPI_processed;

	/* the groups of those patrons: lock in order, then sum their members */
	if (SPI_execute_with_args(psprintf("SELECT NULL FROM " PG_SCHEMA ".groups "
									   "WHERE group_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT group_id FROM "
									   PG_SCHEMA ".accounts %s)) ORDER BY group_id FOR UPDATE", where),
							  nargs, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock groups");
	if (SPI_execute_with_args(psprintf("UPDATE " PG_SCHEMA ".groups g SET "
									   "member_count = s.n, lead_count = s.leads, items_out = s.o, items_lost = s.l, "
									   "amount_billed = s.b, amount_paid = s.y "
									   "FROM (SELECT group_id, pg_catalog.count(*)::int4 AS n, "
									   "pg_catalog.count(*) FILTER (WHERE is_lead)::int4 AS leads, "
									   "pg_catalog.sum(items_out)::int8 AS o, pg_catalog.sum(items_lost)::int8 AS l, "
									   "pg_catalog.sum(amount_billed) AS b, pg_catalog.sum(amount_paid) AS y "
									   "FROM " PG_SCHEMA ".accounts WHERE group_id OPERATOR(pg_catalog.=) ANY "
									   "(ARRAY(SELECT group_id FROM " PG_SCHEMA ".accounts %s)) GROUP BY group_id) s "
									   "WHERE g.group_id OPERATOR(pg_catalog.=) s.group_id "
									   "AND (g.member_count, g.lead_count, g.items_out, g.items_lost, g.amount_billed, g.amount_paid) "
									   "IS DISTINCT FROM (s.n, s.leads, s.o, s.l, s.b, s.y)", where),
							  nargs, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not rebuild group totals");
	return fixed + SPI_processed;
}

/* rebuild(patron_ids bigint[] DEFAULT NULL): repair totals; returns rows fixed. */
Datum
pg_rebuild(PG_FUNCTION_ARGS)
{
	OwnerContext oc;
	uint64		fixed;

	become_extension_owner(&oc);
	SPI_connect();
	(void) load_patron_map(false);
	fixed = rebuild_totals(PG_ARGISNULL(0) ? NULL : PG_GETARG_ARRAYTYPE_P(0));
	SPI_finish();
	restore_user(&oc);
	PG_RETURN_INT64((int64) fixed);
}

/* verify(): every recorded figure that differs from a fresh count. */
Datum
pg_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OwnerContext oc;
	char	   *sql;

	InitMaterializedSRF(fcinfo, 0);
	become_extension_owner(&oc);
	SPI_connect();
	(void) load_patron_map(false);
	sql = psprintf("WITH e AS (%s), "
				   "a AS (SELECT a.*, COALESCE(e.o, 0) AS eo, COALESCE(e.l, 0) AS el, "
				   "COALESCE(e.b, 0) AS eb, COALESCE(e.y, 0) AS ey "
				   "FROM " PG_SCHEMA ".accounts a LEFT JOIN e ON e.p OPERATOR(pg_catalog.=) a.patron_id), "
				   "s AS (SELECT group_id, pg_catalog.count(*) AS n, pg_catalog.count(*) FILTER (WHERE is_lead) AS leads, "
				   "pg_catalog.sum(items_out) AS o, pg_catalog.sum(items_lost) AS l, "
				   "pg_catalog.sum(amount_billed) AS b, pg_catalog.sum(amount_paid) AS y "
				   "FROM " PG_SCHEMA ".accounts WHERE group_id IS NOT NULL GROUP BY group_id) "
				   "SELECT 'patron'::pg_catalog.text, a.patron_id, v.item, v.recorded, v.actual FROM a, "
				   "LATERAL (VALUES ('items_out', a.items_out::pg_catalog.numeric, a.eo::pg_catalog.numeric), "
				   "('items_lost', a.items_lost, a.el), ('amount_billed', a.amount_billed, a.eb), "
				   "('amount_paid', a.amount_paid, a.ey)) v(item, recorded, actual) "
				   "WHERE v.recorded IS DISTINCT FROM v.actual "
				   "UNION ALL "
				   "SELECT 'group', g.group_id, v.item, v.recorded, v.actual "
				   "FROM " PG_SCHEMA ".groups g LEFT JOIN s USING (group_id), "
				   "LATERAL (VALUES ('member_count', g.member_count::pg_catalog.numeric, COALESCE(s.n, 0)::pg_catalog.numeric), "
				   "('lead_count', g.lead_count, COALESCE(s.leads, 0)), ('items_out', g.items_out, COALESCE(s.o, 0)), "
				   "('items_lost', g.items_lost, COALESCE(s.l, 0)), ('amount_billed', g.amount_billed, COALESCE(s.b, 0)), "
				   "('amount_paid', g.amount_paid, COALESCE(s.y, 0))) v(item, recorded, actual) "
				   "WHERE v.recorded IS DISTINCT FROM v.actual "
				   "ORDER BY 1 DESC, 2, 3",
				   expected_totals_sql(load_totals_sources(InvalidOid), false));
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "verify failed");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		row[5];
		bool		nulls[5];

		for (int c = 0; c < 5; c++)
			row[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	SPI_finish();
	restore_user(&oc);
	return (Datum) 0;
}
