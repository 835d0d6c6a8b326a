/*
 * guard.c
 *		What keeps the extension's promises against the rest of the
 *		database: the hooks that stop a patron-facing session from learning
 *		through the executor what row-level security hides from it, and the
 *		event triggers that stop DDL from taking the extension's protection
 *		away (DROP EXTENSION or DROP SCHEMA while tables are attached) or from
 *		leaving a new child table or partition of a protected table open.
 *
 * Row-level security filters rows, but the executor still visits them: the
 * row counts of EXPLAIN ANALYZE tell whether the policy's filter ever ran,
 * and so whether rows the session may not see exist (a lead's catalogue
 * could learn whether any patron has a given item out).  A cursor declared
 * WITH HOLD is filled for one patron and outlives the transaction, so on a
 * pooled connection the next patron could fetch from it.  In a
 * patron-facing session both are refused.  The library does not need to be
 * preloaded for this: every policy on a protected table calls
 * visible_patrons(), and the executor resolves that function (which loads
 * this library and installs the hooks) when it starts the plan, before it
 * runs it; the run is where the check is made.
 */
#include "postgres.h"

#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "access/genam.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_rewrite.h"
#include "utils/fmgroids.h"

#include "access/xact.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/timestamp.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_drop_guard);
PG_FUNCTION_INFO_V1(pg_ddl_watch);

static ProcessUtility_hook_type prev_process_utility = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static object_access_hook_type prev_object_access = NULL;

/*
 * The statement that is dropping the extension on purpose (DROP EXTENSION,
 * DROP SCHEMA patron_group, DROP OWNED BY its owner, once drop_guard has let
 * it through), by its transaction and start; any other statement that
 * would drop it is refused (guard_object_access).
 */
static LocalTransactionId expected_drop_lxid = InvalidLocalTransactionId;
static TimestampTz expected_drop_start = 0;

static void
expect_extension_drop(void)
{
	expected_drop_lxid = PG_LXID();
	expected_drop_start = GetCurrentStatementStartTimestamp();
}

static bool
extension_drop_expected(void)
{
	return expected_drop_lxid == PG_LXID() &&
		expected_drop_start == GetCurrentStatementStartTimestamp();
}

static bool names_patron_group(List *objects);

/*
 * Is this a session of a registered patron-facing role, in a database where
 * the extension is installed?  Asked only of the statements checked here.
 */
static bool
patron_facing_now(void)
{
	static bool checking = false;
	bool		result;

	/* the check runs a query of its own, which passes through these hooks */
	if (checking || !IsTransactionState() ||
		!OidIsValid(get_extension_oid("patron_group", true)))
		return false;
	checking = true;
	PG_TRY();
	{
		SPI_connect();
		result = session_is_patron_facing();
		SPI_finish();
	}
	PG_FINALLY();
	{
		checking = false;
	}
	PG_END_TRY();
	return result;
}

/* Does an EXPLAIN statement run the query (ANALYZE)? */
static bool
explain_analyzes(ExplainStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "analyze") == 0)
			return defGetBoolean(opt);
	}
	return false;
}

static void
refuse_instrumented_run(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("EXPLAIN ANALYZE is not allowed in a patron-facing session"),
			 errdetail("Its row counts would tell whether rows that row-level security hides exist."),
			 errhint("Run EXPLAIN without ANALYZE, or analyze the query as a staff role.")));
}

static void
refuse_held_cursor(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cursors WITH HOLD are not allowed in a patron-facing session"),
			 errdetail("A held cursor outlives its transaction, and with it the patron it was filled for."),
			 errhint("Declare the cursor without WITH HOLD and fetch from it within the transaction.")));
}

/* Says, under an error inside it, why a procedure ran in one transaction. */
static void
atomic_call_context(void *arg)
{
	errcontext("patron_group runs procedures and DO blocks of a patron-facing session in one transaction, "
			   "so that nothing read for a patron outlives the transaction that asserted the patron");
}

/*
 * Refuse EXPLAIN ANALYZE and DECLARE ... WITH HOLD in a patron-facing
 * session, and run its CALL and DO atomically: a procedure's COMMIT or
 * ROLLBACK would hold the portals of its open loops (HoldPinnedPortals),
 * filled while the transaction acted for a patron and read on after the
 * identity ended.  PostgreSQL then refuses the COMMIT or ROLLBACK (2D000).
 */
