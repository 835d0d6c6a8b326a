/*
 * groups.c
 *		The group operations of the seed: move patrons into another patron's
 *		group, remove, register a new member by cloning, mark leads, name a
 *		group.
 *
 * Every operation takes its locks in the one order of locks.c: the account
 * rows involved, in patron_id order, then the group rows involved, in
 * group_id order.  Two operations on overlapping
 * patrons therefore queue behind each other instead of deadlocking, and the
 * second one re-reads (READ COMMITTED) what the first one left.  The actual
 * change is a plain UPDATE of patron_group.accounts: its trigger
 * (accounts.c) keeps the group counts and writes the history, so an
 * operation never does that bookkeeping twice.
 *
 * The operations write patron_group's tables as the extension owner; the
 * INSERTs a clone makes into the library system's tables run as the caller,
 * so the library system's own privileges still apply to them.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "utils/acl.h"
#include "utils/lsyscache.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_move_to_group);
PG_FUNCTION_INFO_V1(pg_move_patron_to_group);
PG_FUNCTION_INFO_V1(pg_remove_from_group);
PG_FUNCTION_INFO_V1(pg_clone_patron);
PG_FUNCTION_INFO_V1(pg_set_lead);
PG_FUNCTION_INFO_V1(pg_set_group_label);

/* The optional reason argument as a C string, or NULL. */
static char *
reason_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* Run a statement with parameters through its kept plan (see run_sql()). */
static void
spi_run(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		int expect)
{
	run_sql(sql, nargs, types, values, nulls, false, expect);
}

/*
 * Put patrons' accounts in a group, or in none (group 0): the one statement
 * that changes a membership.  The lead flag and the consents stay with the
 * old group, since consent is given to a group's leads.  Leaving touches
 * only those in a group.  The caller holds the accounts' and the groups'
 * locks and has set the history's reason.
 */
void
set_accounts_group(const int64 *patrons, int n, int64 group)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8ARRAYOID, INT8OID};
	Datum		values[2] = {int8_array(patrons, n), Int64GetDatum(group)};

	run_kept(kept_plan(&plan,
					   "UPDATE " PG_SCHEMA ".accounts SET group_id = $2, is_lead = false, "
					   "share_circulations = false, share_bills = false, "
					   "share_circulations_until = NULL, share_bills_until = NULL "
					   "WHERE patron_id OPERATOR(pg_catalog.=) ANY ($1) "
					   "AND ($2 IS NOT NULL OR group_id IS NOT NULL)", 2, types),
			 values, group == 0 ? " n" : NULL, false, SPI_OK_UPDATE);
}

/* Create a group and put the patron (whose account is locked) in it. */
static int64
new_group_for(int64 patron, const char *reason)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];
	bool		isnull;
	int64		group_id;

	spi_run("INSERT INTO " PG_SCHEMA ".groups DEFAULT VALUES RETURNING group_id",
			0, NULL, NULL, NULL, SPI_OK_INSERT_RETURNING);
	group_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	values[0] = Int64GetDatum(patron);
	values[1] = Int64GetDatum(group_id);
	history_context_set(NULL, reason);
	spi_run("UPDATE " PG_SCHEMA ".accounts SET group_id = $2 "
			"WHERE patron_id OPERATOR(pg_catalog.=) $1",
			2, types, values, NULL, SPI_OK_UPDATE);
	return group_id;
}

/* Refuse patrons the library system deleted (deleted_when): they join no group. */
static void
refuse_deleted(const int64 *ids, int n)
{
	const Mapping *m = get_mapping();
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {int8_array(ids, n)};
	bool		isnull;
	Datum		d;

	ils_exec(m->patrons->relid,
			 psprintf("SELECT pg_catalog.min(p.patron_id::pg_catalog.int8) FROM %s p "
					  "WHERE p.patron_id OPERATOR(pg_catalog.=) ANY ($1) AND p.is_deleted",
					  m->patrons->mapping_name),
			 1, types, values, NULL, true, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("patron " INT64_FORMAT " is deleted in the library system", DatumGetInt64(d)),
				 errhint("A deleted patron joins no group.")));
}

/*
 * Put patrons into the group of another patron.  Leaving their old group
 * clears their lead flag and consent, as remove_from_group() does.
 */
