/*
 * reporting.c
 *		What the reporting views need from the library system's own tables.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_patron_details);

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
	const Mapping *m;
	Oid			types[1] = {INT8OID};
	Datum		args[1];

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "patron_details must return a composite type");
	desc = BlessTupleDesc(desc);
	args[0] = PG_GETARG_DATUM(0);

	SPI_connect();
	m = get_mapping();
	if (m->patrons != NULL)
	{
		bool		as_owner = reads_as_owner();
		OwnerContext oc;

		if (as_owner)
			become_extension_owner(&oc);
		run_sql(patron_details_sql(m, as_owner), 1, types, args, NULL, true, SPI_OK_SELECT);
		if (as_owner)
			restore_user(&oc);
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
