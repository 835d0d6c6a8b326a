/*
 * patron_group.c
 *		The bottom layer: running as the extension owner, and the small
 *		helpers every file uses (SPI with kept plans, names, arrays).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_subscription_rel.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "common/hashfn.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "patron_group.h"

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

	if (OidIsValid(cached_owner) && cached_owner_lxid == PG_LXID())
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
	cached_owner_lxid = PG_LXID();
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

/* Does a subscription of this database write the relation? */
static bool
is_subscribed(Oid relid)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(SubscriptionRelRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_subscription_rel_srrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, SubscriptionRelSrrelidSrsubidIndexId, true, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* Forget whether this database subscribes to patron_group's tables. */
static int	replicated = -1;		/* unknown */

static void
subscription_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	replicated = -1;
}

/*
 * Refuse to write patron_group's tables in a database that receives them by
 * logical replication (a reporting subscriber): groups, consent, limits and
 * totals change on the publisher, and a change here would diverge, or take
 * numbers the publisher has used and stop the replication.  The apply
 * worker's own writes fire none of the extension's triggers.  Known until
 * pg_subscription_rel changes, so the totals path pays one comparison.
 */
void
refuse_if_replicated(void)
{
	static bool callback = false;

	if (!callback)
	{
		CacheRegisterSyscacheCallback(SUBSCRIPTIONRELMAP, subscription_changed, (Datum) 0);
		callback = true;
	}
	if (replicated < 0)
	{
		Oid			nsp = get_namespace_oid(PG_SCHEMA, false);

		replicated = is_subscribed(get_relname_relid("accounts", nsp)) ||
			is_subscribed(get_relname_relid("history", nsp));
	}
	if (replicated)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("patron_group's tables are replicated into this database: it is read-only for patron_group"),
				 errdetail("Groups, consent, limits and totals change where they are published."),
				 errhint("Make the change on the publisher; it reaches this database with the replication.")));
}

/* Return to the user and search_path saved by become_extension_owner(). */
void
restore_user(OwnerContext *ctx)
{
	/* nothing between switched to another user without switching back */
	Assert(GetUserId() == extension_owner());
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
	AtEOXact_GUC(true, ctx->save_nestlevel);
}

/*
 * Run one statement on a table of the library system: the only way the
 * extension runs SQL that reads, writes or locks rows of one.  It runs as
 * the table's owner, in a security-restricted operation, with search_path
 * pinned to pg_catalog, pg_temp, the way ri_triggers.c runs its checks and
 * REFRESH MATERIALIZED VIEW its query: whatever the table's owner attached
 * to the table (triggers, rules, defaults, CHECK constraints, domains,
 * generated columns, index expressions, policies) runs with that owner's
 * rights, which it has anyway, and never with the extension owner's or the
 * caller's.  The statement reads (through the mapping views, or
 * ils_rows() in a statement of the extension owner's), writes or locks; it
 * may name the table, its tree and the mapping
 * views, and nothing of patron_group's own (the table's owner has no rights
 * there): what it needs from them comes in as parameters.  An error unwinds
 * the user and the setting with the (sub)transaction.
 */
