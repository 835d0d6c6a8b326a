/*
 * attach.c
 *		The top layer for the DBA: attaching the library system's own tables,
 *		changing how one is mapped (alter_attachment), and undoing it all with
 *		detach().  Each call validates everything first, so a failed one
 *		leaves nothing behind; then it creates the triggers and indexes the
 *		table needs, its mapping view (mapping.c), records the attachment,
 *		and counts what the table already holds, keeping writers out
 *		meanwhile (SHARE ROW EXCLUSIVE).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_attach_patrons);
PG_FUNCTION_INFO_V1(pg_attach_cards);
PG_FUNCTION_INFO_V1(pg_attach_circulations);
PG_FUNCTION_INFO_V1(pg_attach_money);
PG_FUNCTION_INFO_V1(pg_alter_attachment);
PG_FUNCTION_INFO_V1(pg_detach);
PG_FUNCTION_INFO_V1(pg_make_mapping_view);
PG_FUNCTION_INFO_V1(pg_attachments_restore);

/* ---------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------- */

/* The table to attach: a plain or partitioned table. */
static Oid
check_table(Oid relid)
{
	char		kind = get_rel_relkind(relid);

	if (kind != RELKIND_RELATION && kind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("Only tables and partitioned tables can be attached.")));
	return relid;
}

/* The attribute number of a column, or an error naming it. */
static AttrNumber
check_column(Oid relid, const char *column, const char *role)
{
	AttrNumber	attnum = get_attnum(relid, column);

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						column, get_rel_name(relid)),
				 errdetail("It was given as the %s.", role)));
	return attnum;
}

/* A column holding patron ids: smallint, integer or bigint. */
static void
check_id_column(Oid relid, const char *column, const char *role)
{
	Oid			type = get_atttype(relid, check_column(relid, column, role));

	if (type != INT2OID && type != INT4OID && type != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation \"%s\" has type %s, but patron ids must be smallint, integer or bigint",
						column, get_rel_name(relid), format_type_be(type)),
				 errdetail("It was given as the %s.", role)));
}

/* A column whose type is of the given category (string, numeric, ...). */
static void
check_column_category(Oid relid, const char *column, const char *role,
					  char want, const char *want_name)
{
	Oid			type = get_atttype(relid, check_column(relid, column, role));
	char		category;
	bool		preferred;

	get_type_category_preferred(getBaseType(type), &category, &preferred);
	if (category != want)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s \"%s\" of relation \"%s\" has type %s, but must be %s",
						role, column, get_rel_name(relid), format_type_be(type), want_name)));
}

/* A column holding barcodes: any string type. */
static void
check_barcode_column(Oid relid, const char *column)
{
	check_column_category(relid, column, "barcode column", TYPCATEGORY_STRING, "a string type");
}

/* A column holding a due date: date or timestamp. */
static void
check_due_column(Oid relid, const char *column)
{
	Oid			type = get_atttype(relid, check_column(relid, column, "due column"));

	if (type != TIMESTAMPTZOID && type != TIMESTAMPOID && type != DATEOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("due column \"%s\" of relation \"%s\" has type %s, but must be a date or timestamp",
						column, get_rel_name(relid), format_type_be(type))));
}

/* A column holding an amount of money: any numeric type. */
static void
check_amount_column(Oid relid, const char *column)
{
	check_column_category(relid, column, "amount column", TYPCATEGORY_NUMERIC, "numeric");
}

/*
 * The library system's household column: an integer (households are
 * numbered) whose default, or NULL, is what a patron who leaves a group
 * gets.
 */
static void
check_household_column(Oid relid, const char *column)
{
	AttrNumber	attnum;
	HeapTuple	tup;
	bool		ok;

	check_id_column(relid, column, "group column");
	attnum = get_attnum(relid, column);
	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for column %d of relation %u", attnum, relid);
	ok = ((Form_pg_attribute) GETSTRUCT(tup))->atthasdef || !((Form_pg_attribute) GETSTRUCT(tup))->attnotnull;
	ReleaseSysCache(tup);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group column \"%s\" of relation \"%s\" is NOT NULL without a default",
						column, get_rel_name(relid)),
				 errdetail("A patron who leaves a group gets the column's default (or NULL)."),
				 errhint("Give the column a default, such as a sequence, as Evergreen's usrgroup has.")));
}

/* Does a table have a (live) column of this name? */
static bool
has_attribute(Oid relid, const char *column)
{
	AttrNumber	attnum = get_attnum(relid, column);

	return attnum != InvalidAttrNumber && attnum > 0;
}

/* The column of what is still owed on a money row: numeric. */
static void
check_outstanding_column(Oid relid, const char *column)
{
	check_column_category(relid, column, "outstanding column", TYPCATEGORY_NUMERIC, "numeric");
}

/* The names of the columns a patron table's clone copies, checked. */
static void
check_clone_columns(Oid relid, const char *id_column, Datum clone_columns)
{
	Datum	   *elems;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(clone_columns), NAMEOID, NAMEDATALEN,
					  false, TYPALIGN_CHAR, &elems, NULL, &n);
	for (int i = 0; i < n; i++)
	{
		const char *col = NameStr(*DatumGetName(elems[i]));
		AttrNumber	attnum = check_column(relid, col, "clone column");
		HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
		Form_pg_attribute att = (Form_pg_attribute) GETSTRUCT(tup);
		bool		bad = att->attgenerated || att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;

		ReleaseSysCache(tup);
		if (bad || strcmp(col, id_column) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" of relation \"%s\" cannot be cloned",
							col, get_rel_name(relid)),
					 errdetail("The patron id and generated columns are never copied.")));
	}
}

/* The name columns of a patron table, checked, as a List of char *. */
static List *
check_name_columns(Oid relid, Datum name_columns)
{
	Datum	   *elems;
	int			n;
	List	   *result = NIL;

	deconstruct_array(DatumGetArrayTypeP(name_columns), NAMEOID, NAMEDATALEN,
					  false, TYPALIGN_CHAR, &elems, NULL, &n);
	for (int i = 0; i < n; i++)
	{
		check_column(relid, NameStr(*DatumGetName(elems[i])), "name column");
		result = lappend(result, pstrdup(NameStr(*DatumGetName(elems[i]))));
	}
	return result;
}

