/*
 * members.c
 *		Group Member Details: the seed's list of a patron's group, each
 *		member with barcode, name, lead flag and figures, then the group's
 *		totals, for staff and, within what consent allows, for a lead.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_group_members);


/*
 * group_members(bigint): Group Member Details for a patron's group.
 *
 * Staff read with their own rights and see everything.  A patron-facing
 * session may list only the group of the patron it acts for; it is read as
 * the extension owner, with what the viewer may not see left out here: a
 * non-lead sees only themselves; a lead sees every member's name and
 * membership, but a member's loans only with their consent to share
 * circulations, and their balance only with consent to share bills.  The
 * group's totals row then sums what is shown.
 */
Datum
pg_group_members(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		patron;
	int64		viewer = 0;
	bool		patron_facing;
	bool		as_owner;
	OwnerContext oc;
	const Mapping *m;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];
	char		nulls[2];
	char	   *sql;

	memset(nulls, ' ', sizeof(nulls));
	require_arg(fcinfo, 0, "patron_id");
	patron = PG_GETARG_INT64(0);
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	patron_facing = patron_facing_about(patron, &viewer,
										"a patron-facing session may list only the group of the patron it acts for");
	as_owner = patron_facing || reads_as_owner();
	if (as_owner)
		become_extension_owner(&oc);
	values[0] = Int64GetDatum(patron);
	values[1] = Int64GetDatum(viewer);
	if (!patron_facing)
		nulls[1] = 'n';

	m = get_mapping();
	(void) mapping_patrons(false);
	sql = group_members_sql(m, as_owner);
	run_sql(sql, 2, types, values, nulls, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("patron " INT64_FORMAT " does not exist", patron)));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		int			natts = rsinfo->setDesc->natts;
		Datum		row[16];
		bool		rnulls[16];

		if (natts > SPI_tuptable->tupdesc->natts || natts > (int) lengthof(row))
			elog(ERROR, "group_members returns %d columns, its query %d", natts, SPI_tuptable->tupdesc->natts);
		for (int c = 0; c < natts; c++)
			row[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &rnulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, rnulls);
	}
	if (as_owner)
		restore_user(&oc);
	SPI_finish();
	return (Datum) 0;
}