void
ils_exec(Oid relid, const char *sql, int nargs, Oid *types, Datum *values,
		 const char *nulls, bool read_only, int expect)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("attached table with OID %u no longer exists", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	run_sql(sql, nargs, types, values, nulls, read_only, expect);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	AtEOXact_GUC(true, save_nestlevel);
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

/* Run a statement of fixed text (DDL, a statement over transition tables) through SPI. */
void
spi_exec(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute failed (%s): %s", SPI_result_code_string(rc), sql);
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

/* Plans kept by their SQL text (run_sql); a bounded number per backend. */
typedef struct SqlPlan
{
	char		key[NAMEDATALEN];	/* a digest of the text and parameter types */
	char	   *sql;
	SPIPlanPtr	plan;
} SqlPlan;

#define SQL_PLANS_MAX 512

static HTAB *sql_plans = NULL;
static List *retired_plans = NIL;	/* HTAB *s to free at the end of the transaction */

/*
 * The mapping changed: the texts built from it will not be asked for again.
 * Their plans are freed at the end of the transaction, when none can be
 * running further up the stack.
 */
void
forget_sql_plans(void)
{
	MemoryContext old;

	if (sql_plans == NULL)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	retired_plans = lappend(retired_plans, sql_plans);
	MemoryContextSwitchTo(old);
	sql_plans = NULL;
}

/* At the end of a transaction: free the plans forget_sql_plans() retired. */
void
free_retired_sql_plans(void)
{
	ListCell   *lc;

	foreach(lc, retired_plans)
	{
		HTAB	   *plans = lfirst(lc);
		HASH_SEQ_STATUS status;
		SqlPlan    *entry;

		hash_seq_init(&status, plans);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			SPI_freeplan(entry->plan);
			pfree(entry->sql);
		}
		hash_destroy(plans);
	}
	list_free(retired_plans);
	retired_plans = NIL;
}

/*
 * Run a statement with parameters through a plan kept by its text, checking
 * the result code.  Statements whose text is built from the mapping (and so
 * changes only with it) are planned once per backend, like those with a
 * static slot; nothing a user supplies is ever in the text, only in values.
 * The plans are kept generic: these statements are the same whatever their
 * parameters.  Past SQL_PLANS_MAX texts (clone_patron's vary with the
 * columns given) a new text is planned for the one execution.  When the
 * mapping changes, mapping.c retires them all (forget_sql_plans).
 */
void
run_sql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		bool read_only, int expect)
{
	SqlPlan    *entry = NULL;
	bool		found = false;
	char		key[NAMEDATALEN];
	int			rc;

	if (sql_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(SqlPlan);
		sql_plans = hash_create("patron_group plans by text", 64, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	memset(key, 0, sizeof(key));
	snprintf(key, sizeof(key), "%08x%08x:%d",
			 (unsigned) hash_bytes((const unsigned char *) sql, (int) strlen(sql)),
			 (unsigned) hash_bytes((const unsigned char *) types, (int) (sizeof(Oid) * nargs)),
			 nargs);
	entry = hash_search(sql_plans, key, HASH_FIND, &found);
	if (found && strcmp(entry->sql, sql) != 0)
		entry = NULL;			/* a digest collision: plan this one unkept */
	else if (!found && hash_get_num_entries(sql_plans) < SQL_PLANS_MAX)
	{
		SPIPlanPtr	plan = NULL;

		(void) kept_plan(&plan, sql, nargs, types);
		entry = hash_search(sql_plans, key, HASH_ENTER, &found);
		entry->plan = plan;
		entry->sql = MemoryContextStrdup(TopMemoryContext, sql);
	}
	if (entry)
		rc = SPI_execute_plan(entry->plan, values, nulls, read_only, 0);
	else
		rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);
	if (rc != expect)
		elog(ERROR, "unexpected SPI result %s for: %s", SPI_result_code_string(rc), sql);
}

/* Execute a kept plan and check its result code. */
void
run_kept(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, int expect)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc != expect)
		elog(ERROR, "unexpected SPI result %s", SPI_result_code_string(rc));
}

/* Schema-qualified, quoted name of a relation. */
char *
qualified_relname(Oid relid)
{
	char	   *rel = get_rel_name(relid);
	char	   *nsp = rel ? get_namespace_name(get_rel_namespace(relid)) : NULL;

	if (rel == NULL || nsp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("attached table with OID %u no longer exists", relid),
				 errhint("The library system dropped it. Forget it with SELECT patron_group.detach(%u);", relid)));
	return quote_qualified_identifier(nsp, rel);
}

/* qsort comparator of int64. */
int
compare_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* An int8[] Datum from C values. */
Datum
int8_array(const int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Sort values and drop duplicates, in place; *n becomes the distinct count. */
void
sort_distinct_int64(int64 *values, int *n)
{
	int			m = 0;

	if (*n > 1)
		qsort(values, *n, sizeof(int64), compare_int64);
	for (int i = 0; i < *n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (m == 0 || values[m - 1] != values[i])
			values[m++] = values[i];
	}
	*n = m;
}

/* A smallint, integer or bigint Datum as int64. */
int64
int_datum_to_int64(Datum d, Oid type)
{
	switch (type)
	{
		case INT2OID:
			return DatumGetInt16(d);
		case INT4OID:
			return DatumGetInt32(d);
		case INT8OID:
			return DatumGetInt64(d);
		default:
			elog(ERROR, "patron ids of type %s are not supported", format_type_be(type));
	}
	return 0;					/* keep compiler quiet */
}

/* A smallint, integer or bigint column of a tuple as int64; false when NULL. */
bool
tuple_int64(HeapTuple tup, TupleDesc desc, AttrNumber attnum, int64 *value)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnum, desc, &isnull);

	if (isnull)
		return false;
	*value = int_datum_to_int64(d, TupleDescAttr(desc, attnum - 1)->atttypid);
	return true;
}

/*
 * The TriggerData of a trigger function, checking that the trigger manager
 * called it AFTER an event, for each statement or for each row as it must be.
 */
TriggerData *
trigger_data(FunctionCallInfo fcinfo, const char *name, bool statement)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: not called by trigger manager", name)));
	td = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_AFTER(td->tg_event) ||
		(statement ? !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) : !TRIGGER_FIRED_FOR_ROW(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be an AFTER trigger FOR EACH %s", name, statement ? "STATEMENT" : "ROW"),
				 errhint("patron_group creates its triggers itself, with the attach_*() functions.")));
	return td;
}
