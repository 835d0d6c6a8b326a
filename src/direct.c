/*
 * direct.c
 *		Adding a statement's deltas to the account and group rows through the
 *		table access method, as logical replication applies a row.
 *
 * The SQL path (deltas.c) runs an UPDATE through SPI as the extension
 * owner: a plan to start, the executor to set up, the owner and search_path
 * to switch, for what is, on the hot path, one row of accounts and one of
 * groups.  Here the same change is made the way PostgreSQL's apply worker
 * makes a replicated one: each row is found through the primary key with
 * the statement's snapshot, its new version formed from the old one plus
 * the deltas, and written with table_tuple_update(), which WAL-logs it,
 * takes the row lock, checks for serialization conflicts (SSI) and keeps the
 * update HOT where it can.  Where it cannot, the new index entries are made
 * as the executor makes them.
 *
 * The semantics are those of the UPDATE it replaces:
 *	- the lock order: accounts in patron_id order (the deltas come sorted),
 *	  then groups in group_id order;
 *	- READ COMMITTED: a row updated since the snapshot is locked at its
 *	  latest version and the deltas added to that (no update is lost); a row
 *	  deleted meanwhile is skipped, as an UPDATE skips it;
 *	- REPEATABLE READ and SERIALIZABLE: a row changed since the snapshot is a
 *	  serialization failure (40001), never a silent wrong total;
 *	- a count that leaves bigint is 22003, as int8 addition says.
 *
 * This is correct only while nothing but the figures concerns such an
 * update: no trigger that an UPDATE of the figures would fire, no rule, no
 * CHECK or index or generated column that reads a figure, no forced
 * row-level security, no inheritance child.  Whether that holds is learned
 * from the relation's definition, once, and again whenever its relcache
 * entry is invalidated (any DDL on it); when it does not hold, the caller
 * takes the SQL path and direct_refusal() (health()) says why.
 *
 * Nothing here runs SQL, switches user or reads a catalog per row: the
 * relation and index are opened once per statement, their shape is cached.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_direct_refusal);

/* What is known of accounts or groups, for the direct path. */
typedef struct DirectTable
{
	const char *name;			/* "accounts" or "groups" */
	const char *key_name;		/* its primary key column */
	bool		known;			/* the fields below are current */
	Oid			relid;
	Oid			pkey;			/* the primary key's index */
	AttrNumber	key;
	AttrNumber	group;			/* accounts: group_id; groups: 0 */
	AttrNumber	figure[N_FIGURES];
	char	   *refusal;		/* why not direct (TopMemoryContext); NULL: direct */
} DirectTable;

static DirectTable accounts_table = {.name = "accounts", .key_name = "patron_id"};
static DirectTable groups_table = {.name = "groups", .key_name = "group_id"};
static bool callback_registered = false;

/* Forget what was learned of a table whose definition may have changed. */
static void
direct_relcache_callback(Datum arg, Oid relid)
{
	DirectTable *tables[2] = {&accounts_table, &groups_table};

	for (int i = 0; i < 2; i++)
		if (relid == InvalidOid || relid == tables[i]->relid || relid == tables[i]->pkey)
			tables[i]->known = false;
}