/* Refuse to attach a table twice, or a second table of a kind that allows one. */
static void
check_not_attached(Oid relid, MappingKind kind)
{
	const Attachment *current = attachment_of(relid);
	ListCell   *lc;

	if (current)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already attached as %s", get_rel_name(relid),
						mapping_kind_name(current->kind)),
				 errhint("Detach it first with patron_group.detach('%s').", qualified_relname(relid))));
	if (kind != MAP_PATRONS && kind != MAP_CARDS)
		return;					/* several circulation and money tables are fine */
	foreach(lc, get_mapping()->all)
	{
		Attachment *other = lfirst(lc);

		if (other->kind == kind)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("a %s table is already attached: \"%s\"", mapping_kind_name(kind),
							get_rel_name(other->relid)),
					 errhint("Detach it first with patron_group.detach('%s').", other->relname)));
	}
}

/* Refuse what needs a patron table when none is attached. */
static void
check_patrons_attached(const char *what)
{
	if (mapping_patrons(true) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no patron table is attached"),
				 errhint("Attach the patron table with patron_group.attach_patrons() before %s.", what)));
}

/*
 * Refuse a table whose rows another attached circulation or money table
 * already sees through inheritance or partitioning: its rows would count
 * twice.
 */
static void
check_no_overlap(Oid relid)
{
	List	   *mine = find_all_inheritors(relid, NoLock, NULL);
	ListCell   *lc;

	foreach(lc, get_mapping()->totals)
	{
		Oid			other = ((Attachment *) lfirst(lc))->relid;

		if (other == relid)
			continue;
		if (list_member_oid(mine, other) ||
			list_member_oid(find_all_inheritors(other, NoLock, NULL), relid))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" shares rows with attached table \"%s\" through inheritance or partitioning",
							get_rel_name(relid), get_rel_name(other)),
					 errhint("Attach either the parent or its children, not both.")));
	}
}

/*
 * Validate a boolean condition over a row of relid and return it in
 * canonical (deparsed) form, which the mapping view is made from.  It must
 * parse as one expression over that table alone, be boolean, and use no
 * subqueries, aggregates, set-returning or volatile functions.  The caller
 * runs with search_path pinned (every SQL function of the extension does),
 * so the deparsed form qualifies every name outside pg_catalog.
 */
static char *
validate_condition(Oid relid, const char *condition, const char *what)
{
	char	   *sql = psprintf("SELECT (%s) FROM %s", condition, qualified_relname(relid));
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *src;
	Query	   *q;
	TargetEntry *te;
	Node	   *expr;
	char	   *result;

	plan = SPI_prepare(sql, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for %s", what);
	sources = SPI_plan_get_plan_sources(plan);
	src = linitial(sources);
	q = list_length(sources) == 1 && list_length(src->query_list) == 1 ?
		linitial_node(Query, src->query_list) : NULL;
	if (q == NULL || q->commandType != CMD_SELECT || q->utilityStmt ||
		list_length(q->rtable) != 1 || list_length(q->targetList) != 1 ||
		q->jointree->quals || q->cteList || q->setOperations || q->sortClause ||
		q->groupClause || q->havingQual || q->distinctClause || q->limitCount ||
		q->limitOffset || q->rowMarks ||
		linitial_node(RangeTblEntry, q->rtable)->relid != relid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a single expression over a row of \"%s\"",
						what, get_rel_name(relid)),
				 errdetail("Given: %s", condition)));
	if (q->hasSubLinks || q->hasAggs || q->hasWindowFuncs || q->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s must not use subqueries, aggregates, window or set-returning functions", what),
				 errdetail("Given: %s", condition)));
	te = linitial_node(TargetEntry, q->targetList);
	expr = (Node *) te->expr;
	if (exprType(expr) != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s must be a boolean expression, not type %s",
						what, format_type_be(exprType(expr))),
				 errdetail("Given: %s", condition)));
	if (contain_mutable_functions(expr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must give the same answer for the same row whenever it is evaluated", what),
				 errdetail("Given: %s", condition),
				 errhint("Volatile and stable functions such as random() or now() are not allowed: counts are kept, not recomputed.")));
	result = deparse_expression(expr, deparse_context_for(get_rel_name(relid), relid), false, false);
	SPI_freeplan(plan);
	return result;
}

/* The text argument argno as a validated condition, or NULL when NULL. */
static char *
condition_arg(FunctionCallInfo fcinfo, int argno, Oid relid, const char *what)
{
	if (PG_ARGISNULL(argno))
		return NULL;
	return validate_condition(relid, text_to_cstring(PG_GETARG_TEXT_PP(argno)), what);
}

/* ---------------------------------------------------------------------------
 * What attaching creates on the library system's tables
 * ------------------------------------------------------------------------- */

/* CREATE INDEX on the normalized barcode; returns the index's oid. */
static Oid
create_barcode_index(Oid relid, const char *column)
{
	Oid			nsp = get_rel_namespace(relid);
	char	   *name = ChooseRelationName(get_rel_name(relid), column, "pgbarcode",
										  nsp, false);

	spi_exec(psprintf("CREATE INDEX %s ON %s (" PG_SCHEMA ".normalize_barcode(%s))",
					  quote_identifier(name), qualified_relname(relid),
					  quote_identifier(column)));
	CommandCounterIncrement();
	return get_relname_relid(name, nsp);
}

/* Drop the barcode index an attachment recorded, found by name among the table's. */
static void
drop_barcode_index(const Attachment *a)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	Datum		index;

	if (a->barcode_index == NULL)
		return;
	values[0] = ObjectIdGetDatum(a->relid);
	values[1] = CStringGetTextDatum(a->barcode_index);
	/* by its name, wherever its schema went */
	run_sql("SELECT (SELECT i.indexrelid FROM pg_catalog.pg_index i "
			"JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid "
			"WHERE i.indrelid OPERATOR(pg_catalog.=) $1 "
			"AND c.relname OPERATOR(pg_catalog.=) (SELECT p[pg_catalog.array_upper(p, 1)] "
			"FROM pg_catalog.parse_ident($2) p))",
			2, types, values, NULL, true, SPI_OK_SELECT);
	index = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull && get_rel_name(DatumGetObjectId(index)) != NULL)
		spi_exec(psprintf("DROP INDEX %s", qualified_relname(DatumGetObjectId(index))));
}

