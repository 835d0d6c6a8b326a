/*
 * locks.c
 *		The lock order, written once.
 *
 * Everything that changes a patron's account or a group takes its row
 * locks in one order: the account rows involved, in patron_id order, then
 * the group rows involved, in group_id order (and, where the library
 * system's households are kept in step, the patron rows before all of
 * them).  A checkout, a payment, a
 * move, a removal, a rebuild and a limit check therefore queue behind each
 * other instead of deadlocking, and whichever comes second re-reads (in READ
 * COMMITTED) what the first one left.  The locks are FOR UPDATE: the
 * strongest any of these statements needs, so that taking them first never
 * has to be upgraded later in the same transaction.  Under REPEATABLE READ
 * or SERIALIZABLE a row changed after the transaction's snapshot makes the
 * lock fail with a serialization error rather than let a total be lost.
 *
 * Callers pass the patrons or groups in any order, with duplicates; the
 * plans sort them (ORDER BY), so the order is the rows', not the caller's.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"

#include "patron_group.h"

/*
 * Where the library system keeps households (attach_patrons' group_column),
 * a move writes the patron rows too: their row locks come first, in id
 * order, before the accounts', as an UPDATE of the patron table that
 * changes a household (which then moves the patron) takes them.
 */
void
lock_patron_rows(const Attachment *a, const int64 *patrons, int n)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];

	if (a == NULL || a->group_name == NULL)
		return;
	values[0] = int8_array(patrons, n);
	ils_exec(a->relid,
			 psprintf("SELECT FROM %s p WHERE p.%s OPERATOR(pg_catalog.=) ANY ($1) "
					  "ORDER BY p.%s FOR NO KEY UPDATE", a->relname, a->id_column, a->id_column),
			 1, types, values, NULL, false, SPI_OK_SELECT);
}

/*
 * Lock the account rows of patrons[] in patron_id order.  With groups, also
 * return each patron's group id (0 for none, matched to patrons[] by
 * position) and refuse a patron who has no account.  Returns how many rows
 * were locked.  The caller is connected to SPI and runs as the extension
 * owner.
 */
uint64
lock_accounts(const int64 *patrons, int n, int64 *groups)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {int8_array(patrons, n)};
	SPITupleTable *tt;
	uint64		nlocked;
	int64	   *locked;

	run_kept(kept_plan(&plan,
					   "SELECT patron_id, group_id FROM " PG_SCHEMA ".accounts "
					   "WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1) "
					   "ORDER BY patron_id FOR UPDATE", 1, types),
			 values, NULL, false, SPI_OK_SELECT);
	nlocked = SPI_processed;
	if (groups == NULL)
		return nlocked;

	/* the rows come back in patron_id order: find each patron by binary search */
	tt = SPI_tuptable;
	locked = palloc(sizeof(int64) * Max(nlocked, 1));
	for (uint64 r = 0; r < nlocked; r++)
	{
		bool		isnull;

		locked[r] = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
	}
	for (int i = 0; i < n; i++)
	{
		int64	   *found;
		bool		isnull;
		Datum		g;

		CHECK_FOR_INTERRUPTS();
		found = bsearch(&patrons[i], locked, nlocked, sizeof(int64), compare_int64);
		if (found == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("patron " INT64_FORMAT " does not exist", patrons[i]),
					 errhint("Patron ids are those of the attached patron table.")));
		g = SPI_getbinval(tt->vals[found - locked], tt->tupdesc, 2, &isnull);
		groups[i] = isnull ? 0 : DatumGetInt64(g);
	}
	return nlocked;
}

/*
 * Lock the accounts of the patrons that transactions name (money attached
 * "via" a transaction table), then read which patron each transaction
 * names, after the locks: a transaction that changed patron while we
 * waited has its new patron's account locked too, and the transactions
 * are read again.  resolve_sql reads (id, patron) of the ids in $1, as the
 * transaction table's owner; its last result is left in SPI_tuptable.
 */
