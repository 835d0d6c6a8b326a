/*
 * households.c
 *		The library system's own households (attach_patrons' group_column
 *		and lead_column), kept in step with the groups both ways.
 *
 *		- import_households(): when the patron table is attached, every
 *		  household of two patrons or more becomes a group;
 *		- household_follows(): a patron's group or lead changed (the accounts
 *		  trigger says so): the household columns follow, written as the
 *		  patron table's owner;
 *		- follow_households(): the library system changed a household itself
 *		  (the patron table's trigger says so): the groups follow.
 *
 * While the extension writes the household columns, or follows a change of
 * them, the other direction stands still (writing_households), and an
 * error resets it with the statement.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "patron_group.h"

/*
 * Set while the extension itself writes the library system's household
 * columns, or follows a change of them: the patron table's own trigger
 * then leaves the households alone.
 */
static bool writing_households = false;

/*
 * A patron's group or lead changed: where the library system keeps
 * households (group_column, lead_column), write them, so that its own
 * screens agree.  A group takes the household of its first member; a
 * patron who leaves gets the column's default (Evergreen: a household of
 * their own).  A patron the library system deleted is left as it left them.
 */
void
household_follows(int64 patron, bool grouped, int64 group, bool group_changed, bool lead)
{
	const Attachment *a = mapping_patrons(true);
	Oid			types[3] = {INT8OID, INT8OID, BOOLOID};
	Datum		values[3] = {Int64GetDatum(patron), Int64GetDatum(group), BoolGetDatum(lead)};
	bool		household_null = true;
	Datum		household = (Datum) 0;

	if (a == NULL || a->group_name == NULL)
		return;

	/*
	 * A group without a household takes its first member's, unless another
	 * group has it (the library system's households disagree with the
	 * groups there; the members' columns are then left alone).  This holds
	 * when the extension follows the library system too.  The patron's
	 * household is read from the library system's table as its owner; the
	 * group's is written as the extension owner.
	 */
	if (group_changed && grouped)
	{
		bool		isnull;

		ils_exec(a->relid, household_sql(a, HH_OF_PATRON),
				 1, types, values, NULL, false, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			household = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
			{
				values[1] = household;
				run_sql("UPDATE " PG_SCHEMA ".groups g SET household = $2 "
						"WHERE g.group_id OPERATOR(pg_catalog.=) $1 AND g.household IS NULL "
						"AND NOT EXISTS (SELECT FROM " PG_SCHEMA ".groups o "
						"WHERE o.household OPERATOR(pg_catalog.=) $2)",
						2, types, (Datum[]) {Int64GetDatum(group), household}, NULL, false, SPI_OK_UPDATE);
				values[1] = Int64GetDatum(group);
			}
		}
		/* the group's household now, which its members' columns take */
		run_sql("SELECT household FROM " PG_SCHEMA ".groups WHERE group_id OPERATOR(pg_catalog.=) $1",
				1, types + 1, values + 1, NULL, false, SPI_OK_SELECT);
		if (SPI_processed == 1)
			household = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &household_null);
	}
	if (writing_households)
		return;					/* the library system wrote its columns itself */
	writing_households = true;
	PG_TRY();
	{
		if (group_changed && grouped && !household_null)
		{
			values[1] = household;
			ils_exec(a->relid, household_sql(a, HH_WRITE),
					 2, types, values, NULL, false, SPI_OK_UPDATE);
		}
		else if (group_changed && !grouped)
			ils_exec(a->relid, household_sql(a, HH_RESET),
					 1, types, values, NULL, false, SPI_OK_UPDATE);
		if (a->lead_name)
			ils_exec(a->relid, household_sql(a, HH_WRITE_LEAD),
					 3, types, values, NULL, false, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		writing_households = false;
	}
	PG_END_TRY();
}

/* A grouped patron's lead flag, as the library system's lead column has it. */
static void
set_lead_from_column(const Attachment *a, int64 patron, const char *reason)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(patron)};

	bool		isnull;
	bool		is_lead;

	lock_groups_of_accounts(&patron, 1);
	ils_exec(a->relid, household_sql(a, HH_LEAD_OF_PATRON),
			 1, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return;
	is_lead = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	history_context_set(NULL, reason);
	run_sql("UPDATE " PG_SCHEMA ".accounts a SET is_lead = $2 "
			"WHERE a.patron_id OPERATOR(pg_catalog.=) $1 "
			"AND a.group_id IS NOT NULL AND a.is_lead IS DISTINCT FROM $2",
			2, (Oid[]) {INT8OID, BOOLOID}, (Datum[]) {Int64GetDatum(patron), BoolGetDatum(is_lead)},
			NULL, false, SPI_OK_UPDATE);
	history_context_clear();
}

/*
 * The library system changed households itself (Evergreen's staff client
 * sets usrgroup, or master_account): each patron whose household changed
 * joins the group of another patron of that household (a new group, if
 * that one is in none), or leaves the group when nobody else has it; a
 * changed lead flag becomes the lead.  The reason in the history says so.
 */
