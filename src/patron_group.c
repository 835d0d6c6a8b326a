/*
 * patron_group.c
 *		Module initialization, settings, running as the extension owner, and
 *		the per-transaction context that history rows take their reason from.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "patron_group.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* patron_group.application_user: who is at the desk, as the ILS knows them */
static char *application_user = NULL;

/*
 * Patrons whose totals are to be counted afresh just before the
 * transaction commits (see recount_at_commit()); in TopTransactionContext.
 */
static int64 *recount_ids = NULL;
static int	recount_n = 0;
static int	recount_max = 0;

/* What the running operation wants history to say; cleared at transaction end. */
static char *hist_action = NULL;
static char *hist_reason = NULL;

/*
 * Count the totals of the patrons recount_at_commit() named, now that every
 * trigger of the transaction, deferred ones included, has fired.
 */
static void
recount_before_commit(void)
{
	ArrayType  *ids;
	Datum	   *d;
	OwnerContext oc;

	if (recount_n == 0 || !OidIsValid(get_extension_oid("patron_group", true)))
		return;
	d = palloc(sizeof(Datum) * recount_n);
	for (int i = 0; i < recount_n; i++)
		d[i] = Int64GetDatum(recount_ids[i]);
	ids = construct_array(d, recount_n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	recount_n = 0;
	/* no statement is running: give the queries a snapshot of their own */
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	become_extension_owner(&oc);
	(void) rebuild_totals(ids);
	restore_user(&oc);
	SPI_finish();
	PopActiveSnapshot();
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

/* Clear the history context when the transaction ends, however it ends. */
static void
patron_group_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
		recount_before_commit();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
	{
		/* the memory went with TopTransactionContext */
		recount_ids = NULL;
		recount_n = recount_max = 0;
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
	{
		history_context_clear();
		access_reset();			/* the asserted patron lasts one transaction */
	}
}

/* A rolled-back subtransaction takes its operation's history context with it. */
static void
patron_group_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		history_context_clear();
	if (event == SUBXACT_EVENT_ABORT_SUB || event == SUBXACT_EVENT_COMMIT_SUB)
		access_subxact_end(event == SUBXACT_EVENT_COMMIT_SUB, mySubid, parentSubid);
}

/* Module load: settings and callbacks. */
void
_PG_init(void)
{
	DefineCustomStringVariable("patron_group.application_user",
							   "Staff user of the library system, recorded in the history.",
							   "The database role is always recorded too; this adds the "
							   "application's own login name, which the database cannot know.",
							   &application_user,
							   NULL,
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("patron_group");
	RegisterXactCallback(patron_group_xact_callback, NULL);
	guard_init();
	RegisterSubXactCallback(patron_group_subxact_callback, NULL);
}

/*
 * The role that owns the extension: its tables are written as this role.
 * Looked up once per transaction (the triggers ask for it on every
 * statement), with the installed version: this library works with the
 * schema of its own version only, and refuses an older one (whose stored
 * mappings it could not read) until ALTER EXTENSION patron_group UPDATE has
 * run.  The update's own script is let through.
 */
static Oid	cached_owner = InvalidOid;
static LocalTransactionId cached_owner_lxid = InvalidLocalTransactionId;

Oid
extension_owner(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;
	char	   *version = NULL;

	if (OidIsValid(cached_owner) && cached_owner_lxid == MyProc->lxid)
		return cached_owner;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("patron_group"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		v = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
		if (!isnull)
			version = TextDatumGetCString(v);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"patron_group\" is not installed in this database")));
	if (!creating_extension && (version == NULL || strcmp(version, PATRON_GROUP_VERSION) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"patron_group\" is at version %s in this database, but its library is %s",
						version ? version : "unknown", PATRON_GROUP_VERSION),
				 errdetail("The library does not read the schema of an older version."),
				 errhint("Run ALTER EXTENSION patron_group UPDATE;")));
	cached_owner = owner;
	cached_owner_lxid = MyProc->lxid;
	return owner;
}

/*
 * Switch to the extension owner, as core's RI triggers do, so that callers
 * need no rights on patron_group's tables, and pin search_path to
 * pg_catalog, pg_temp for as long: code running as the owner must never
 * resolve a name (a type in a cast, an operator, a function) through the
 * caller's search_path, where a role could have put its own (a domain in
 * pg_temp, an operator in a schema it owns).  The setting is saved in a GUC
 * nest level of its own, as a function's SET clause is: an error unwinds it
 * with the transaction or subtransaction; restore_user() does on success.
 */
void
become_extension_owner(OwnerContext *ctx)
{
	Oid			owner = extension_owner();

	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	ctx->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	SetUserIdAndSecContext(owner,
						   ctx->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

/* Return to the user and search_path saved by become_extension_owner(). */
void
restore_user(OwnerContext *ctx)
{
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
	AtEOXact_GUC(true, ctx->save_nestlevel);
}

/* Set the action and reason that history rows written next will carry. */
void
history_context_set(const char *action, const char *reason)
{
	history_context_clear();
	if (action)
		hist_action = MemoryContextStrdup(TopMemoryContext, action);
	if (reason)
		hist_reason = MemoryContextStrdup(TopMemoryContext, reason);
}

/* Forget the history context. */
void
history_context_clear(void)
{
	if (hist_action)
		pfree(hist_action);
	if (hist_reason)
		pfree(hist_reason);
	hist_action = NULL;
	hist_reason = NULL;
}

/* The action an operation asked history to record instead of the derived one. */
const char *
history_context_action(void)
{
	return hist_action;
}

/* The reason given to the running operation, or NULL. */
const char *
history_context_reason(void)
{
	return hist_reason;
}

/* patron_group.application_user, or NULL when unset or empty. */
const char *
history_app_user(void)
{
	if (application_user == NULL || application_user[0] == '\0')
		return NULL;
	return application_user;
}

/* Refuse a NULL argument with a clear message. */
void
require_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

/*
 * Prepare a plan once per backend, keep it in *slot, and return it.  The plan
 * is generic: these statements are the same whatever their parameters, and
 * planning them anew for each call (a custom plan) would cost more than the
 * statement itself.
 */
SPIPlanPtr
kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		*slot = plan;
	}
	return *slot;
}

/*
 * The kept plan of a statement built from the attachments: its text changes
 * only when a table is attached or detached, so the plan is kept while the
 * text stays the same, and prepared again when it changes.
 */
SPIPlanPtr
kept_plan_for_text(TextPlan *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (slot->sql == NULL || strcmp(slot->sql, sql) != 0)
	{
		if (slot->plan)
			SPI_freeplan(slot->plan);
		slot->plan = NULL;
		if (slot->sql)
			pfree(slot->sql);
		slot->sql = NULL;
		kept_plan(&slot->plan, sql, nargs, argtypes);
		slot->sql = MemoryContextStrdup(TopMemoryContext, sql);
	}
	return slot->plan;
}