/* Warn when no index leads with a column that lookups filter on. */
static void
warn_missing_index(Oid relid, const char *column, const char *why)
{
	Oid			types[2] = {OIDOID, INT2OID};
	Datum		values[2] = {ObjectIdGetDatum(relid), Int16GetDatum(get_attnum(relid, column))};

	run_sql("SELECT FROM pg_catalog.pg_index WHERE indrelid OPERATOR(pg_catalog.=) $1 "
			"AND indkey[0] OPERATOR(pg_catalog.=) $2",
			2, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(WARNING,
				(errmsg("no index on column \"%s\" of relation \"%s\"", column, get_rel_name(relid)),
				 errdetail("%s", why),
				 errhint("CREATE INDEX ON %s (%s);", qualified_relname(relid), quote_identifier(column))));
}

/*
 * Keep writers of a table out while its attachment is made or changed: the
 * table and every table of its tree (LOCK TABLE locks the children too).
 */
static void
lock_for_attach(Oid relid)
{
	spi_exec(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", qualified_relname(relid)));
}

/* ---------------------------------------------------------------------------
 * Recording
 * ------------------------------------------------------------------------- */

/* The columns of an attachments row being written: names, types, values. */
typedef struct RowValues
{
	int			n;
	const char *names[32];
	Oid			types[32];
	Datum		values[32];
	char		nulls[32];
} RowValues;

/* Add a column to a row; a NULL value (a NULL pointer, or 0 for a Datum) is stored as NULL. */
static void
set_name(RowValues *r, const char *column, const char *value)
{
	r->names[r->n] = column;
	r->types[r->n] = NAMEOID;
	r->values[r->n] = value ? DirectFunctionCall1(namein, CStringGetDatum(value)) : (Datum) 0;
	r->nulls[r->n++] = value ? ' ' : 'n';
}

static void
set_value(RowValues *r, const char *column, Oid type, Datum value, bool isnull)
{
	r->names[r->n] = column;
	r->types[r->n] = type;
	r->values[r->n] = value;
	r->nulls[r->n++] = isnull ? 'n' : ' ';
}

/* A List of state names as a text[] Datum. */
static Datum
states_array(List *states)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(states), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, states)
		elems[n++] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* out_includes: text[] of loan states, each known and given once. */
static List *
out_includes_arg(FunctionCallInfo fcinfo, int argno)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *state = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
		bool		known = false;

		for (int k = 0; k < N_LOAN_STATES && state; k++)
			known |= strcmp(state, loan_states[k]) == 0;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("out_includes may name lost, claims_returned and long_overdue, not \"%s\"",
							state ? state : "NULL"),
					 errhint("An out or overdue loan always counts as out.")));
		if (!list_member(result, makeString(state)))
			result = lappend(result, makeString(state));
	}
	/* as plain strings, in the order given */
	{
		List	   *names = NIL;
		ListCell   *lc;

		foreach(lc, result)
			names = lappend(names, strVal(lfirst(lc)));
		return names;
	}
}

/* The default of out_includes: every state counts as out, as before 1.2. */
static List *
all_loan_states(void)
{
	List	   *result = NIL;

	for (size_t k = 0; k < lengthof(loan_states); k++)
		result = lappend(result, (char *) loan_states[k]);
	return result;
}

/* The attachments row of a mapping spec, its mapping view and the rest. */
static void
spec_row(RowValues *r, const MappingSpec *m, Oid view)
{
	set_name(r, "id_column", m->id_column);
	set_name(r, "patron_column", m->patron_column);
	set_name(r, "barcode_column", m->barcode_column);
	set_name(r, "due_column", m->due_column);
	set_value(r, "money_kind", TEXTOID, m->money_kind ? CStringGetTextDatum(m->money_kind) : 0,
			  m->money_kind == NULL);
	set_name(r, "amount_column", m->amount_column);
	set_name(r, "outstanding_column", m->outstanding_column);
	set_value(r, "out_includes", TEXTARRAYOID, m->kind == MAP_CIRCULATIONS ? states_array(m->out_includes) : 0,
			  m->kind != MAP_CIRCULATIONS);
	set_value(r, "mapping", OIDOID, ObjectIdGetDatum(view), false);
}

/* INSERT or UPDATE the attachments row of relid with r's columns, as the owner. */
static void
write_attachment(Oid relid, RowValues *r, bool insert)
{
	StringInfoData sql;
	OwnerContext oc;

	initStringInfo(&sql);
	if (insert)
	{
		appendStringInfoString(&sql, "INSERT INTO " PG_SCHEMA ".attachments (relid");
		for (int i = 0; i < r->n; i++)
			appendStringInfo(&sql, ", %s", r->names[i]);
		appendStringInfoString(&sql, ") VALUES ($1::pg_catalog.regclass");
		for (int i = 0; i < r->n; i++)
			appendStringInfo(&sql, ", $%d%s", i + 2, r->types[i] == OIDOID ? "::pg_catalog.regclass" : "");
		appendStringInfoChar(&sql, ')');
	}
	else
	{
		appendStringInfoString(&sql, "UPDATE " PG_SCHEMA ".attachments SET ");
		for (int i = 0; i < r->n; i++)
			appendStringInfo(&sql, "%s%s = $%d%s", i ? ", " : "", r->names[i], i + 2,
							 r->types[i] == OIDOID ? "::pg_catalog.regclass" : "");
		appendStringInfoString(&sql, " WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1");
	}
	/* the table first, then the columns */
	memmove(r->types + 1, r->types, sizeof(Oid) * r->n);
	memmove(r->values + 1, r->values, sizeof(Datum) * r->n);
	memmove(r->nulls + 1, r->nulls, r->n);
	r->types[0] = OIDOID;
	r->values[0] = ObjectIdGetDatum(relid);
	r->nulls[0] = ' ';
	become_extension_owner(&oc);
	run_sql(sql.data, r->n + 1, r->types, r->values, r->nulls, false,
			insert ? SPI_OK_INSERT : SPI_OK_UPDATE);
	restore_user(&oc);
	mapping_changed();
}

/*
 * Make the mapping view of a table and record its attachment.  'extra'
 * holds the columns besides those of the mapping spec.
 */
