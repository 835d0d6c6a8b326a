/*
 * reporting.c
 *		What the reporting views need from the library system's own tables,
 *		and the guard that keeps DROP EXTENSION from leaving those tables
 *		half configured.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_patron_details);
PG_FUNCTION_INFO_V1(pg_drop_guard);

static TextPlan details_plan;

/*
 * patron_details(patron_id): the patron's barcode and display name as the
 * attached tables give them, and the open loans that are overdue now (not
 * lost, due before now), counted when read.  Read with the caller's rights,
 * so the library system's grants and row-level security apply to reports as
 * to everything else.  With no patron table attached, all three are NULL.
 */
Datum
pg_patron_details(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		result[3] = {0, 0, 0};
	bool		nulls[3] = {true, true, true};
	PatronMap  *map;
	char	   *sql;
	Oid			types[1] = {INT8OID};
	Datum		args[1];

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "patron_details must return a composite type");
	desc = BlessTupleDesc(desc);
	args[0] = PG_GETARG_DATUM(0);

	SPI_connect();
	map = load_patron_map(true);
	if (map != NULL)
	{
		sql = psprintf("SELECT x.b, x.n, (%s)::pg_catalog.int8 FROM (SELECT 1) o LEFT JOIN "
					   "(SELECT %s AS b, %s AS n FROM %s p WHERE p.%s OPERATOR(pg_catalog.=) $1) x ON true",
					   overdue_sql(load_totals_sources(InvalidOid), "$1"),
					   barcode_sql(map, "p"), display_name_sql(map, "p"),
					   map->relname, map->id_column);
		if (SPI_execute_plan(kept_plan_for_text(&details_plan, sql, 1, types),
							 args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the patron's details");
		if (SPI_processed == 1)
			for (int c = 0; c < 3; c++)
			{
				result[c] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, c + 1, &nulls[c]);
				if (!nulls[c])
					result[c] = SPI_datumTransfer(result[c], c == 2, c == 2 ? 8 : -1);
			}
	}
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, result, nulls)));
}

/*
 * drop_guard: an event trigger on DROP EXTENSION.  While tables are still
 * attached, dropping the extension (even with CASCADE) would take the
 * triggers and policies off the library system's tables but leave row-level
 * security switched on with no policy, so that nobody but their owner could
 * read them.  Refuse, and say what to do.
 */
Datum
pg_drop_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	DropStmt   *stmt;
	ListCell   *lc;
	bool		ours = false;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("drop_guard: not called by the event trigger manager")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (!IsA(trigdata->parsetree, DropStmt))
		PG_RETURN_VOID();
	stmt = (DropStmt *) trigdata->parsetree;
	if (stmt->removeType != OBJECT_EXTENSION)
		PG_RETURN_VOID();
	foreach(lc, stmt->objects)
		if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), "patron_group") == 0)
			ours = true;
	if (!ours)
		PG_RETURN_VOID();

	SPI_connect();
	if (SPI_execute("SELECT pg_catalog.count(*), pg_catalog.string_agg(relid::pg_catalog.text, ', ' "
					"ORDER BY relid::pg_catalog.oid) FROM " PG_SCHEMA ".attachments", true, 0) == SPI_OK_SELECT)
	{
		bool		isnull;
		int64		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		if (n > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop extension patron_group while library system tables are attached"),
					 errdetail("Attached: %s.", SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2)),
					 errhint("Run SELECT patron_group.detach_all(); first: it takes the extension's triggers, "
							 "policies and indexes off those tables, and their row-level security if it "
							 "switched it on.")));
	}
	SPI_finish();
	PG_RETURN_VOID();
}