static void
guard_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	ErrorContextCallback callback = {.callback = atomic_call_context, .previous = error_context_stack};

	if ((IsA(stmt, CallStmt) || IsA(stmt, DoStmt)) &&
		(context == PROCESS_UTILITY_TOPLEVEL || context == PROCESS_UTILITY_QUERY_NONATOMIC) &&
		patron_facing_now())
	{
		error_context_stack = &callback;
		context = PROCESS_UTILITY_QUERY;
	}

	if (IsA(stmt, ExplainStmt) && explain_analyzes((ExplainStmt *) stmt) && patron_facing_now())
		refuse_instrumented_run();
	if (IsA(stmt, DeclareCursorStmt) &&
		(((DeclareCursorStmt *) stmt)->options & CURSOR_OPT_HOLD) && patron_facing_now())
		refuse_held_cursor();
	if (IsA(stmt, DropStmt) &&
		(((DropStmt *) stmt)->removeType == OBJECT_EXTENSION ||
		 ((DropStmt *) stmt)->removeType == OBJECT_SCHEMA) &&
		names_patron_group(((DropStmt *) stmt)->objects))
		expect_extension_drop();	/* drop_guard, its event trigger, decides */
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	if (error_context_stack == &callback)
		error_context_stack = callback.previous;
}

/*
 * The same check where the plan runs, which no statement form can avoid:
 * a run with instrumentation (EXPLAIN ANALYZE, whichever way it was asked
 * for) or of a held cursor (filled at commit, or fetched later).
 */
static void
guard_executor_run(EXECUTOR_RUN_HOOK_PARAMS)
{
	bool		instrumented = queryDesc->instrument_options != 0;
	bool		held = ActivePortal != NULL && (ActivePortal->cursorOptions & CURSOR_OPT_HOLD);

	if ((instrumented || held) && patron_facing_now())
	{
		if (instrumented)
			refuse_instrumented_run();
		refuse_held_cursor();
	}
	if (prev_executor_run)
		prev_executor_run(EXECUTOR_RUN_HOOK_ARGS);
	else
		standard_ExecutorRun(EXECUTOR_RUN_HOOK_ARGS);
}


/* The relation a rewrite rule belongs to, or InvalidOid. */
static Oid
rule_owner(Oid rule)
{
	Relation	rewrite = table_open(RewriteRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_rewrite_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(rule));
	scan = systable_beginscan(rewrite, RewriteOidIndexId, true, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
		owner = ((Form_pg_rewrite) GETSTRUCT(tup))->ev_class;
	systable_endscan(scan);
	table_close(rewrite, AccessShareLock);
	return owner;
}

/* Is the view read by one of the extension's own views (a rule of a member view depends on it)? */
static bool
read_by_extension_view(Oid view)
{
	Oid			ext = get_extension_oid("patron_group", true);
	Relation	depend;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	bool		read = false;

	if (!OidIsValid(ext))
		return false;
	depend = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(view));
	scan = systable_beginscan(depend, DependReferenceIndexId, true, NULL, 2, key);
	while (!read && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend d = (Form_pg_depend) GETSTRUCT(tup);
		Oid			owner;

		if (d->classid != RewriteRelationId || d->deptype != DEPENDENCY_NORMAL)
			continue;
		/* the view whose rule it is */
		owner = rule_owner(d->objid);
		read = OidIsValid(owner) && owner != view &&
			getExtensionOfObject(RelationRelationId, owner) == ext;
	}
	systable_endscan(scan);
	table_close(depend, AccessShareLock);
	return read;
}

/*
 * The mapping views of the patrons, cards and circulations are read by the
 * reporting views, which are the extension's own: a statement that drops
 * one by CASCADE (DROP TABLE, DROP SCHEMA of the library system's tables,
 * ALTER TABLE ... DROP COLUMN, DROP FUNCTION or DROP TYPE of something a
 * condition uses) would, through them, drop the whole extension, its groups
 * and history with it.  Refuse such a statement (it is rolled back whole),
 * and say what to do; and refuse any other way a statement would drop the
 * extension as a consequence.
 * The hook is installed when the library is loaded, which drop_guard (an
 * event trigger on every DDL command) makes sure of before the command
 * runs.
 */
