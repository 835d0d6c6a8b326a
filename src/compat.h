/*
 * compat.h
 *		What differs between the PostgreSQL majors patron_group builds
 *		against, 14 to 18, in one place.  This is the only file that tests
 *		PG_VERSION_NUM; the rest of src/ calls what is defined here.
 *
 * Two kinds of definitions:
 *	- where a newer major added a function that an older one lacks, the
 *	  older majors get it under the newer name (InitMaterializedSRF,
 *	  MarkGUCPrefixReserved), so the code reads as on the newest server;
 *	- where a function changed its arguments or a field moved, a name of
 *	  our own says what is asked for (PG_LXID(), attrmap_by_name(), ...),
 *	  with the arguments each major needs.
 *
 * Each definition says in which major the difference appeared.
 */
#ifndef PATRON_GROUP_COMPAT_H
#define PATRON_GROUP_COMPAT_H

#include "access/attmap.h"
#include "access/genam.h"
#include "access/tableam.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/tuplestore.h"

#if PG_VERSION_NUM < 140000
#error "patron_group needs PostgreSQL 14 or later"
#endif

/*
 * The local id of this backend's current top-level transaction, which tells
 * one transaction from the next in a session.  17 moved it into
 * PGPROC.vxid.
 */
#if PG_VERSION_NUM >= 170000
#define PG_LXID() (MyProc->vxid.lxid)
#else
#define PG_LXID() (MyProc->lxid)
#endif

/*
 * The map from the columns of outdesc to those of indesc, matched by name;
 * a column of outdesc that indesc lacks is an error, as it was before 16
 * added missing_ok.
 */
static inline AttrMap *
attrmap_by_name(TupleDesc indesc, TupleDesc outdesc)
{
#if PG_VERSION_NUM >= 160000
	return build_attrmap_by_name(indesc, outdesc, false);
#else
	return build_attrmap_by_name(indesc, outdesc);
#endif
}

/*
 * Every column that some index of rel reads, in its key or included
 * columns, its expressions or its predicate, offset by
 * FirstLowInvalidHeapAttributeNumber (a fresh set, the caller's).  16
 * replaced INDEX_ATTR_BITMAP_ALL by two sets that together make it: the
 * columns of the indexes that block a HOT update, and those of the
 * summarizing indexes (BRIN), which do not.
 */
static inline Bitmapset *
index_attrs_all(Relation rel)
{
#if PG_VERSION_NUM >= 160000
	return bms_join(RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_HOT_BLOCKING),
					RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_SUMMARIZED));
#else
	return RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_ALL);
#endif
}

/*
 * The OID of rel's primary key index, or InvalidOid when it has none or the
 * primary key is DEFERRABLE (what RelationGetPrimaryKeyIndex() always did
 * before 18, which made the deferrable one available on request).
 */
static inline Oid
immediate_primary_key(Relation rel)
{
#if PG_VERSION_NUM >= 180000
	return RelationGetPrimaryKeyIndex(rel, false);
#else
	return RelationGetPrimaryKeyIndex(rel);
#endif
}

/*
 * An index scan of heap through index, uninstrumented (18 added the
 * instrumentation argument, for EXPLAIN).
 */
static inline IndexScanDesc
index_scan_begin(Relation heap, Relation index, Snapshot snapshot, int nkeys, int norderbys)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys);
#else
	return index_beginscan(heap, index, snapshot, nkeys, norderbys);
#endif
}

/*
 * Which new index entries a row version written by table_tuple_update()
 * needs.  Before 16 a bool: none (a HOT update), or one in every index.
 * From 16 on, TU_UpdateIndexes: TU_None (a HOT update that changed no
 * summarized column), TU_All (not HOT: every index), or TU_Summarizing (a
 * HOT update that changed a column of a summarizing index: those indexes
 * only).  Read as logical replication's apply worker reads it
 * (ExecSimpleRelationUpdate in execReplication.c, 14 to 18).
 */
#if PG_VERSION_NUM >= 160000
typedef TU_UpdateIndexes IndexEntriesNeeded;

#define NEEDS_INDEX_ENTRIES(needed) ((needed) != TU_None)
#else
typedef bool IndexEntriesNeeded;

#define NEEDS_INDEX_ENTRIES(needed) (needed)
#endif

/*
 * Make the index entries that the new version in slot needs, once
 * NEEDS_INDEX_ENTRIES(needed): in the summarizing indexes only for
 * TU_Summarizing, in all of rri's open indexes otherwise; no arbiter
 * indexes, no speculative insertion.  Returns the indexes whose deferred
 * constraints need a recheck.
 */
static inline List *
insert_index_entries_for_update(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
								IndexEntriesNeeded needed)
{
#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, true, false, NULL, NIL,
								 needed == TU_Summarizing);
#else
	return ExecInsertIndexTuples(rri, slot, estate, true, false, NULL, NIL);
#endif
}

/*
 * The parameters of an ExecutorRun_hook, and the arguments that pass them
 * on to the previous hook or to standard_ExecutorRun(): 18 dropped
 * execute_once.  The hook's parameters are named queryDesc, direction and
 * count (and execute_once before 18).
 */
#if PG_VERSION_NUM >= 180000
#define EXECUTOR_RUN_HOOK_PARAMS QueryDesc *queryDesc, ScanDirection direction, uint64 count
#define EXECUTOR_RUN_HOOK_ARGS queryDesc, direction, count
#else
#define EXECUTOR_RUN_HOOK_PARAMS QueryDesc *queryDesc, ScanDirection direction, uint64 count, \
	bool execute_once
#define EXECUTOR_RUN_HOOK_ARGS queryDesc, direction, count, execute_once
#endif

/*
 * timingsafe_bcmp(): 0 when the len bytes at b1 and b2 are equal, in a time
 * that does not depend on where they differ.  It came to every branch in a
 * minor release (15.15, 16.2 and 17.4 lack it; Debian's 15.18, 17.12 and
 * 18.6 have it), so what tells is the configure test that came with it,
 * not PG_VERSION_NUM.  For a server without it, the same loop as
 * PostgreSQL's src/port/timingsafe_bcmp.c without OpenSSL.
 */
#ifndef HAVE_DECL_TIMINGSAFE_BCMP
static inline int
timingsafe_bcmp(const void *b1, const void *b2, size_t len)
{
	const unsigned char *p1 = b1;
	const unsigned char *p2 = b2;
	int			ret = 0;

	for (; len > 0; len--)
		ret |= *p1++ ^ *p2++;
	return ret != 0;
}
#endif

#if PG_VERSION_NUM < 150000
/*
 * 15 added MarkGUCPrefixReserved(), which also removes the placeholders
 * already made under the prefix and refuses new ones; 14 can only warn of
 * them.
 */
#define MarkGUCPrefixReserved(className) EmitWarningsOnPlaceholders(className)

/*
 * 15 added InitMaterializedSRF(): a set-returning function's tuplestore
 * and result descriptor, in the per-query memory, as 15 makes them (only
 * the flags 0 that patron_group passes).
 */
static inline void
InitMaterializedSRF(FunctionCallInfo fcinfo, bits32 flags)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old_context;
	TupleDesc	stored_tupdesc;

	Assert(flags == 0);
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));

	old_context = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &stored_tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
											  false, work_mem);
	rsinfo->setDesc = stored_tupdesc;
	MemoryContextSwitchTo(old_context);
}
#endif

#endif							/* PATRON_GROUP_COMPAT_H */
