/*
 * consent.c
 *		Consent: a member's, per kind (circulations, bills), with an optional
 *		end, and what it lets a lead see.
 *
 * Staff set it on a member's behalf; in a patron-facing session only the
 * member themselves may, never a lead.  Leaving a group clears it (the
 * group operations do, and the history records it, accounts.c).  The rule
 * itself, when a consent is in force, is written once (consent_sql() in
 * sqlgen.c) and every statement that applies it takes it from there.
 *
 * visible_patrons(kind) is what the row-level security policies call: the
 * acting patron and, while they are a lead, the members of their group whose
 * consent covers the kind; empty when no patron is asserted (fail closed).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_visible_patrons);
PG_FUNCTION_INFO_V1(pg_set_consent);

/*
 * The SQL condition on member m for a kind of row a lead may see.  A lead
 * sees members' names through group_members(), never their patron or card
 * rows.
 */
static char *
consent_condition(const char *kind)
{
	if (strcmp(kind, "patrons") == 0 || strcmp(kind, "cards") == 0)
		return "false";
	if (strcmp(kind, "circulations") == 0 || strcmp(kind, "bills") == 0)
		return consent_sql("m", kind);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("kind must be patrons, cards, circulations or bills, not \"%s\"", kind)));
	return NULL;				/* keep compiler quiet */
}

/*
 * visible_patrons(kind): the acting patron, plus, while they are a lead, the
 * members of their group whose consent covers this kind.  Empty when no
 * patron is asserted.
 */
Datum
pg_visible_patrons(PG_FUNCTION_ARGS)
{
	char	   *kind;
	const char *cond;
	int64		acting_patron;
	Datum	   *ids;
	int			n = 0;

	require_arg(fcinfo, 0, "kind");
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	cond = consent_condition(kind);
	if (!acting_for(&acting_patron))
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT8OID));

	{
		static const char *const kinds[] = {"patrons", "cards", "circulations", "bills"};
		static SPIPlanPtr plans[lengthof(kinds)];
		OwnerContext oc;
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(acting_patron)};
		MemoryContext outer = CurrentMemoryContext;
		size_t		k = 0;

		while (strcmp(kinds[k], kind) != 0)
			k++;
		become_extension_owner(&oc);
		SPI_connect();
		kept_plan(&plans[k],
				  psprintf("SELECT m.patron_id FROM " PG_SCHEMA ".accounts me "
						   "JOIN " PG_SCHEMA ".accounts m ON m.group_id OPERATOR(pg_catalog.=) me.group_id "
						   "WHERE me.patron_id OPERATOR(pg_catalog.=) $1 AND me.is_lead "
						   "AND m.patron_id OPERATOR(pg_catalog.<>) $1 AND %s", cond),
				  1, types);
		if (SPI_execute_plan(plans[k], values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read patron_group.accounts");
		ids = MemoryContextAlloc(outer, sizeof(Datum) * (SPI_processed + 1));
		ids[n++] = Int64GetDatum(acting_patron);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;

			ids[n++] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
		}
		SPI_finish();
		restore_user(&oc);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* set_consent(bigint, text, boolean, timestamptz, text). */
Datum
pg_set_consent(PG_FUNCTION_ARGS)
{
	int64		patron;
	char	   *kind;
	bool		granted;
	OwnerContext oc;
	Oid			types[3] = {INT8OID, BOOLOID, TIMESTAMPTZOID};
	Datum		values[3];
	char		nulls[3];
	int64		group;
	int64		acting_patron;

	memset(nulls, ' ', sizeof(nulls));
	require_arg(fcinfo, 0, "patron_id");
	require_arg(fcinfo, 1, "kind");
	require_arg(fcinfo, 2, "granted");
	patron = PG_GETARG_INT64(0);
	kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	granted = PG_GETARG_BOOL(2);
	if (strcmp(kind, "circulations") != 0 && strcmp(kind, "bills") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kind must be circulations or bills, not \"%s\"", kind)));
	if (granted && !PG_ARGISNULL(3) && PG_GETARG_TIMESTAMPTZ(3) <= GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consent must last until a time in the future")));

	refuse_if_replicated();
	SPI_connect();
	if (session_is_patron_facing() && (!acting_for(&acting_patron) || acting_patron != patron))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a patron may set only their own consent"),
				 errdetail("Consent is the member's: staff may set it on their behalf, a lead never can.")));

	values[0] = Int64GetDatum(patron);
	values[1] = BoolGetDatum(granted);
	if (granted && !PG_ARGISNULL(3))
		values[2] = PG_GETARG_DATUM(3);
	else
		nulls[2] = 'n';

	become_extension_owner(&oc);
	(void) lock_accounts(&patron, 1, &group);
	if (group == 0 && granted)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("patron " INT64_FORMAT " is not in a group", patron),
				 errdetail("Consent is given to the leads of one's group.")));

	history_context_set(NULL, PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)));
	run_sql(psprintf("UPDATE " PG_SCHEMA ".accounts SET share_%s = $2, share_%s_until = $3 "
			"WHERE patron_id OPERATOR(pg_catalog.=) $1 "
			"AND (share_%s, share_%s_until) IS DISTINCT FROM ($2, $3)",
			kind, kind, kind, kind),
			3, types, values, nulls, false, SPI_OK_UPDATE);
	history_context_clear();
	restore_user(&oc);
	SPI_finish();
	PG_RETURN_VOID();
}