static void
record_attachment(MappingSpec *m, RowValues *extra)
{
	RowValues	r = *extra;

	set_value(&r, "kind", TEXTOID, CStringGetTextDatum(mapping_kind_name(m->kind)), false);
	spec_row(&r, m, create_mapping_view(m));
	write_attachment(m->relid, &r, true);
}

/* Count what the attached tables hold, as the extension owner. */
static void
recount_all(void)
{
	OwnerContext oc;

	become_extension_owner(&oc);
	(void) rebuild_totals(NULL);
	restore_user(&oc);
}

/* ---------------------------------------------------------------------------
 * attach_patrons, attach_cards, attach_circulations, attach_money
 * ------------------------------------------------------------------------- */

/* attach_patrons(): attach the library system's patron table. */
Datum
pg_attach_patrons(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *id_column;
	char	   *barcode_column = NULL;
	char	   *relname;
	Datum		name_columns = (Datum) 0;
	Datum		clone_columns;
	Oid			index = InvalidOid;
	OwnerContext oc;
	MappingSpec m;
	RowValues	extra = {0};

	require_arg(fcinfo, 0, "patron_table");
	require_arg(fcinfo, 1, "id_column");
	relid = check_table(PG_GETARG_OID(0));
	id_column = NameStr(*PG_GETARG_NAME(1));
	if (!PG_ARGISNULL(2))
		barcode_column = NameStr(*PG_GETARG_NAME(2));
	clone_columns = PG_ARGISNULL(4) ?
		PointerGetDatum(construct_empty_array(NAMEOID)) : PG_GETARG_DATUM(4);

	SPI_connect();
	check_not_attached(relid, MAP_PATRONS);
	check_id_column(relid, id_column, "id column");
	if (barcode_column)
		check_barcode_column(relid, barcode_column);
	memset(&m, 0, sizeof(m));
	if (!PG_ARGISNULL(3))
	{
		name_columns = PG_GETARG_DATUM(3);
		m.name_columns = check_name_columns(relid, name_columns);
	}
	check_clone_columns(relid, id_column, clone_columns);
	m.deleted_condition = condition_arg(fcinfo, 5, relid, "deleted_when");
	if (!PG_ARGISNULL(6))
	{
		m.group_column = NameStr(*PG_GETARG_NAME(6));
		check_household_column(relid, m.group_column);
	}
	if (!PG_ARGISNULL(7))
	{
		if (m.group_column == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("lead_column needs group_column"),
					 errhint("lead_column marks the lead of the household that group_column names.")));
		m.lead_column = NameStr(*PG_GETARG_NAME(7));
		check_column_category(relid, m.lead_column, "lead column", TYPCATEGORY_BOOLEAN, "boolean");
	}

	/* everything checked: now change things, keeping writers out meanwhile */
	relname = qualified_relname(relid);
	lock_for_attach(relid);
	if (barcode_column)
		index = create_barcode_index(relid, barcode_column);

	m.kind = MAP_PATRONS;
	m.relid = relid;
	m.id_column = id_column;
	m.barcode_column = barcode_column;
	set_value(&extra, "name_columns", NAMEARRAYOID, name_columns, name_columns == (Datum) 0);
	set_value(&extra, "clone_columns", NAMEARRAYOID, clone_columns, false);
	set_value(&extra, "barcode_index", TEXTOID,
			  OidIsValid(index) ? CStringGetTextDatum(qualified_relname(index)) : 0, !OidIsValid(index));
	set_name(&extra, "group_column", m.group_column);
	set_name(&extra, "lead_column", m.lead_column);
	record_attachment(&m, &extra);
	sync_triggers();

	/* an account for every patron: the ids read as the table's owner */
	ils_exec(relid,
			 psprintf("SELECT pg_catalog.array_agg(%s::pg_catalog.int8) FROM %s",
					  quote_identifier(id_column), relname),
			 0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	{
		bool		isnull;
		Datum		ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		become_extension_owner(&oc);
		if (!isnull)
			run_sql("INSERT INTO " PG_SCHEMA ".accounts (patron_id) "
					"SELECT pg_catalog.unnest($1::pg_catalog.int8[]) ON CONFLICT DO NOTHING",
					1, (Oid[]) {INT8ARRAYOID}, &ids, NULL, false, SPI_OK_INSERT);
	}
	import_households();
	restore_user(&oc);
	SPI_finish();
	PG_RETURN_VOID();
}

/* attach_cards(): attach the table that holds patrons' card barcodes. */
Datum
pg_attach_cards(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			index;
	MappingSpec m;
	RowValues	extra = {0};

	require_arg(fcinfo, 0, "card_table");
	require_arg(fcinfo, 1, "patron_column");
	require_arg(fcinfo, 2, "barcode_column");
	relid = check_table(PG_GETARG_OID(0));
	memset(&m, 0, sizeof(m));
	m.kind = MAP_CARDS;
	m.relid = relid;
	m.patron_column = NameStr(*PG_GETARG_NAME(1));
	m.barcode_column = NameStr(*PG_GETARG_NAME(2));

	SPI_connect();
	check_patrons_attached("its cards");
	check_not_attached(relid, MAP_CARDS);
	check_id_column(relid, m.patron_column, "patron column");
	check_barcode_column(relid, m.barcode_column);
	m.condition = condition_arg(fcinfo, 3, relid, "active_when");
	if (!PG_ARGISNULL(4))
	{
		const Attachment *patrons = mapping_patrons(false);

		m.primary_card_column = NameStr(*PG_GETARG_NAME(4));
		check_id_column(patrons->relid, m.primary_card_column, "primary card column");
		require_arg(fcinfo, 5, "card_id_column");
	}
	if (!PG_ARGISNULL(5) && has_attribute(relid, NameStr(*PG_GETARG_NAME(5))))
	{
		m.card_id_column = NameStr(*PG_GETARG_NAME(5));
		check_id_column(relid, m.card_id_column, "card id column");
	}
	else if (m.primary_card_column)
		check_id_column(relid, NameStr(*PG_GETARG_NAME(5)), "card id column");

	lock_for_attach(relid);
	index = create_barcode_index(relid, m.barcode_column);
	set_value(&extra, "barcode_index", TEXTOID, CStringGetTextDatum(qualified_relname(index)), false);
	set_name(&extra, "card_id_column", m.card_id_column);
	set_name(&extra, "primary_card_column", m.primary_card_column);
	record_attachment(&m, &extra);
	SPI_finish();
	PG_RETURN_VOID();
}