/* The attribute number of a live column, or InvalidAttrNumber. */
static AttrNumber
column_named(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

/* Does a set of attributes (offset by FirstLowInvalidHeapAttributeNumber) hold a figure? */
static bool
reads_a_figure(const DirectTable *t, Bitmapset *attrs)
{
	for (int f = 0; f < N_FIGURES; f++)
		if (bms_is_member(t->figure[f] - FirstLowInvalidHeapAttributeNumber, attrs))
			return true;
	return false;
}

/*
 * Why an update of the figures of this relation would concern more than the
 * figures (a string in the caller's memory), or NULL if nothing else.
 * Fills in t's columns and primary key.
 */
static char *
what_else_concerns(DirectTable *t, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	Relation	pk;
	bool		pk_ok;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		return "it is not a plain table";
	if (rel->rd_rel->relhassubclass)
		return "it has inheritance children";
	if (rel->rd_rel->relforcerowsecurity)
		return "row-level security is forced on it";
	if (rel->rd_rules != NULL)
		return "it has rules";
	if (constr && constr->has_generated_stored)
		return "it has generated columns";

	t->key = column_named(desc, t->key_name);
	if (t->key == InvalidAttrNumber || TupleDescAttr(desc, t->key - 1)->atttypid != INT8OID)
		return psprintf("column %s is not bigint", t->key_name);
	t->group = InvalidAttrNumber;
	if (t == &accounts_table)
	{
		t->group = column_named(desc, "group_id");
		if (t->group == InvalidAttrNumber || TupleDescAttr(desc, t->group - 1)->atttypid != INT8OID)
			return "column group_id is not bigint";
	}
	for (int f = 0; f < N_FIGURES; f++)
	{
		Form_pg_attribute att;

		t->figure[f] = column_named(desc, figure_names[f]);
		if (t->figure[f] == InvalidAttrNumber)
			return psprintf("column %s is missing", figure_names[f]);
		att = TupleDescAttr(desc, t->figure[f] - 1);
		if (f < N_COUNTS ? att->atttypid != INT8OID
			: (att->atttypid != NUMERICOID || att->atttypmod != -1))
			return psprintf("column %s is not of type %s", figure_names[f],
							f < N_COUNTS ? "bigint" : "numeric");
	}

	/* triggers an UPDATE of the figures would fire (RI triggers check keys only) */
	if (rel->trigdesc)
		for (int i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			Trigger    *tg = &rel->trigdesc->triggers[i];
			bool		figure_column = false;

			if (!TRIGGER_FOR_UPDATE(tg->tgtype) || tg->tgenabled == TRIGGER_DISABLED ||
				RI_FKey_trigger_type(tg->tgfoid) != RI_TRIGGER_NONE)
				continue;
			for (int c = 0; c < tg->tgnattr; c++)
				for (int f = 0; f < N_FIGURES; f++)
					figure_column |= tg->tgattr[c] == t->figure[f];
			if (tg->tgnattr == 0 || figure_column)
				return psprintf("trigger \"%s\" fires on an update of the totals", tg->tgname);
		}

	/* CHECK constraints on a figure */
	if (constr)
		for (int i = 0; i < constr->num_check; i++)
		{
			Bitmapset  *attrs = NULL;

			pull_varattnos(stringToNode(constr->check[i].ccbin), 1, &attrs);
			if (reads_a_figure(t, attrs))
				return psprintf("CHECK constraint \"%s\" reads a total", constr->check[i].ccname);
		}

	/* an index on a figure (in its columns, expressions or predicate) */
	if (reads_a_figure(t, index_attrs_all(rel)))
		return "an index reads a total";

	/* the primary key: a btree on the bigint key alone */
	t->pkey = immediate_primary_key(rel);
	if (!OidIsValid(t->pkey))
		return "it has no primary key";
	pk = index_open(t->pkey, AccessShareLock);
	pk_ok = pk->rd_rel->relam == BTREE_AM_OID && pk->rd_index->indnkeyatts == 1 &&
		pk->rd_index->indkey.values[0] == t->key && pk->rd_opcintype[0] == INT8OID &&
		RelationGetIndexExpressions(pk) == NIL;
	index_close(pk, AccessShareLock);
	if (!pk_ok)
		return psprintf("its primary key is not a btree on %s alone", t->key_name);
	return NULL;
}

/*
 * Is the direct path open for this table?  Learned once, and again after
 * its definition changed.
 */
static bool
direct_ready(DirectTable *t)
{
	Oid			nsp;
	Relation	rel;
	char	   *why;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(direct_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (t->known)
		return t->refusal == NULL;

	nsp = get_namespace_oid(PG_SCHEMA, false);
	t->relid = get_relname_relid(t->name, nsp);
	if (!OidIsValid(t->relid))
		elog(ERROR, "relation %s.%s does not exist", PG_SCHEMA, t->name);
	t->pkey = InvalidOid;
	rel = table_open(t->relid, AccessShareLock);
	/* an invalidation from here on makes us learn it again next time */
	t->known = true;
	why = what_else_concerns(t, rel);
	table_close(rel, AccessShareLock);

	if (t->refusal)
		pfree(t->refusal);
	t->refusal = NULL;
	if (why)
	{
		t->refusal = MemoryContextStrdup(TopMemoryContext, psprintf("%s.%s: %s", PG_SCHEMA, t->name, why));
		elog(DEBUG1, "patron_group: totals written through SQL: %s", t->refusal);
	}
	return why == NULL;
}

/*
 * Lock accounts and groups as the UPDATE would (RowExclusiveLock), then say
 * whether the direct path is open.  Locking first matters: a trigger, index,
 * rule or CHECK added by a transaction that committed while we waited is
 * seen (its invalidation is processed when the lock is granted), and none
 * can be added until this transaction ends, since all of those need a lock
 * that conflicts with ours.
 */
static bool
direct_locked_and_ready(void)
{
	for (;;)
	{
		if (!accounts_table.known)
			(void) direct_ready(&accounts_table);
		if (!groups_table.known)
			(void) direct_ready(&groups_table);
		LockRelationOid(accounts_table.relid, RowExclusiveLock);
		LockRelationOid(groups_table.relid, RowExclusiveLock);
		if (accounts_table.known && groups_table.known)
			break;
		/* a definition changed while we waited: learn it again, under the locks */
	}
	return direct_ready(&accounts_table) && direct_ready(&groups_table);
}

/* One table being updated by the direct path, for one statement. */
typedef struct DirectUpdate
{
	DirectTable *t;
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *found;		/* the row as the snapshot sees it, then its latest version */
	TupleTableSlot *next;		/* its new version */
	Snapshot	snapshot;
	CommandId	cid;
	EState	   *estate;			/* for new index entries, made when first needed */
	ResultRelInfo *rri;
	MemoryContext cxt;			/* the scan's: it allocates as it goes, until its end */
} DirectUpdate;

static void
update_begin(DirectUpdate *u, DirectTable *t, Snapshot snapshot)
{
	memset(u, 0, sizeof(*u));
	u->t = t;
	u->rel = table_open(t->relid, RowExclusiveLock);
	/* a publication of the table needs its replica identity, as an UPDATE does */
	CheckCmdReplicaIdentity(u->rel, CMD_UPDATE);
	u->index = index_open(t->pkey, RowExclusiveLock);
	u->scan = index_scan_begin(u->rel, u->index, snapshot, 1, 0);
	u->found = table_slot_create(u->rel, NULL);
	u->next = MakeSingleTupleTableSlot(RelationGetDescr(u->rel), &TTSOpsVirtual);
	u->snapshot = snapshot;
	u->cid = GetCurrentCommandId(true);
	u->cxt = CurrentMemoryContext;
}

static void
update_end(DirectUpdate *u)
{
	if (u->estate)
	{
		ExecCloseIndices(u->rri);
		FreeExecutorState(u->estate);
	}
	index_endscan(u->scan);
	ExecDropSingleTupleTableSlot(u->found);
	ExecDropSingleTupleTableSlot(u->next);
	index_close(u->index, NoLock);
	table_close(u->rel, NoLock);
}

/*
 * The new index entries of a version, as table_tuple_update() said they are
 * needed: in every index when the update could not be HOT; from 16 on, in
 * the summarizing indexes (BRIN) alone when it was HOT but changed a column
 * one of them reads, which a figure never is (an index on one refuses the
 * direct path).
 */
static void
insert_index_entries(DirectUpdate *u, IndexEntriesNeeded needed)
{
	if (u->estate == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(u->cxt);

		/* everything in the executor state's memory, freed with it */
		u->estate = CreateExecutorState();
		MemoryContextSwitchTo(u->estate->es_query_cxt);
		u->estate->es_snapshot = u->snapshot;
		u->estate->es_output_cid = u->cid;
		u->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(u->rri, u->rel, 0, NULL, 0);
		ExecOpenIndices(u->rri, false);
		MemoryContextSwitchTo(old);
	}
	(void) insert_index_entries_for_update(u->rri, u->next, u->estate, needed);
	ResetPerTupleExprContext(u->estate);
}

static void
serialization_failure(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent %s", what)));
}

static void
already_modified(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
			 errmsg("tuple to be updated was already modified by an operation triggered by the current command")));
}

