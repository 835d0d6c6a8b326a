/*
 * barcode.c
 *		SQL glue for barcodes: normalize_barcode(), the resolver every barcode
 *		lookup goes through, and find_patron() for confirmation before a move.
 */
#include "postgres.h"

#include <stdlib.h>

#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "barcode_core.h"
#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_normalize_barcode);
PG_FUNCTION_INFO_V1(pg_resolve_barcode);
PG_FUNCTION_INFO_V1(pg_find_patron);

/* Normalize a barcode given in the server encoding; returns palloc'd text. */
static text *
normalize_text(text *in)
{
	char	   *src = VARDATA_ANY(in);
	int			srclen = VARSIZE_ANY_EXHDR(in);
	char	   *utf8;
	char	   *norm;
	int32_t		normlen;
	int			icu_error;
	text	   *result;

	utf8 = (char *) pg_do_encoding_conversion((unsigned char *) src, srclen,
											  GetDatabaseEncoding(), PG_UTF8);
	if (utf8 != src)
		srclen = strlen(utf8);

	norm = barcode_normalize(utf8, srclen, &normlen, &icu_error);
	if (norm == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not normalize barcode: %s",
						barcode_error_name(icu_error))));

	/*
	 * Copy out of malloc'd memory, freeing it before anything can raise an
	 * error: a result too long for a text value (NFKC expands some
	 * characters eighteenfold) would otherwise make palloc fail and leak it.
	 */
	if ((Size) normlen > MaxAllocSize - VARHDRSZ)
	{
		free(norm);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("normalized barcode would be %d bytes long, more than a text value can hold",
						normlen)));
	}
	result = (text *) palloc(VARHDRSZ + normlen);
	SET_VARSIZE(result, VARHDRSZ + normlen);
	memcpy(VARDATA(result), norm, normlen);
	free(norm);

	if (GetDatabaseEncoding() != PG_UTF8)
	{
		char	   *conv = (char *) pg_do_encoding_conversion(
															  (unsigned char *) VARDATA(result), normlen, PG_UTF8,
															  GetDatabaseEncoding());

		if (conv != VARDATA(result))
			result = cstring_to_text(conv);
	}
	return result;
}

/* normalize_barcode(text): the form every barcode comparison uses. */
Datum
pg_normalize_barcode(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(normalize_text(PG_GETARG_TEXT_PP(0)));
}

/*
 * The patron a barcode belongs to.  Raises an error for an empty barcode, a
 * barcode no patron has (unless missing_ok: then returns 0) and a barcode
 * shared by two patrons.  The caller has connected to SPI.
 */
int64
resolve_barcode_internal(const Mapping *m, text *barcode, bool missing_ok, bool as_owner)
{
	text	   *norm = normalize_text(barcode);
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	int64		first;

	if (VARSIZE_ANY_EXHDR(norm) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("barcode \"%s\" is empty once white space and invisible characters are removed",
						text_to_cstring(barcode))));
	if ((m->patrons == NULL || m->patrons->barcode_column == NULL) && m->cards == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no barcodes are attached"),
				 errhint("Attach the patron table with a barcode_column, or attach a card table with attach_cards().")));

	values[0] = PointerGetDatum(norm);
	if (as_owner)
		ils_exec(m->patrons->relid, barcode_lookup_sql(m), 1, argtypes, values, NULL, true, SPI_OK_SELECT);
	else
		run_sql(barcode_lookup_sql(m), 1, argtypes, values, NULL, true, SPI_OK_SELECT);

	if (SPI_processed == 0)
	{
		if (missing_ok)
			return 0;
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no patron has barcode \"%s\"", text_to_cstring(barcode)),
				 errhint("Check the barcode, or whether the card is still active.")));
	}
	first = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	if (SPI_processed > 1)
	{
		int64		second = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[1],
														 SPI_tuptable->tupdesc, 1, &isnull));

		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("barcode \"%s\" belongs to more than one patron",
						text_to_cstring(barcode)),
				 errdetail("Patrons " INT64_FORMAT " and " INT64_FORMAT " both have it.",
						   first, second),
				 errhint("Correct the duplicate barcode in the library system, then try again.")));
	}
	return first;
}

/* Fetch the barcode argument, refusing NULL with a clear message. */
static text *
barcode_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("barcode must not be null")));
	return PG_GETARG_TEXT_PP(0);
}

/*
 * Lookups read the library system's tables with the caller's rights, so its
 * grants and row-level security apply, except for a superuser: whatever the
 * tables' owner planted there would run with a superuser's rights, so a
 * superuser's lookup reads them as their owner, who sees the same rows.
 */
bool
reads_as_owner(void)
{
	return superuser();
}

/*
 * resolve_barcode(text): the patron id a barcode belongs to.  Lookups read
 * with the caller's rights (and so under any row-level security of the
 * library system's tables); only writes switch to the extension owner.
 */
Datum
pg_resolve_barcode(PG_FUNCTION_ARGS)
{
	text	   *barcode = barcode_arg(fcinfo);
	int64		patron;

	SPI_connect();
	(void) mapping_patrons(false);
	patron = resolve_barcode_internal(get_mapping(), barcode, false, reads_as_owner());
	SPI_finish();
	PG_RETURN_INT64(patron);
}

/* find_patron(text): who owns a barcode, with name and group, to confirm a move. */
Datum
pg_find_patron(PG_FUNCTION_ARGS)
{
	text	   *barcode = barcode_arg(fcinfo);
	const Mapping *m;
	int64		patron;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5];
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	HeapTuple	tuple;
	int			i;
	bool		as_owner;
	OwnerContext oc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	(void) mapping_patrons(false);
	m = get_mapping();
	as_owner = reads_as_owner();
	patron = resolve_barcode_internal(m, barcode, false, as_owner);
	args[0] = Int64GetDatum(patron);
	if (as_owner)
		become_extension_owner(&oc);
	run_sql(find_patron_sql(m, as_owner), 1, argtypes, args, NULL, true, SPI_OK_SELECT);
	if (as_owner)
		restore_user(&oc);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("patron " INT64_FORMAT " has no account", patron),
				 errhint("Run patron_group.attach_patrons() again, or check that the patron still exists.")));

	tupdesc = BlessTupleDesc(tupdesc);
	for (i = 0; i < 5; i++)
	{
		Datum		v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  i + 1, &nulls[i]);

		values[i] = nulls[i] ? (Datum) 0 :
			SPI_datumTransfer(v, (i == 1 || i == 2) ? false : true,
							  (i == 1 || i == 2) ? -1 : 8);
	}
	/* group_size: a patron outside any group is a group of one */
	if (nulls[4])
	{
		nulls[4] = false;
		values[4] = Int32GetDatum(1);
	}
	SPI_finish();
	tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