/* Common checks of a circulation or money table; returns its relid. */
static Oid
check_totals_table(FunctionCallInfo fcinfo, MappingKind kind)
{
	Oid			relid = check_table(PG_GETARG_OID(0));

	check_patrons_attached("its loans and money");
	check_not_attached(relid, kind);
	check_no_overlap(relid);
	return relid;
}

/* attach_circulations(): loans, open or closed, and which are lost. */
Datum
pg_attach_circulations(PG_FUNCTION_ARGS)
{
	Oid			relid;
	MappingSpec m;
	RowValues	extra = {0};

	require_arg(fcinfo, 0, "circulation_table");
	require_arg(fcinfo, 1, "patron_column");
	require_arg(fcinfo, 2, "due_column");
	require_arg(fcinfo, 3, "open_when");
	require_arg(fcinfo, 4, "lost_when");

	SPI_connect();
	relid = check_totals_table(fcinfo, MAP_CIRCULATIONS);
	memset(&m, 0, sizeof(m));
	m.kind = MAP_CIRCULATIONS;
	m.relid = relid;
	m.patron_column = NameStr(*PG_GETARG_NAME(1));
	m.due_column = NameStr(*PG_GETARG_NAME(2));
	check_id_column(relid, m.patron_column, "patron column");
	check_due_column(relid, m.due_column);
	m.condition = condition_arg(fcinfo, 3, relid, "open_when");
	m.lost_condition = condition_arg(fcinfo, 4, relid, "lost_when");
	m.claims_returned_condition = condition_arg(fcinfo, 5, relid, "claims_returned_when");
	m.long_overdue_condition = condition_arg(fcinfo, 6, relid, "long_overdue_when");
	m.renewal_condition = condition_arg(fcinfo, 7, relid, "renewal_when");
	m.out_includes = PG_ARGISNULL(8) ? all_loan_states() : out_includes_arg(fcinfo, 8);

	lock_for_attach(relid);
	warn_missing_index(relid, m.patron_column,
					   "Overdue counts and member lists look up loans by patron.");
	record_attachment(&m, &extra);
	sync_triggers();
	recount_all();
	SPI_finish();
	PG_RETURN_VOID();
}

/* The kinds of money table: charge, payment, signed. */
static void
check_money_kind(const char *kind)
{
	if (strcmp(kind, "charge") != 0 && strcmp(kind, "payment") != 0 && strcmp(kind, "signed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kind must be charge, payment or signed, not \"%s\"", kind),
				 errhint("Use signed for a table holding both, charges positive and credits negative.")));
}

/* attach_money(): charges, payments, or both with signed amounts. */
Datum
pg_attach_money(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			via = InvalidOid;
	char	   *via_id = NULL;
	char	   *via_patron = NULL;
	MappingSpec m;
	RowValues	extra = {0};

	require_arg(fcinfo, 0, "money_table");
	require_arg(fcinfo, 1, "kind");
	require_arg(fcinfo, 2, "amount_column");
	require_arg(fcinfo, 3, "patron_column");
	require_arg(fcinfo, 7, "counts_when");
	memset(&m, 0, sizeof(m));
	m.kind = MAP_MONEY;
	m.money_kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	m.amount_column = NameStr(*PG_GETARG_NAME(2));
	m.patron_column = NameStr(*PG_GETARG_NAME(3));
	check_money_kind(m.money_kind);

	SPI_connect();
	relid = check_totals_table(fcinfo, MAP_MONEY);
	m.relid = relid;
	check_amount_column(relid, m.amount_column);
	check_id_column(relid, m.patron_column, PG_ARGISNULL(4) ? "patron column" : "transaction column");
	if (!PG_ARGISNULL(4))
	{
		require_arg(fcinfo, 5, "via_id_column");
		require_arg(fcinfo, 6, "via_patron_column");
		via = check_table(PG_GETARG_OID(4));
		via_id = NameStr(*PG_GETARG_NAME(5));
		via_patron = NameStr(*PG_GETARG_NAME(6));
		check_id_column(via, via_id, "via_id_column");
		check_id_column(via, via_patron, "via_patron_column");
	}
	m.via = OidIsValid(via);
	m.condition = condition_arg(fcinfo, 7, relid, "counts_when");
	if (!PG_ARGISNULL(8))
	{
		m.outstanding_column = NameStr(*PG_GETARG_NAME(8));
		check_outstanding_column(relid, m.outstanding_column);
	}

	lock_for_attach(relid);
	warn_missing_index(relid, m.patron_column,
					   via ? "A patron merge looks up money by transaction." :
					   "Rebuilding a patron's totals looks up money by patron.");
	if (OidIsValid(via))
	{
		lock_for_attach(via);
		warn_missing_index(via, via_id, "Money is resolved to patrons through this column.");
	}
	set_value(&extra, "via_relid", OIDOID, ObjectIdGetDatum(via), !OidIsValid(via));
	set_name(&extra, "via_id_column", via_id);
	set_name(&extra, "via_patron_column", via_patron);
	record_attachment(&m, &extra);
	sync_triggers();
	recount_all();
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------------
 * alter_attachment
 * ------------------------------------------------------------------------- */

/* Refuse an argument of alter_attachment() that the table's kind has no use for. */
#define KIND(k) (1 << (k))

static void
check_applies(FunctionCallInfo fcinfo, int argno, const char *name, const Attachment *a, int kinds)
{
	if (!PG_ARGISNULL(argno) && (KIND(a->kind) & kinds) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s does not apply to \"%s\", which is attached as %s",
						name, get_rel_name(a->relid), mapping_kind_name(a->kind))));
}

/*
 * alter_attachment(table, ...): change how an attached table is read, under
 * the lock attaching takes: the arguments given replace the attachment's,
 * NULL ones keep it.  The mapping view is made anew (the conditions not
 * changed taken from the old one), the triggers, barcode index and
 * protection follow, and the totals are counted again; every backend drops
 * what it had compiled from the old mapping when this commits.
 */
