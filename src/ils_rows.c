/*
 * ils_rows.c
 *		The rows of the library system, read as their owner, for the
 *		statements the extension runs as its own owner.
 *
 * A statement that joins patron_group's tables with the library system's
 * (a recount, a limit check, the member list, a payment plan) runs as the
 * extension owner, who alone may read patron_group's tables.  Were it to
 * name a library system table, or a mapping view over one, PostgreSQL
 * would plan that table as the extension owner: the planner evaluates an
 * IMMUTABLE function with constant arguments that the table's owner put in
 * an index expression, or in a CHECK constraint of a child table, as the
 * role that plans, and that owner could make itself superuser so.  So such
 * a statement names patron_group.ils_rows(source, ...) instead, a function
 * scan that the planner does not look into; ils_rows() reads the source
 * through ils_exec(), as the table's owner in a security-restricted
 * operation, with the calling statement's snapshot.
 *
 * The source is a mapping view (its rows as the view has them), the
 * transaction table of money attached "via" one (xact_id, patron_id as
 * bigint), or the patron table where the card table names its primary card
 * column (patron_id, primary_card as bigint).  The rows can be narrowed to patrons and to transactions, so
 * that the table's indexes serve a statement about a few of them.
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_ils_rows);

/* The attachment whose mapping view, transaction table or patron table is source. */
static const Attachment *
source_attachment(Oid source, IlsSource *kind)
{
	const Mapping *m = get_mapping();
	ListCell   *lc;

	foreach(lc, m->all)
	{
		const Attachment *a = lfirst(lc);

		if (a->dropped)
			continue;
		if (a->mapping == source)
			*kind = ILS_MAPPING;
		else if (a->via_relid == source)
			*kind = ILS_VIA;
		/* the patron table, for the primary card column the card table names */
		else if (a->relid == source && a->kind == MAP_PATRONS && m->cards && m->cards->primary_card_name)
			*kind = ILS_PRIMARY_CARD;
		else
			continue;
		return a;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("relation with OID %u is not a source of patron_group", source)));
	return NULL;				/* keep compiler quiet */
}

/*
 * ils_rows(source oid, by_patron bigint[], by_xact bigint[]): the rows, read
 * as the source's table's owner.  For the extension owner's statements only.
 */
Datum
pg_ils_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			source;
	const Attachment *a;
	IlsSource	kind;
	StringInfoData sql;
	const char *patron_col;
	const char *xact_col;
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		values[2];
	char		nulls[3] = "  ";
	TupleDesc	want;

	if (GetUserId() != extension_owner())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("patron_group.ils_rows() serves the extension's own statements only")));
	require_arg(fcinfo, 0, "source");
	source = PG_GETARG_OID(0);
	for (int i = 0; i < 2; i++)
	{
		values[i] = PG_ARGISNULL(i + 1) ? (Datum) 0 : PG_GETARG_DATUM(i + 1);
		nulls[i] = PG_ARGISNULL(i + 1) ? 'n' : ' ';
	}

	a = source_attachment(source, &kind);
	initStringInfo(&sql);
	if (kind == ILS_VIA)
	{
		appendStringInfo(&sql, "SELECT s.%s::pg_catalog.int8, s.%s::pg_catalog.int8 FROM %s s",
						 a->via_id_column, a->via_patron_column, a->via_relname);
		patron_col = a->via_patron_column;
		xact_col = a->via_id_column;
	}
	else if (kind == ILS_PRIMARY_CARD)
	{
		appendStringInfo(&sql, "SELECT s.%s::pg_catalog.int8, s.%s::pg_catalog.int8 FROM %s s",
						 a->id_column, quote_identifier(get_mapping()->cards->primary_card_name), a->relname);
		patron_col = a->id_column;
		xact_col = NULL;
	}
	else
	{
		appendStringInfo(&sql, "SELECT * FROM %s s", a->mapping_name);
		patron_col = "patron_id";
		xact_col = "xact_id";
	}
	appendStringInfoString(&sql, " WHERE true");
	if (!PG_ARGISNULL(1))
		appendStringInfo(&sql, " AND s.%s OPERATOR(pg_catalog.=) ANY ($1)", patron_col);
	if (!PG_ARGISNULL(2) && xact_col)
		appendStringInfo(&sql, " AND s.%s OPERATOR(pg_catalog.=) ANY ($2)", xact_col);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	want = rsinfo->setDesc;
	SPI_connect();
	/* read-only: the calling statement's snapshot, so that it reads one state */
	ils_exec(kind == ILS_VIA ? a->via_relid : a->relid, sql.data, 2, types, values, nulls,
			 true, SPI_OK_SELECT);
	if (SPI_tuptable->tupdesc->natts != want->natts)
		elog(ERROR, "ils_rows: %d columns asked for, %d read", want->natts, SPI_tuptable->tupdesc->natts);
	for (int i = 0; i < want->natts; i++)
		if (TupleDescAttr(want, i)->atttypid != SPI_gettypeid(SPI_tuptable->tupdesc, i + 1))
			elog(ERROR, "ils_rows: column %d is %s, read as %s", i + 1,
				 format_type_be(TupleDescAttr(want, i)->atttypid),
				 format_type_be(SPI_gettypeid(SPI_tuptable->tupdesc, i + 1)));
	for (uint64 r = 0; r < SPI_processed; r++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[r]);
	SPI_finish();
	return (Datum) 0;
}
