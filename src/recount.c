/*
 * recount.c
 *		Counting the totals afresh from the attached tables: verify() (what
 *		differs), rebuild() (repair), and the recounts the extension makes
 *		itself (after a TRUNCATE, for a new patron, for a patron whose id
 *		changed).
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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_verify);
PG_FUNCTION_INFO_V1(pg_rebuild);
PG_FUNCTION_INFO_V1(pg_within_trigger);

/*
 * Patrons whose totals are to be counted afresh just before the
 * transaction commits (see recount_at_commit()); in TopTransactionContext.
 */
static int64 *recount_ids = NULL;
static int	recount_n = 0;
static int	recount_max = 0;

/*
 * Recompute the totals of the given patrons (NULL: all) and of their groups.
 * Returns the number of account and group rows that were wrong.  The caller
 * is connected to SPI and runs as the extension owner.
 */
uint64
rebuild_totals(ArrayType *patron_ids)
{
	if (patron_ids == NULL)
		lock_everyone();
	else
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int64	   *ids;

		deconstruct_array(patron_ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
		ids = palloc(sizeof(int64) * Max(n, 1));
		for (int i = 0; i < n; i++)
			ids[i] = nulls[i] ? 0 : DatumGetInt64(elems[i]);
		lock_groups_of_accounts(ids, n);
	}
	return write_recount(expected_totals_sql(get_mapping()->totals, patron_ids != NULL), patron_ids);
}

/*
 * Count a patron's totals afresh just before the transaction commits.  For
 * a patron whose id changed: the rows naming the patron may follow the new
 * id through ON UPDATE CASCADE, and the totals triggers of that cascade
 * fire only at the end of the statement, after the patron table's own
 * triggers; counting earlier would count those rows twice.  A patron named
 * in a subtransaction that is rolled back is counted anyway, which is
 * harmless: a fresh count is always right.
 */
void
recount_at_commit(int64 patron)
{
	if (recount_n == recount_max)
	{
		int			newmax = recount_max ? recount_max * 2 : 16;

		recount_ids = recount_ids ?
			repalloc(recount_ids, sizeof(int64) * newmax) :
			MemoryContextAlloc(TopTransactionContext, sizeof(int64) * newmax);
		recount_max = newmax;
	}
	recount_ids[recount_n++] = patron;
}

/*
 * Count the totals of the patrons recount_at_commit() named, now that every
 * trigger of the transaction, deferred ones included, has fired.
 */
void
recount_before_commit(void)
{
	OwnerContext oc;
	Datum		ids;

	if (recount_n == 0 || !OidIsValid(get_extension_oid("patron_group", true)))
		return;
	ids = int8_array(recount_ids, recount_n);
	recount_n = 0;
	/* no statement is running: give the queries a snapshot of their own */
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	become_extension_owner(&oc);
	(void) rebuild_totals(DatumGetArrayTypeP(ids));
	restore_user(&oc);
	SPI_finish();
	PopActiveSnapshot();
}

/* The transaction ended: its list went with TopTransactionContext. */
void
recount_reset(void)
{
	recount_ids = NULL;
	recount_n = recount_max = 0;
}

/*
 * within_trigger: on a table above an attached tree (Evergreen's
 * money.billable_xact above action.circulation).  A statement that names it
 * changes rows of the tree below without firing their triggers, so the
 * patrons named by the rows it changed, before and after, are counted
 * afresh; the arguments are the patron columns to read.  With an empty
 * argument (the table has no patron column, or money below names
 * transactions), or for TRUNCATE, everyone is.  Named to fire after the
 * table's own via trigger, whose money moves this then confirms.
 */
Datum
pg_within_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "within_trigger", true);
	Trigger    *tg = td->tg_trigger;
	OwnerContext oc;
	bool		everyone = TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) || tg->tgnargs == 0;
	StringInfoData sql;

	refuse_if_replicated();
	SPI_connect();
	SPI_register_trigger_data(td);
	become_extension_owner(&oc);
	initStringInfo(&sql);
	for (int i = 0; i < tg->tgnargs && !everyone; i++)
	{
		const char *column = quote_identifier(tg->tgargs[i]);

		if (tg->tgargs[i][0] == '\0')
			everyone = true;
		if (td->tg_oldtable)
			appendStringInfo(&sql, "%sSELECT o.%s::pg_catalog.int8 FROM patron_group_old o",
							 sql.len ? " UNION " : "", column);
		if (td->tg_newtable)
			appendStringInfo(&sql, "%sSELECT n.%s::pg_catalog.int8 FROM patron_group_new n",
							 sql.len ? " UNION " : "", column);
	}
	if (everyone)
		(void) rebuild_totals(NULL);
	else if (sql.len)
	{
		bool		isnull;
		Datum		ids;

		/* it reads the transition tables, so it is planned each time */
		spi_exec(psprintf("SELECT pg_catalog.array_agg(p ORDER BY p) FROM (%s) AS u(p) WHERE p IS NOT NULL",
						  sql.data));
		ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			(void) rebuild_totals(DatumGetArrayTypePCopy(ids));
	}
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* rebuild(patron_ids bigint[] DEFAULT NULL): repair totals; returns rows fixed. */
Datum
pg_rebuild(PG_FUNCTION_ARGS)
{
	OwnerContext oc;
	uint64		fixed;

	become_extension_owner(&oc);
	SPI_connect();
	(void) mapping_patrons(false);
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
	(void) mapping_patrons(false);
	sql = verify_sql(expected_totals_sql(get_mapping()->totals, false));
	run_sql(sql, 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
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