int64
move_patrons(int64 *movers, int n, int64 target, const char *reason)
{
	int64	   *ids = palloc(sizeof(int64) * (n + 1));
	int64	   *groups = palloc(sizeof(int64) * (n + 1));
	int64		target_group;
	int			m = 0;
	OwnerContext oc;

	/* distinct movers, in patron_id order, then the target last */
	memcpy(ids, movers, sizeof(int64) * n);
	qsort(ids, n, sizeof(int64), compare_int64);
	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (ids[i] == target)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("patron " INT64_FORMAT " cannot be moved into their own group", target),
					 errdetail("The patron to move and the patron whose group to join are the same.")));
		if (m == 0 || ids[m - 1] != ids[i])
			ids[m++] = ids[i];
	}
	if (m == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no patrons to move")));
	ids[m] = target;

	become_extension_owner(&oc);
	refuse_if_replicated();
	SPI_connect();
	(void) mapping_patrons(false);
	lock_patron_rows(mapping_patrons(true), ids, m + 1);
	(void) lock_accounts(ids, m + 1, groups);
	refuse_deleted(ids, m + 1);
	target_group = groups[m];
	for (int i = 0; i < m; i++)
		if (target_group != 0 && groups[i] == target_group)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("patron " INT64_FORMAT " is already in the group of patron " INT64_FORMAT,
							ids[i], target),
					 errdetail("Group " INT64_FORMAT ".", target_group)));
	lock_groups(groups, m + 1);
	if (target_group == 0)
		target_group = new_group_for(target, reason);

	history_context_set(NULL, reason);
	set_accounts_group(ids, m, target_group);
	history_context_clear();
	SPI_finish();
	restore_user(&oc);
	return target_group;
}

/* move_to_group(bigint[], bigint, text): move several patrons at once. */
Datum
pg_move_to_group(PG_FUNCTION_ARGS)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int64	   *ids;

	require_arg(fcinfo, 0, "patron_ids");
	require_arg(fcinfo, 1, "into_group_of");
	arr = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("patron_ids must not contain nulls")));
		ids[i] = DatumGetInt64(elems[i]);
	}
	PG_RETURN_INT64(move_patrons(ids, n, PG_GETARG_INT64(1), reason_arg(fcinfo, 2)));
}

/* move_to_group(bigint, bigint, text): move one patron. */
Datum
pg_move_patron_to_group(PG_FUNCTION_ARGS)
{
	int64		id;

	require_arg(fcinfo, 0, "patron_id");
	require_arg(fcinfo, 1, "into_group_of");
	id = PG_GETARG_INT64(0);
	PG_RETURN_INT64(move_patrons(&id, 1, PG_GETARG_INT64(1), reason_arg(fcinfo, 2)));
}

/* Lock one patron's account and group; the patron must be in a group. */
static int64
lock_member(int64 patron)
{
	int64		group_id;

	lock_patron_rows(mapping_patrons(true), &patron, 1);
	(void) lock_accounts(&patron, 1, &group_id);
	if (group_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("patron " INT64_FORMAT " is not in a group", patron)));
	lock_groups(&group_id, 1);
	return group_id;
}

/* remove_from_group(bigint, text): take a patron out of their group. */
Datum
pg_remove_from_group(PG_FUNCTION_ARGS)
{
	int64		patron;
	OwnerContext oc;

	require_arg(fcinfo, 0, "patron_id");
	patron = PG_GETARG_INT64(0);

	become_extension_owner(&oc);
	refuse_if_replicated();
	SPI_connect();
	(void) mapping_patrons(false);
	(void) lock_member(patron);
	history_context_set(NULL, reason_arg(fcinfo, 1));
	set_accounts_group(&patron, 1, 0);
	history_context_clear();
	SPI_finish();
	restore_user(&oc);
	PG_RETURN_VOID();
}

/* set_lead(bigint, boolean, text): mark or unmark a lead. */
Datum
pg_set_lead(PG_FUNCTION_ARGS)
{
	int64		patron;
	OwnerContext oc;
	Oid			types[2] = {INT8OID, BOOLOID};
	Datum		values[2];

	require_arg(fcinfo, 0, "patron_id");
	require_arg(fcinfo, 1, "is_lead");
	patron = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(patron);
	values[1] = PG_GETARG_DATUM(1);

	become_extension_owner(&oc);
	refuse_if_replicated();
	SPI_connect();
	(void) mapping_patrons(false);
	(void) lock_member(patron);
	history_context_set(NULL, reason_arg(fcinfo, 2));
	spi_run("UPDATE " PG_SCHEMA ".accounts SET is_lead = $2 "
			"WHERE patron_id OPERATOR(pg_catalog.=) $1 AND is_lead OPERATOR(pg_catalog.<>) $2",
			2, types, values, NULL, SPI_OK_UPDATE);
	history_context_clear();
	SPI_finish();
	restore_user(&oc);
	PG_RETURN_VOID();
}