void
lock_accounts_of_xacts(Oid xact_relid, const char *resolve_sql, Datum ids)
{
	int64	   *locked = NULL;
	int			nlocked = 0;

	for (;;)
	{
		int64	   *missing;
		int			nmissing = 0;

		CHECK_FOR_INTERRUPTS();
		ils_exec(xact_relid, resolve_sql, 1, (Oid[]) {INT8ARRAYOID}, &ids, NULL, false, SPI_OK_SELECT);
		missing = palloc(sizeof(int64) * Max(SPI_processed, 1));
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Datum		p = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);
			int64		patron = DatumGetInt64(p);

			if (!isnull &&
				(nlocked == 0 || !bsearch(&patron, locked, nlocked, sizeof(int64), compare_int64)))
				missing[nmissing++] = patron;
		}
		if (nmissing == 0)
			return;
		sort_distinct_int64(missing, &nmissing);
		(void) lock_accounts(missing, nmissing, NULL);
		locked = locked ? repalloc(locked, sizeof(int64) * (nlocked + nmissing))
			: palloc(sizeof(int64) * nmissing);
		memcpy(locked + nlocked, missing, sizeof(int64) * nmissing);
		nlocked += nmissing;
		qsort(locked, nlocked, sizeof(int64), compare_int64);
	}
}

/*
 * Keep a group from disappearing (FOR KEY SHARE: its figures may still
 * change); false when there is no such group.
 */
bool
lock_group_key(int64 group)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(group)};

	run_kept(kept_plan(&plan,
					   "SELECT FROM " PG_SCHEMA ".groups g "
					   "WHERE g.group_id OPERATOR(pg_catalog.=) $1 FOR KEY SHARE", 1, types),
			 values, NULL, false, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * Lock the limits row of a group (NULL: the defaults), if there is one; it
 * is left in SPI_tuptable.  The caller holds the group's row lock.
 */
void
lock_limits(Datum group, bool isnull)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};

	run_kept(kept_plan(&plan,
					   "SELECT max_balance_owed, max_items_out, max_items_overdue, max_items_lost "
					   "FROM " PG_SCHEMA ".limits l WHERE l.group_id IS NOT DISTINCT FROM $1 FOR UPDATE",
					   1, types),
			 &group, isnull ? "n" : NULL, false, SPI_OK_SELECT);
}

/*
 * Lock group rows in group_id order (zeros, meaning no group, match none).
 * The caller holds the locks of the accounts concerned already.
 */
void
lock_groups(const int64 *groups, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {int8_array(groups, n)};

	run_kept(kept_plan(&plan,
					   "SELECT NULL FROM " PG_SCHEMA ".groups "
					   "WHERE group_id OPERATOR(pg_catalog.=) ANY ($1) "
					   "ORDER BY group_id FOR UPDATE", 1, types),
			 values, NULL, false, SPI_OK_SELECT);
}

/*
 * Lock the account rows of patrons[] in patron_id order, then the rows of
 * their groups in group_id order.
 */
void
lock_groups_of_accounts(const int64 *patrons, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {int8_array(patrons, n)};

	(void) lock_accounts(patrons, n, NULL);
	run_kept(kept_plan(&plan,
					   "SELECT NULL FROM " PG_SCHEMA ".groups "
					   "WHERE group_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT group_id FROM "
					   PG_SCHEMA ".accounts WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1))) "
					   "ORDER BY group_id FOR UPDATE", 1, types),
			 values, NULL, false, SPI_OK_SELECT);
}

/*
 * Lock every account row, in patron_id order, then every group row with a
 * member, in group_id order: a rebuild of everyone, a TRUNCATE of patrons.
 */
void
lock_everyone(void)
{
	static SPIPlanPtr accounts_plan = NULL;
	static SPIPlanPtr groups_plan = NULL;

	run_kept(kept_plan(&accounts_plan,
					   "SELECT NULL FROM " PG_SCHEMA ".accounts ORDER BY patron_id FOR UPDATE", 0, NULL),
			 NULL, NULL, false, SPI_OK_SELECT);
	run_kept(kept_plan(&groups_plan,
					   "SELECT NULL FROM " PG_SCHEMA ".groups "
					   "WHERE group_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT group_id FROM "
					   PG_SCHEMA ".accounts)) ORDER BY group_id FOR UPDATE", 0, NULL),
			 NULL, NULL, false, SPI_OK_SELECT);
}