Datum
pg_alter_attachment(PG_FUNCTION_ARGS)
{
	Oid			relid;
	const Attachment *a;
	MappingSpec m;
	RowValues	r = {0};
	Oid			old_view;
	Oid			new_view;
	Oid			via;
	bool		was_protected;
	List	   *released;

	enum
	{
		ARG_TABLE, ARG_PATRON, ARG_BARCODE, ARG_NAMES, ARG_CLONE, ARG_ACTIVE, ARG_DUE,
		ARG_OPEN, ARG_LOST, ARG_AMOUNT, ARG_COUNTS, ARG_VIA, ARG_VIA_ID, ARG_VIA_PATRON,
		ARG_DELETED, ARG_CLAIMS, ARG_LONG, ARG_RENEWAL, ARG_OUT_INCLUDES, ARG_OUTSTANDING
	};

	require_arg(fcinfo, ARG_TABLE, "attached_table");
	relid = PG_GETARG_OID(ARG_TABLE);
	SPI_connect();
	a = attachment_of(relid);
	if (a == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not attached", get_rel_name(relid)),
				 errhint("Attach it with the patron_group.attach_*() functions.")));
	if (a->dropped)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("attached table with OID %u, its mapping view or its transaction table no longer exists",
						relid),
				 errhint("Forget it with SELECT patron_group.detach(%u); and attach the table again.", relid)));
	check_applies(fcinfo, ARG_PATRON, "patron_column", a, KIND(MAP_CARDS) | KIND(MAP_CIRCULATIONS) | KIND(MAP_MONEY));
	check_applies(fcinfo, ARG_BARCODE, "barcode_column", a, KIND(MAP_PATRONS) | KIND(MAP_CARDS));
	check_applies(fcinfo, ARG_NAMES, "name_columns", a, KIND(MAP_PATRONS));
	check_applies(fcinfo, ARG_CLONE, "clone_columns", a, KIND(MAP_PATRONS));
	check_applies(fcinfo, ARG_ACTIVE, "active_when", a, KIND(MAP_CARDS));
	check_applies(fcinfo, ARG_DUE, "due_column", a, KIND(MAP_CIRCULATIONS));
	check_applies(fcinfo, ARG_OPEN, "open_when", a, KIND(MAP_CIRCULATIONS));
	check_applies(fcinfo, ARG_LOST, "lost_when", a, KIND(MAP_CIRCULATIONS));
	check_applies(fcinfo, ARG_AMOUNT, "amount_column", a, KIND(MAP_MONEY));
	check_applies(fcinfo, ARG_COUNTS, "counts_when", a, KIND(MAP_MONEY));
	check_applies(fcinfo, ARG_VIA, "via", a, KIND(MAP_MONEY));
	check_applies(fcinfo, ARG_VIA_ID, "via_id_column", a, KIND(MAP_MONEY));
	check_applies(fcinfo, ARG_VIA_PATRON, "via_patron_column", a, KIND(MAP_MONEY));
	check_applies(fcinfo, ARG_DELETED, "deleted_when", a, KIND(MAP_PATRONS));
	check_applies(fcinfo, ARG_CLAIMS, "claims_returned_when", a, KIND(MAP_CIRCULATIONS));
	check_applies(fcinfo, ARG_LONG, "long_overdue_when", a, KIND(MAP_CIRCULATIONS));
	check_applies(fcinfo, ARG_RENEWAL, "renewal_when", a, KIND(MAP_CIRCULATIONS));
	check_applies(fcinfo, ARG_OUT_INCLUDES, "out_includes", a, KIND(MAP_CIRCULATIONS));
	check_applies(fcinfo, ARG_OUTSTANDING, "outstanding_column", a, KIND(MAP_MONEY));
	if (a->kind == MAP_MONEY && !OidIsValid(a->via_relid) && PG_ARGISNULL(ARG_VIA) &&
		(!PG_ARGISNULL(ARG_VIA_ID) || !PG_ARGISNULL(ARG_VIA_PATRON)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" names patrons, not transactions: give via as well", get_rel_name(relid))));

	/* the new mapping: what is given, else what the attachment has */
	lock_for_attach(relid);
	memset(&m, 0, sizeof(m));
	m.kind = a->kind;
	m.relid = relid;
	m.id_column = a->id_name;
	m.patron_column = PG_ARGISNULL(ARG_PATRON) ? NULL : NameStr(*PG_GETARG_NAME(ARG_PATRON));
	m.barcode_column = PG_ARGISNULL(ARG_BARCODE) ? NULL : NameStr(*PG_GETARG_NAME(ARG_BARCODE));
	m.due_column = PG_ARGISNULL(ARG_DUE) ? a->due_column : NameStr(*PG_GETARG_NAME(ARG_DUE));
	m.money_kind = a->money_kind;
	m.amount_column = PG_ARGISNULL(ARG_AMOUNT) ? a->amount_column : NameStr(*PG_GETARG_NAME(ARG_AMOUNT));
	old_view = a->mapping;

	switch (a->kind)
	{
		case MAP_PATRONS:
			{
				if (m.barcode_column == NULL)
					m.barcode_column = a->barcode_name;
				else
					check_barcode_column(relid, m.barcode_column);
				m.name_columns = PG_ARGISNULL(ARG_NAMES) ? a->name_columns :
					check_name_columns(relid, PG_GETARG_DATUM(ARG_NAMES));
				if (!PG_ARGISNULL(ARG_NAMES))
					set_value(&r, "name_columns", NAMEARRAYOID, PG_GETARG_DATUM(ARG_NAMES), false);
				if (!PG_ARGISNULL(ARG_CLONE))
				{
					check_clone_columns(relid, m.id_column, PG_GETARG_DATUM(ARG_CLONE));
					set_value(&r, "clone_columns", NAMEARRAYOID, PG_GETARG_DATUM(ARG_CLONE), false);
				}
				m.deleted_condition = PG_ARGISNULL(ARG_DELETED) ? mapping_condition(a, "is_deleted") :
					condition_arg(fcinfo, ARG_DELETED, relid, "deleted_when");
				break;
			}
		case MAP_CARDS:
			if (m.patron_column == NULL)
				m.patron_column = a->patron_name;
			else
				check_id_column(relid, m.patron_column, "patron column");
			if (m.barcode_column == NULL)
				m.barcode_column = a->barcode_name;
			else
				check_barcode_column(relid, m.barcode_column);
			m.condition = PG_ARGISNULL(ARG_ACTIVE) ? mapping_condition(a, "is_active") :
				condition_arg(fcinfo, ARG_ACTIVE, relid, "active_when");
			m.card_id_column = a->card_id_name;
			m.primary_card_column = a->primary_card_name;
			break;
		case MAP_CIRCULATIONS:
			if (m.patron_column == NULL)
				m.patron_column = a->patron_name;
			else
				check_id_column(relid, m.patron_column, "patron column");
			check_due_column(relid, m.due_column);
			m.condition = PG_ARGISNULL(ARG_OPEN) ? mapping_condition(a, "is_open") :
				condition_arg(fcinfo, ARG_OPEN, relid, "open_when");
			m.lost_condition = PG_ARGISNULL(ARG_LOST) ? mapping_condition(a, "is_lost") :
				condition_arg(fcinfo, ARG_LOST, relid, "lost_when");
			m.claims_returned_condition = PG_ARGISNULL(ARG_CLAIMS) ? mapping_condition(a, "is_claims_returned") :
				condition_arg(fcinfo, ARG_CLAIMS, relid, "claims_returned_when");
			m.long_overdue_condition = PG_ARGISNULL(ARG_LONG) ? mapping_condition(a, "is_long_overdue") :
				condition_arg(fcinfo, ARG_LONG, relid, "long_overdue_when");
			m.renewal_condition = PG_ARGISNULL(ARG_RENEWAL) ? mapping_condition(a, "is_renewal") :
				condition_arg(fcinfo, ARG_RENEWAL, relid, "renewal_when");
			m.out_includes = PG_ARGISNULL(ARG_OUT_INCLUDES) ? a->out_includes :
				out_includes_arg(fcinfo, ARG_OUT_INCLUDES);
			break;
		case MAP_MONEY:
			if (m.patron_column == NULL)
				m.patron_column = a->patron_name;
			check_amount_column(relid, m.amount_column);
			m.condition = PG_ARGISNULL(ARG_COUNTS) ? mapping_condition(a, "counts") :
				condition_arg(fcinfo, ARG_COUNTS, relid, "counts_when");
			m.outstanding_column = PG_ARGISNULL(ARG_OUTSTANDING) ? a->outstanding_column :
				NameStr(*PG_GETARG_NAME(ARG_OUTSTANDING));
			if (m.outstanding_column)
				check_outstanding_column(relid, m.outstanding_column);
			break;
	}

	/* the transaction table of money */
	via = a->via_relid;
	if (a->kind == MAP_MONEY)
	{
		const char *via_id = PG_ARGISNULL(ARG_VIA_ID) ? a->via_id_name : NameStr(*PG_GETARG_NAME(ARG_VIA_ID));
		const char *via_patron = PG_ARGISNULL(ARG_VIA_PATRON) ? a->via_patron_name :
			NameStr(*PG_GETARG_NAME(ARG_VIA_PATRON));

		if (!PG_ARGISNULL(ARG_VIA))
			via = check_table(PG_GETARG_OID(ARG_VIA));
		check_id_column(relid, m.patron_column, OidIsValid(via) ? "transaction column" : "patron column");
		if (OidIsValid(via))
		{
			if (via_id == NULL)
				via_id = "id";
			if (via_patron == NULL)
				via_patron = "patron";
			check_id_column(via, via_id, "via_id_column");
			check_id_column(via, via_patron, "via_patron_column");
			set_value(&r, "via_relid", OIDOID, ObjectIdGetDatum(via), false);
			set_name(&r, "via_id_column", via_id);
			set_name(&r, "via_patron_column", via_patron);
		}
		m.via = OidIsValid(via);
	}

	/* everything checked: make the new view, then the objects that follow it */
	was_protected = a->protected;
	released = was_protected ? protected_by(relid) : NIL;
	new_view = create_mapping_view(&m);
	spec_row(&r, &m, new_view);
	if ((a->kind == MAP_PATRONS || a->kind == MAP_CARDS) && !PG_ARGISNULL(ARG_BARCODE))
	{
		Oid			index;

		drop_barcode_index(a);
		index = create_barcode_index(relid, m.barcode_column);
		set_value(&r, "barcode_index", TEXTOID, CStringGetTextDatum(qualified_relname(index)), false);
	}
	if (a->kind == MAP_MONEY && via != a->via_relid)
		lock_for_attach(via);
	write_attachment(relid, &r, false);
	/* the reporting views read the new one now: the old one can go, its name to the new */
	replace_mapping_view(old_view, new_view);
	sync_triggers();				/* the patron id, or the transaction table, may differ */
	if (was_protected)
		sync_protection_for(true, released);
	if (a->kind == MAP_CIRCULATIONS || a->kind == MAP_MONEY)
		recount_all();
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------------
 * detach
 * ------------------------------------------------------------------------- */