/*
 * Add a delta to the row whose key is key.  Returns false when there is no
 * such row (not a patron of the attached table; a group gone); otherwise
 * sets *group to the account's group (0: none; groups: unused).
 */
static bool
update_add(DirectUpdate *u, int64 key, const PatronDelta *d, int64 *group)
{
	const DirectTable *t = u->t;
	int			natts = RelationGetDescr(u->rel)->natts;
	ScanKeyData skey;
	MemoryContext rowcxt = MemoryContextSwitchTo(u->cxt);
	bool		found;

	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(key));
	index_rescan(u->scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(u->scan, ForwardScanDirection, u->found);
	MemoryContextSwitchTo(rowcxt);
	if (!found)
		return false;

	for (;;)
	{
		TM_Result	result;
		TM_FailureData tmfd;
		LockTupleMode lockmode;
		IndexEntriesNeeded needed;
		ItemPointerData tid;

		/* the new version: the old one, figures added */
		slot_getallattrs(u->found);
		ExecClearTuple(u->next);
		memcpy(u->next->tts_values, u->found->tts_values, natts * sizeof(Datum));
		memcpy(u->next->tts_isnull, u->found->tts_isnull, natts * sizeof(bool));
		for (int c = 0; c < N_COUNTS; c++)
		{
			int			i = t->figure[c] - 1;
			int64		sum;

			if (d->count[c] == 0)
				continue;
			if (u->found->tts_isnull[i])
				elog(ERROR, "%s.%s is null", t->name, figure_names[c]);
			if (pg_add_s64_overflow(DatumGetInt64(u->found->tts_values[i]), d->count[c], &sum))
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("bigint out of range"),
						 errdetail("%s of %s " INT64_FORMAT " would leave the range of bigint.",
								   figure_names[c], t->key_name, key)));
			u->next->tts_values[i] = Int64GetDatum(sum);
		}
		for (int a = 0; a < N_AMOUNTS; a++)
		{
			int			i = t->figure[N_COUNTS + a] - 1;

			if (d->amount[a] == NULL)
				continue;
			if (u->found->tts_isnull[i])
				elog(ERROR, "%s.%s is null", t->name, figure_names[N_COUNTS + a]);
			u->next->tts_values[i] =
				NumericGetDatum(numeric_add_opt_error(DatumGetNumeric(u->found->tts_values[i]),
													  d->amount[a], NULL));
		}
		ExecStoreVirtualTuple(u->next);

		tid = u->found->tts_tid;
		result = table_tuple_update(u->rel, &tid, u->next, u->cid, u->snapshot, InvalidSnapshot,
									true, &tmfd, &lockmode, &needed);
		switch (result)
		{
			case TM_Ok:
				if (NEEDS_INDEX_ENTRIES(needed))
					insert_index_entries(u, needed);
				if (group)
				{
					int			g = t->group - 1;

					*group = u->next->tts_isnull[g] ? 0 : DatumGetInt64(u->next->tts_values[g]);
				}
				return true;

			case TM_SelfModified:
				if (tmfd.cmax != u->cid)
					already_modified();
				return false;	/* updated by this very command: already counted */

			case TM_Deleted:
				if (IsolationUsesXactSnapshot())
					serialization_failure("delete");
				return false;	/* gone, as an UPDATE finds nothing */

			case TM_Updated:
				if (IsolationUsesXactSnapshot())
					serialization_failure("update");
				/* READ COMMITTED: lock the latest version and add to that */
				tid = u->found->tts_tid;
				result = table_tuple_lock(u->rel, &tid, u->snapshot, u->found, u->cid, lockmode,
										  LockWaitBlock, TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &tmfd);
				if (result == TM_Deleted)
					return false;
				if (result == TM_SelfModified)
				{
					if (tmfd.cmax != u->cid)
						already_modified();
					return false;
				}
				if (result != TM_Ok)
					elog(ERROR, "unexpected table_tuple_lock status: %u", result);
				/* the WHERE key = $1 of the UPDATE, on the latest version */
				{
					bool		isnull;
					Datum		k = slot_getattr(u->found, t->key, &isnull);

					if (isnull || DatumGetInt64(k) != key)
						return false;
				}
				continue;

			default:
				elog(ERROR, "unexpected table_tuple_update status: %u", result);
		}
	}
}