/* set_group_label(bigint, text, text): name a group. */
Datum
pg_set_group_label(PG_FUNCTION_ARGS)
{
	int64		group_id;
	OwnerContext oc;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	char		nulls[2];
	char	   *label;
	char	   *reason;

	memset(nulls, ' ', sizeof(nulls));
	require_arg(fcinfo, 0, "group_id");
	group_id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(group_id);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';
	else
		values[1] = PG_GETARG_DATUM(1);
	label = PG_ARGISNULL(1) ? "none" : quote_literal_cstr(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	reason = reason_arg(fcinfo, 2);

	become_extension_owner(&oc);
	refuse_if_replicated();
	SPI_connect();
	spi_run("UPDATE " PG_SCHEMA ".groups SET label = $2 "
			"WHERE group_id OPERATOR(pg_catalog.=) $1",
			2, types, values, nulls, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("group " INT64_FORMAT " does not exist", group_id)));
	record_group_event("label", false, group_id,
					   psprintf("%s%slabel set to %s", reason ? reason : "", reason ? ": " : "", label),
					   NULL);
	SPI_finish();
	restore_user(&oc);
	PG_RETURN_VOID();
}

/* Is 'column' a live column of relid? */
static bool
has_column(Oid relid, const char *column)
{
	AttrNumber	attnum = get_attnum(relid, column);

	return attnum != InvalidAttrNumber && attnum > 0;
}

/*
 * Refuse a clone that would leave a column the patron table requires
 * without a value, or copy a value that must be unique, before anything is
 * written: the caller learns every column at once.  Required: NOT NULL
 * without a default (nor identity or generated), neither copied nor given.
 * Unique: a column copied from the source that a unique index covers alone.
 */
static void
refuse_unfilled_columns(const Attachment *map, List *keys)
{
	Oid			types[3] = {OIDOID, NAMEARRAYOID, NAMEARRAYOID};
	Datum		names_given[64];
	Datum		names_copied[64];
	int			ngiven = 0,
				ncopied = 0;
	ListCell   *lc;
	Datum		values[3];
	char	   *missing;
	char	   *unique;

	foreach(lc, keys)
		if (ngiven < (int) lengthof(names_given))
			names_given[ngiven++] = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc)));
	foreach(lc, map->clone_columns)
	{
		bool		given = false;
		ListCell   *k;

		foreach(k, keys)
			given |= strcmp(lfirst(k), lfirst(lc)) == 0;
		if (!given && ncopied < (int) lengthof(names_copied))
			names_copied[ncopied++] = DirectFunctionCall1(namein, CStringGetDatum(lfirst(lc)));
	}
	values[0] = ObjectIdGetDatum(map->relid);
	values[1] = PointerGetDatum(construct_array(names_given, ngiven, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
	values[2] = PointerGetDatum(construct_array(names_copied, ncopied, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR));
	run_sql("SELECT pg_catalog.string_agg(a.attname::pg_catalog.text, ', ' ORDER BY a.attnum) "
			"FILTER (WHERE a.attnotnull AND NOT a.atthasdef AND a.attidentity OPERATOR(pg_catalog.=) '' "
			"AND a.attgenerated OPERATOR(pg_catalog.=) '' "
			"AND a.attname OPERATOR(pg_catalog.<>) ALL ($2) AND a.attname OPERATOR(pg_catalog.<>) ALL ($3)), "
			"pg_catalog.string_agg(a.attname::pg_catalog.text, ', ' ORDER BY a.attnum) "
			"FILTER (WHERE a.attname OPERATOR(pg_catalog.=) ANY ($3) AND EXISTS (SELECT FROM pg_catalog.pg_index i "
			"WHERE i.indrelid OPERATOR(pg_catalog.=) a.attrelid AND i.indisunique AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 "
			"AND i.indkey[0] OPERATOR(pg_catalog.=) a.attnum AND i.indpred IS NULL)) "
			"FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) $1 "
			"AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
			3, types, values, NULL, true, SPI_OK_SELECT);
	missing = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	unique = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (missing)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("a clone needs a value for %s of \"%s\"", missing, get_rel_name(map->relid)),
				 errdetail("The column is NOT NULL without a default, and neither copied (clone_columns) nor given."),
				 errhint("Give it in new_values, for example '{\"%s\": ...}'.",
						 pnstrdup(missing, strcspn(missing, ",")))));
	if (unique)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("a clone cannot copy %s of \"%s\": it is unique", unique, get_rel_name(map->relid)),
				 errhint("Give the clone its own value in new_values, or take the column out of clone_columns.")));
}