static void
guard_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access != OAT_DROP || extension_drop_expected())
		return;
	if (classId == ExtensionRelationId && objectId == get_extension_oid("patron_group", true))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("this statement would drop extension patron_group"),
				 errdetail("The extension's reporting views read the tables attached to it; "
						   "dropping what they read would take the extension, its groups and "
						   "its history with it."),
				 errhint("Detach the table with patron_group.detach() first, or run "
						 "DROP EXTENSION patron_group to remove the extension.")));
	if (classId == RelationRelationId && subId == 0 && !dropping_mapping_view &&
		get_rel_relkind(objectId) == RELKIND_VIEW &&
		get_rel_namespace(objectId) == get_namespace_oid(PG_SCHEMA, true) &&
		read_by_extension_view(objectId))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop view %s.%s: it maps a table attached to patron_group",
						PG_SCHEMA, get_rel_name(objectId)),
				 errdetail("The extension's reporting views read the attached table through it: "
						   "dropping it would drop the extension, its groups and its history with it."),
				 errhint("Detach the table with patron_group.detach() first; then drop it.")));
}

/* Install the hooks; called once, when the library is loaded. */
void
guard_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = guard_process_utility;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = guard_executor_run;
	prev_object_access = object_access_hook;
	object_access_hook = guard_object_access;
}

/* Does a list of names (DROP's objects) name patron_group? */
static bool
names_patron_group(List *objects)
{
	ListCell   *lc;

	foreach(lc, objects)
		if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), PG_SCHEMA) == 0)
			return true;
	return false;
}

/* Would this DROP OWNED drop the extension (its owner is among the roles)? */
static bool
drops_extension_owner(DropOwnedStmt *stmt)
{
	Oid			owner = extension_owner();
	ListCell   *lc;

	foreach(lc, stmt->roles)
		if (get_rolespec_oid(lfirst(lc), true) == owner)
			return true;
	return false;
}

/*
 * drop_guard: an event trigger at the start of every DDL command (calling
 * it loads the library, whose hook then watches what the command drops).
 * On DROP EXTENSION, DROP SCHEMA and DROP OWNED: while tables are still
 * attached, dropping the extension, its schema (which takes the extension
 * with it) or its owner's objects would take the triggers and the
 * restrictive policies off the library system's tables but leave row-level
 * security switched on with only the policy that lets everyone read: the
 * catalogue would read every loan.  Refuse, and say what to do; otherwise
 * let the extension go.
 */
Datum
pg_drop_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *parsetree;
	bool		ours = false;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("drop_guard: not called by the event trigger manager")));
	trigdata = (EventTriggerData *) fcinfo->context;
	parsetree = trigdata->parsetree;
	if (IsA(parsetree, DropStmt))
	{
		DropStmt   *stmt = (DropStmt *) parsetree;

		ours = (stmt->removeType == OBJECT_EXTENSION || stmt->removeType == OBJECT_SCHEMA) &&
			names_patron_group(stmt->objects);
	}
	else if (IsA(parsetree, DropOwnedStmt))
		ours = drops_extension_owner((DropOwnedStmt *) parsetree);
	if (!ours)
		PG_RETURN_VOID();

	SPI_connect();
	run_sql("SELECT pg_catalog.count(*), pg_catalog.string_agg(relid::pg_catalog.text, ', ' "
			"ORDER BY relid::pg_catalog.oid) FROM " PG_SCHEMA ".attachments",
			0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	{
		bool		isnull;
		int64		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		if (n > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop extension patron_group while library system tables are attached"),
					 errdetail("Attached: %s.", SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2)),
					 errhint("Run SELECT patron_group.detach_all(); first: it takes the extension's triggers, "
							 "policies and indexes off those tables, and their row-level security if it "
							 "switched it on.")));
	}
	SPI_finish();
	expect_extension_drop();
	PG_RETURN_VOID();
}

/* The table a RangeVar of a DDL statement names, or InvalidOid. */
static Oid
named_table(RangeVar *rv)
{
	return rv ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;
}

/* Is a table in the tree of an attached table or of a transaction table that money names? */
static bool
in_a_tree(Oid relid)
{
	ListCell   *lc;

	if (!OidIsValid(relid))
		return false;
	foreach(lc, get_mapping()->all)
	{
		const Attachment *a = lfirst(lc);

		if (list_member_oid(a->tree, relid) || list_member_oid(a->via_tree, relid))
			return true;
	}
	return false;
}