/*
 * Add the deltas (sorted by patron, one each) to the accounts, and the sums
 * of their groups' members to the groups, in the lock order.  Returns false,
 * having written nothing, when something besides the figures concerns such
 * an update: the caller then writes through SQL.
 */
bool
direct_apply(PatronDelta **deltas, int n)
{
	DirectUpdate u;
	DeltaSet	groups;
	PatronDelta **gdeltas;
	int			ng;
	MemoryContext rowcxt,
				old;

	if (n == 0)
		return true;
	if (!direct_locked_and_ready())
		return false;
	refuse_if_replicated();

	/* what this transaction did so far, seen as the next statement sees it */
	CommandCounterIncrement();
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();

	deltas_init(&groups, "patron_group group deltas");
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "patron_group direct row", ALLOCSET_SMALL_SIZES);
	update_begin(&u, &accounts_table, GetActiveSnapshot());
	for (int i = 0; i < n; i++)
	{
		int64		group;

		Assert(i == 0 || deltas[i - 1]->key < deltas[i]->key);
		MemoryContextReset(rowcxt);
		old = MemoryContextSwitchTo(rowcxt);
		if (update_add(&u, deltas[i]->key, deltas[i], &group) && group != 0)
			delta_add(&groups, delta_for(&groups, group), deltas[i], false);
		MemoryContextSwitchTo(old);
	}
	update_end(&u);

	gdeltas = nonzero_deltas(&groups, &ng);	/* sorted by group_id */
	if (ng > 0)
	{
		/* READ COMMITTED: the groups as a next statement would see them */
		if (!IsolationUsesXactSnapshot())
		{
			PopActiveSnapshot();
			PushCopiedSnapshot(GetTransactionSnapshot());
			UpdateActiveSnapshotCommandId();
		}
		update_begin(&u, &groups_table, GetActiveSnapshot());
		for (int i = 0; i < ng; i++)
		{
			MemoryContextReset(rowcxt);
			old = MemoryContextSwitchTo(rowcxt);
			(void) update_add(&u, gdeltas[i]->key, gdeltas[i], NULL);
			MemoryContextSwitchTo(old);
		}
		update_end(&u);
	}
	PopActiveSnapshot();
	MemoryContextDelete(rowcxt);
	deltas_free(&groups);
	return true;
}

/*
 * direct_refusal(): why the totals are written through SQL rather than
 * directly, or NULL when they are written directly.
 */
Datum
pg_direct_refusal(PG_FUNCTION_ARGS)
{
	if (!direct_ready(&accounts_table))
		PG_RETURN_TEXT_P(cstring_to_text(accounts_table.refusal));
	if (!direct_ready(&groups_table))
		PG_RETURN_TEXT_P(cstring_to_text(groups_table.refusal));
	PG_RETURN_NULL();
}