/*
 * Refuse a caller who lacks a privilege on a table of the library system,
 * on the table or on every column, as PostgreSQL would refuse the caller's
 * own statement.
 */
static void
require_table_privilege(Oid relid, AclMode mode)
{
	Oid			caller = GetUserId();

	/* each privilege on its own: the checks accept any one of those asked */
	for (AclMode bit = 1; bit != 0 && bit <= mode; bit <<= 1)
		if ((mode & bit) && pg_class_aclcheck(relid, caller, bit) != ACLCHECK_OK &&
			pg_attribute_aclcheck_all(relid, caller, bit, ACLMASK_ALL) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));
}

/*
 * clone_patron(bigint, jsonb, text): register a new patron copying the
 * configured columns of the source, with new_values on top, in the source's
 * group (created when the source has none).  The key "barcode" is the new
 * patron's barcode: stored in the patron table's barcode column, or as a new
 * card when barcodes live in a card table.
 */
Datum
pg_clone_patron(PG_FUNCTION_ARGS)
{
	int64		source;
	Jsonb	   *new_values;
	char	   *reason;
	OwnerContext oc;
	const Mapping *m;
	const Attachment *map;
	const Attachment *cards;
	int64		source_group;
	int64		new_id;
	text	   *card_barcode = NULL;
	text	   *new_barcode = NULL;
	List	   *keys = NIL;
	StringInfoData cols;
	StringInfoData vals;
	ListCell   *lc;
	bool		isnull;
	Oid			types[2] = {INT8OID, JSONBOID};
	Datum		values[2];

	require_arg(fcinfo, 0, "source_patron_id");
	require_arg(fcinfo, 1, "new_values");
	source = PG_GETARG_INT64(0);
	new_values = PG_GETARG_JSONB_P(1);
	reason = reason_arg(fcinfo, 2);
	if (!JB_ROOT_IS_OBJECT(new_values) || JB_ROOT_IS_SCALAR(new_values))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("new_values must be a JSON object of column names and values"),
				 errhint("For example: '{\"given_name\": \"Ana\", \"barcode\": \"29000000000999\"}'")));

	become_extension_owner(&oc);
	refuse_if_replicated();
	SPI_connect();
	m = get_mapping();
	map = mapping_patrons(false);
	cards = m->cards;
	(void) lock_accounts(&source, 1, &source_group);

	/* the keys: columns of the patron table, or the card barcode */
	values[0] = Int64GetDatum(source);
	values[1] = JsonbPGetDatum(new_values);
	spi_run("SELECT k, $1 OPERATOR(pg_catalog.->>) k FROM pg_catalog.jsonb_object_keys($1) k ORDER BY k",
			1, types + 1, values + 1, NULL, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *key = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		char	   *val = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);

		if (!has_column(map->relid, key))
		{
			if (strcmp(key, "barcode") == 0 && cards)
			{
				card_barcode = val ? cstring_to_text(val) : NULL;
				new_barcode = card_barcode;
				continue;
			}
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							key, get_rel_name(map->relid)),
					 errdetail("It was given in new_values.")));
		}
		if (map->barcode_column && val &&
			strcmp(quote_identifier(key), map->barcode_column) == 0)
			new_barcode = cstring_to_text(val);
		keys = lappend(keys, key);
	}

	/* a barcode must not already be someone's */
	if (new_barcode)
	{
		int64		owner_id = resolve_barcode_internal(m, new_barcode, true, true);

		if (owner_id != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("barcode \"%s\" already belongs to patron " INT64_FORMAT,
							text_to_cstring(new_barcode), owner_id)));
	}

	initStringInfo(&cols);
	initStringInfo(&vals);
	foreach(lc, map->clone_columns)
	{
		char	   *col = lfirst(lc);
		bool		overridden = false;
		ListCell   *k;

		foreach(k, keys)
			overridden |= strcmp(col, lfirst(k)) == 0;
		if (overridden)
			continue;
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", quote_identifier(col));
		appendStringInfo(&vals, "%ss.%s", vals.len ? ", " : "", quote_identifier(col));
	}
	foreach(lc, keys)
	{
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", quote_identifier(lfirst(lc)));
		appendStringInfo(&vals, "%sv.%s", vals.len ? ", " : "", quote_identifier(lfirst(lc)));
	}

	refuse_unfilled_columns(map, keys);

	/*
	 * The library system's tables are written as their owner (its triggers
	 * and defaults never run with anyone else's rights), by a caller who
	 * holds the privileges such a registration needs.
	 */
	restore_user(&oc);
	require_table_privilege(map->relid, ACL_INSERT | ACL_SELECT);
	if (card_barcode)
		require_table_privilege(cards->relid,
								ACL_INSERT | (cards->primary_card_name && cards->card_id_name ? ACL_SELECT : 0));
	if (card_barcode && cards->primary_card_name && cards->card_id_name)
		require_table_privilege(map->relid, ACL_UPDATE);
	if (cols.len == 0)
		ils_exec(map->relid,
				 psprintf("INSERT INTO %s DEFAULT VALUES RETURNING %s::pg_catalog.int8",
						  map->relname, map->id_column),
				 0, NULL, NULL, NULL, false, SPI_OK_INSERT_RETURNING);
	else
		ils_exec(map->relid,
				 psprintf("INSERT INTO %s (%s) SELECT %s FROM %s s, "
						  "pg_catalog.jsonb_populate_record(NULL::%s, $2) v "
						  "WHERE s.%s OPERATOR(pg_catalog.=) $1 RETURNING %s::pg_catalog.int8",
						  map->relname, cols.data, vals.data, map->relname,
						  map->relname, map->id_column, map->id_column),
				 2, types, values, NULL, false, SPI_OK_INSERT_RETURNING);
	new_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (card_barcode)
	{
		Oid			ctypes[2] = {INT8OID, TEXTOID};
		Datum		cvalues[2] = {Int64GetDatum(new_id), PointerGetDatum(card_barcode)};
		bool		primary = cards->primary_card_name && cards->card_id_name;

		/* one statement a table, each as its own table's owner */
		ils_exec(cards->relid,
				 psprintf("INSERT INTO %s (%s, %s) VALUES ($1, $2)%s%s",
						  cards->relname, cards->patron_column, cards->barcode_column,
						  primary ? " RETURNING " : "",
						  primary ? quote_identifier(cards->card_id_name) : ""),
				 2, ctypes, cvalues, NULL, false, primary ? SPI_OK_INSERT_RETURNING : SPI_OK_INSERT);
		if (primary)
		{
			/* the new card is the primary one, as the library system registers a patron */
			Oid			ptypes[2] = {INT8OID, SPI_gettypeid(SPI_tuptable->tupdesc, 1)};
			Datum		pvalues[2] = {Int64GetDatum(new_id),
			SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)};

			ils_exec(map->relid,
					 psprintf("UPDATE %s p SET %s = $2 WHERE p.%s OPERATOR(pg_catalog.=) $1",
							  map->relname, quote_identifier(cards->primary_card_name), map->id_column),
					 2, ptypes, pvalues, isnull ? " n" : NULL, false, SPI_OK_UPDATE);
		}
	}
	become_extension_owner(&oc);

	/* join the source's group; the new account is ours alone until commit */
	lock_groups(&source_group, 1);
	if (source_group == 0)
		source_group = new_group_for(source, reason);
	{
		Oid			utypes[2] = {INT8OID, INT8OID};
		Datum		uvalues[2] = {Int64GetDatum(new_id), Int64GetDatum(source_group)};

		history_context_set("clone", reason);
		spi_run("UPDATE " PG_SCHEMA ".accounts SET group_id = $2 "
				"WHERE patron_id OPERATOR(pg_catalog.=) $1",
				2, utypes, uvalues, NULL, SPI_OK_UPDATE);
		if (SPI_processed != 1)
			elog(ERROR, "clone " INT64_FORMAT " has no account row", new_id);
	}
	history_context_clear();
	SPI_finish();
	restore_user(&oc);
	PG_RETURN_INT64(new_id);
}