void
follow_households(TriggerData *td, const Attachment *a)
{
	SPITupleTable *tt;
	uint64		n;
	const char *reason = "household changed in the library system";

	if (writing_households)
		return;					/* the change is the extension's own write-back */

	spi_exec(household_sql(a, HH_CHANGES));
	tt = SPI_tuptable;
	n = SPI_processed;
	writing_households = true;
	PG_TRY();
	{
		for (uint64 r = 0; r < n; r++)
		{
			bool		isnull,
						household_null;
			int64		patron = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
			Datum		household = SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &household_null);
			bool		is_lead = DatumGetBool(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
			bool		moved = DatumGetBool(SPI_getbinval(tt->vals[r], tt->tupdesc, 4, &isnull));
			Oid			types[2] = {INT8OID, INT8OID};
			Datum		values[2] = {household, Int64GetDatum(patron)};
			int64		group = 0;
			bool		grouped;

			CHECK_FOR_INTERRUPTS();
			/* the patron's group now, and whether the library system deleted them */
			run_sql(household_sql(a, HH_ACCOUNT),
					2, types, values, NULL, false, SPI_OK_SELECT);
			if (SPI_processed != 1 ||
				DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
				continue;
			(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &grouped);
			grouped = !grouped;
			if (grouped)
				group = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			if (moved)
			{
				int64		other = 0;
				int64		other_group = 0;
				Datum		others;

				if (!household_null)
				{
					/* the household's other patrons, read as the table's owner */
					ils_exec(a->relid, household_sql(a, HH_OTHERS),
							 2, types, values, NULL, false, SPI_OK_SELECT);
					others = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
					run_sql("SELECT a.patron_id, COALESCE(a.group_id, 0) FROM " PG_SCHEMA ".accounts a "
							"WHERE a.patron_id OPERATOR(pg_catalog.=) ANY ($1) "
							"ORDER BY a.group_id IS NULL, a.group_id, a.patron_id LIMIT 1",
							1, (Oid[]) {INT8ARRAYOID}, &others, isnull ? "n" : NULL, false, SPI_OK_SELECT);
					if (SPI_processed == 1)
					{
						other = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
						other_group = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
					}
				}
				if (other != 0 && (!grouped || other_group != group))
				{
					group = move_patrons(&patron, 1, other, reason);
					grouped = true;
					/* a household lead that was alone until now leads the new group */
					if (a->lead_name && other_group == 0)
						set_lead_from_column(a, other, reason);
				}
				else if (other == 0 && grouped)
				{
					lock_groups_of_accounts(&patron, 1);
					history_context_set(NULL, reason);
					set_accounts_group(&patron, 1, 0);
					history_context_clear();
					grouped = false;
				}
			}
			if (a->lead_name && grouped)
			{
				Oid			ltypes[2] = {INT8OID, BOOLOID};
				Datum		lvalues[2] = {Int64GetDatum(patron), BoolGetDatum(is_lead)};

				lock_groups_of_accounts(&patron, 1);
				history_context_set(NULL, reason);
				run_sql("UPDATE " PG_SCHEMA ".accounts SET is_lead = $2 "
						"WHERE patron_id OPERATOR(pg_catalog.=) $1 AND is_lead OPERATOR(pg_catalog.<>) $2",
						2, ltypes, lvalues, NULL, false, SPI_OK_UPDATE);
				history_context_clear();
			}
		}
	}
	PG_FINALLY();
	{
		writing_households = false;
	}
	PG_END_TRY();
}


/*
 * The library system's households (attach_patrons' group_column): every
 * value that two patrons or more share, deleted patrons aside, becomes a
 * group of them, in one statement, its lead those the lead column marks.
 * The history says where each member came from.  The caller has just
 * attached the patron table (no patron is in a group yet) and runs as the
 * extension owner.
 */
void
import_households(void)
{
	const Attachment *a = mapping_patrons(false);
	Datum		values[3];
	bool		isnull = false;

	if (a->group_name == NULL)
		return;

	/* the shared households, read as the patron table's owner */
	ils_exec(a->relid, household_sql(a, HH_IMPORT),
			 0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	for (int i = 0; i < 3 && !isnull; i++)
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull);
	if (isnull)
		return;					/* no household has two patrons */

	/* each becomes a group of them, written as the extension owner */
	history_context_set(NULL, "household in the library system");
	writing_households = true;	/* the households are where they are */
	PG_TRY();
	{
		run_sql("WITH h AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), "
				"pg_catalog.unnest($2::pg_catalog.int8[]), pg_catalog.unnest($3::pg_catalog.bool[])) "
				"AS h(household, patron, lead)), "
				"made AS (INSERT INTO " PG_SCHEMA ".groups (household) "
				"SELECT DISTINCT household FROM h ORDER BY household RETURNING group_id, household) "
				"UPDATE " PG_SCHEMA ".accounts a SET group_id = made.group_id, is_lead = h.lead "
				"FROM h JOIN made ON made.household OPERATOR(pg_catalog.=) h.household "
				"WHERE a.patron_id OPERATOR(pg_catalog.=) h.patron",
				3, (Oid[]) {INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID}, values, NULL, false, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		writing_households = false;
		history_context_clear();
	}
	PG_END_TRY();
}