/*
 * DROP TABLE dropped a child or partition of an attached tree (its own
 * triggers went with it, as the dropped objects show): its rows are no
 * longer counted.  An attached table itself, or a transaction table, cannot
 * be dropped while its mapping view depends on it, except by CASCADE, after
 * which health() says so; those are left to detach().
 */
static bool
dropped_a_member(void)
{
	const Mapping *m = get_mapping();

	run_sql("SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() d "
			"WHERE d.object_type OPERATOR(pg_catalog.=) 'trigger' "
			"AND (d.object_identity OPERATOR(pg_catalog.~~) 'patron\\_group\\_totals\\_%' "
			"OR d.object_identity OPERATOR(pg_catalog.~~) 'patron\\_group\\_via\\_%')",
			0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	run_sql("SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() d "
			"WHERE d.object_type OPERATOR(pg_catalog.=) 'table'",
			0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Oid			table = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		bool		root = false;
		ListCell   *lc;

		foreach(lc, m->all)
			root |= ((Attachment *) lfirst(lc))->relid == table ||
				((Attachment *) lfirst(lc))->via_relid == table;
		if (!root)
			return true;
	}
	return false;
}

/*
 * ddl_watch: an event trigger at the end of CREATE TABLE and ALTER TABLE,
 * and after DROP TABLE.  When a table joins or leaves the tree of an
 * attached table, or of a transaction table that money names (CREATE
 * TABLE ... INHERITS or PARTITION OF, ALTER TABLE ... INHERIT, NO INHERIT,
 * ATTACH or DETACH PARTITION, DROP TABLE of a child), before the statement
 * commits: every backend is told the trees changed, the tree's tables get
 * the extension's triggers (or lose them), a protected tree's new member
 * its protection, and, when rows came or went with the table, the totals
 * are counted afresh.  If any of it cannot be done, the statement fails.
 */
Datum
pg_ddl_watch(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *stmt;
	bool		changes_tree = false;
	bool		moves_rows = false;
	Oid			parent = InvalidOid;
	OwnerContext oc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ddl_watch: not called by the event trigger manager")));
	trigdata = (EventTriggerData *) fcinfo->context;

	/*
	 * Only a statement that changes a table's parents: any other (ALTER
	 * TABLE ... ENABLE ROW LEVEL SECURITY as pg_restore replays it, before
	 * its own CREATE POLICY) must not make policies or triggers of its own.
	 */
	stmt = trigdata->parsetree;
	if (strcmp(trigdata->event, "sql_drop") == 0)
		changes_tree = true;
	else if (IsA(stmt, CreateStmt))
	{
		CreateStmt *cs = (CreateStmt *) stmt;

		changes_tree = cs->inhRelations != NIL || cs->partbound != NULL;
		if (cs->inhRelations != NIL)
			parent = named_table(linitial_node(RangeVar, cs->inhRelations));
	}
	else if (IsA(stmt, AlterTableStmt))
	{
		AlterTableStmt *as = (AlterTableStmt *) stmt;
		ListCell   *lc;

		foreach(lc, as->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

			switch (cmd->subtype)
			{
				case AT_AttachPartition:
				case AT_DetachPartition:
				case AT_DetachPartitionFinalize:
					changes_tree = moves_rows = true;
					parent = named_table(as->relation);
					break;
				case AT_AddInherit:
				case AT_DropInherit:
					changes_tree = moves_rows = true;
					parent = named_table((RangeVar *) cmd->def);
					break;
				default:
					break;
			}
		}
	}
	if (!changes_tree)
		PG_RETURN_VOID();

	CommandCounterIncrement();	/* the new parents, visible to what follows */
	SPI_connect();
	if (get_mapping()->all == NIL)
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	if (strcmp(trigdata->event, "sql_drop") == 0)
		moves_rows = dropped_a_member();
	else
		moves_rows = moves_rows && in_a_tree(parent);
	mapping_trees_changed();
	sync_triggers();
	sync_protection();
	if (moves_rows)
	{
		become_extension_owner(&oc);
		(void) rebuild_totals(NULL);
		restore_user(&oc);
	}
	SPI_finish();
	PG_RETURN_VOID();
}