/* detach(): undo an attach. */
Datum
pg_detach(PG_FUNCTION_ARGS)
{
	Oid			relid;
	const Attachment *a;
	MappingKind kind;
	Oid			mapping;
	bool		dropped;
	bool		was;
	List	   *released;
	OwnerContext oc;
	Oid			types[1] = {OIDOID};
	Datum		values[1];

	require_arg(fcinfo, 0, "attached_table");
	relid = PG_GETARG_OID(0);
	values[0] = ObjectIdGetDatum(relid);
	refuse_if_replicated();
	SPI_connect();
	a = attachment_of(relid);
	if (a == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not attached", get_rel_name(relid))));
	kind = a->kind;
	mapping = a->mapping;

	/*
	 * A table the library system dropped took its triggers and index with
	 * it: only the attachment is left to forget, and its share of the totals.
	 */
	dropped = get_rel_name(relid) == NULL;
	if (kind == MAP_PATRONS && !dropped && list_length(get_mapping()->all) > 1)
	{
		ListCell   *lc;

		foreach(lc, get_mapping()->all)
			if (((Attachment *) lfirst(lc))->relid != relid)
				ereport(ERROR,
						(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
						 errmsg("cannot detach the patron table while other tables are attached"),
						 errdetail("Table \"%s\" is still attached.",
								   ((Attachment *) lfirst(lc))->relname ?
								   ((Attachment *) lfirst(lc))->relname : "(dropped)"),
						 errhint("Detach the other tables first.")));
	}

	/* a protected table is unprotected first, as unprotect() does */
	released = protected_by(relid);
	if (set_protected(relid, false, &was) && was)
		sync_protection_for(true, released);

	if (!dropped)
	{
		drop_barcode_index(a);
		if (kind == MAP_CIRCULATIONS || kind == MAP_MONEY)
			lock_for_attach(relid);
	}

	become_extension_owner(&oc);
	history_context_set(NULL, dropped ? "attached table dropped" : "patron table detached");
	run_sql("DELETE FROM " PG_SCHEMA ".attachments WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
			1, types, values, NULL, false, SPI_OK_DELETE);
	mapping_changed();
	/* its triggers, and its transaction table's with the last money naming it */
	sync_triggers();
	drop_mapping_view(mapping);
	if (kind == MAP_PATRONS)
	{
		spi_exec("DELETE FROM " PG_SCHEMA ".accounts");
		spi_exec("DELETE FROM " PG_SCHEMA ".groups");
	}
	else if (kind == MAP_CIRCULATIONS || kind == MAP_MONEY)
		(void) rebuild_totals(NULL);	/* take the table's share out of the totals */
	history_context_clear();
	restore_user(&oc);
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------------
 * Attachments of versions before 1.2, which kept their conditions as text
 * ------------------------------------------------------------------------- */

/*
 * The mapping view of a table attached by a version before 1.2, made from
 * its attachments row (the caller is connected to SPI).  The text is parsed
 * once, with search_path pinned to pg_catalog, pg_temp, as those versions
 * deparsed it.  InvalidOid when the table no longer exists.
 */
static Oid
mapping_from_old_row(Oid relid, const char *condition, const char *lost_condition)
{
	MappingSpec m;
	SPITupleTable *tt;
	HeapTuple	row;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;
	Datum		names;

	run_sql("SELECT kind, id_column, patron_column, barcode_column, name_columns, "
			"due_column, money_kind, amount_column, via_relid "
			"FROM " PG_SCHEMA ".attachments WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
			1, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "table %u is not attached", relid);
	if (get_rel_name(relid) == NULL)
		return InvalidOid;		/* dropped by the library system; health() says so */
	tt = SPI_tuptable;
	row = tt->vals[0];
	memset(&m, 0, sizeof(m));
	m.relid = relid;
	m.kind = mapping_kind_of(SPI_getvalue(row, tt->tupdesc, 1));
	m.id_column = SPI_getvalue(row, tt->tupdesc, 2);
	m.patron_column = SPI_getvalue(row, tt->tupdesc, 3);
	m.barcode_column = SPI_getvalue(row, tt->tupdesc, 4);
	names = SPI_getbinval(row, tt->tupdesc, 5, &isnull);
	if (!isnull)
		m.name_columns = check_name_columns(relid, names);
	m.due_column = SPI_getvalue(row, tt->tupdesc, 6);
	m.money_kind = SPI_getvalue(row, tt->tupdesc, 7);
	m.amount_column = SPI_getvalue(row, tt->tupdesc, 8);
	m.via = SPI_getvalue(row, tt->tupdesc, 9) != NULL;
	m.condition = condition;
	m.lost_condition = lost_condition;
	m.out_includes = all_loan_states();	/* as those versions counted */
	if (m.kind == MAP_CARDS && has_attribute(relid, "id"))
		m.card_id_column = "id";	/* as attach_cards() records a card's id by default */
	return create_mapping_view(&m);
}

/*
 * make_mapping_view(attached_table, condition, lost_condition): used by the
 * update from 1.1 only (which drops it afterwards).
 */
Datum
pg_make_mapping_view(PG_FUNCTION_ARGS)
{
	Oid			view;

	if (!creating_extension)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("make_mapping_view() is used by ALTER EXTENSION patron_group UPDATE only")));
	require_arg(fcinfo, 0, "attached_table");
	SPI_connect();
	view = mapping_from_old_row(PG_GETARG_OID(0),
								PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
								PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
	SPI_finish();
	if (!OidIsValid(view))
		PG_RETURN_NULL();
	PG_RETURN_OID(view);
}

/*
 * attachments_restore: AFTER INSERT on patron_group.attachments, for each
 * row.  A row without a mapping view is one of a dump taken under a version
 * before 1.2, being restored: its view is made from its conditions' text,
 * as the update to 1.2 does, and the text is cleared.  The extension's own
 * rows always come with their view.
 */
Datum
pg_attachments_restore(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "attachments_restore", false);
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	HeapTuple	tup = td->tg_trigtuple;
	bool		isnull;
	Oid			relid;
	Oid			view;
	OwnerContext oc;
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2];

	if (!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("attachments_restore must be an AFTER INSERT row trigger on patron_group.attachments")));
	(void) heap_getattr(tup, SPI_fnumber(desc, "mapping"), desc, &isnull);
	if (!isnull)
		return PointerGetDatum(NULL);
	relid = DatumGetObjectId(heap_getattr(tup, SPI_fnumber(desc, "relid"), desc, &isnull));

	SPI_connect();
	view = mapping_from_old_row(relid, SPI_getvalue(tup, desc, SPI_fnumber(desc, "condition")),
								SPI_getvalue(tup, desc, SPI_fnumber(desc, "lost_condition")));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = ObjectIdGetDatum(view);
	become_extension_owner(&oc);
	run_sql("UPDATE " PG_SCHEMA ".attachments a SET mapping = $2::pg_catalog.regclass, "
			"condition = NULL, lost_condition = NULL, "
			"card_id_column = CASE WHEN a.kind OPERATOR(pg_catalog.=) 'cards' AND EXISTS (SELECT FROM "
			"pg_catalog.pg_attribute t WHERE t.attrelid OPERATOR(pg_catalog.=) a.relid::pg_catalog.oid "
			"AND t.attname OPERATOR(pg_catalog.=) 'id' AND NOT t.attisdropped) THEN 'id' END "
			"WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
			2, types, values, OidIsValid(view) ? "  " : " n", false, SPI_OK_UPDATE);
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}
