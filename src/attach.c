/*
 * attach.c
 *		Attaching the library system's own tables: validate the mapping,
 *		create the triggers and indexes it needs, record it, and undo it all
 *		with detach().  Every check runs before anything is changed, so a
 *		failed attach leaves nothing behind.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
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
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_attach_patrons);
PG_FUNCTION_INFO_V1(pg_attach_cards);
PG_FUNCTION_INFO_V1(pg_detach);
PG_FUNCTION_INFO_V1(pg_attach_circulations);
PG_FUNCTION_INFO_V1(pg_attach_money);

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

/* Text of column 'col' of the current SPI row, or NULL. */
static char *
spi_text(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

/* A name[] column of the current SPI row as a List of char *. */
static List *
spi_name_list(int col, bool quote)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
	Datum	   *elems;
	int			n;
	List	   *result = NIL;

	if (isnull)
		return NIL;
	deconstruct_array(DatumGetArrayTypeP(d), NAMEOID, NAMEDATALEN, false,
					  TYPALIGN_CHAR, &elems, NULL, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *s = pstrdup(NameStr(*DatumGetName(elems[i])));

		result = lappend(result, quote ? (char *) quote_identifier(s) : s);
	}
	return result;
}

/* The qualified name of a mapping view (an oid column of the current SPI row). */
static char *
spi_mapping(int col, Oid relid)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	if (isnull || get_rel_name(DatumGetObjectId(d)) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the mapping view of \"%s\" is missing", get_rel_name(relid)),
				 errhint("Detach the table with patron_group.detach() and attach it again.")));
	return qualified_relname(DatumGetObjectId(d));
}

/*
 * Read the patron (and card) mapping from patron_group.attachments.  The
 * caller has connected to SPI.  Returns NULL when no patron table is attached
 * and missing_ok; otherwise that is an error.
 */
PatronMap *
load_patron_map(bool missing_ok)
{
	PatronMap  *map;
	char	   *s;

	(void) extension_owner();	/* refuses a schema this library cannot read */
	if (SPI_execute("SELECT relid::pg_catalog.oid, id_column, barcode_column, "
					"name_columns, clone_columns, mapping::pg_catalog.oid FROM " PG_SCHEMA ".attachments "
					"WHERE kind OPERATOR(pg_catalog.=) 'patrons'", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no patron table is attached"),
				 errhint("Attach the library system's patron table with patron_group.attach_patrons().")));
	}
	map = palloc0(sizeof(PatronMap));
	map->relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &(bool) {false}));
	map->relname = qualified_relname(map->relid);
	map->id_column = (char *) quote_identifier(spi_text(2));
	s = spi_text(3);
	map->barcode_column = s ? (char *) quote_identifier(s) : NULL;
	map->name_columns = spi_name_list(4, true);
	map->clone_columns = spi_name_list(5, false);
	map->mapping = spi_mapping(6, map->relid);

	if (SPI_execute("SELECT relid::pg_catalog.oid, patron_column, barcode_column, mapping::pg_catalog.oid "
					"FROM " PG_SCHEMA ".attachments "
					"WHERE kind OPERATOR(pg_catalog.=) 'cards'", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	if (SPI_processed == 1)
	{
		map->card_relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1, &(bool) {false}));
		map->card_relname = qualified_relname(map->card_relid);
		map->card_patron_column = (char *) quote_identifier(spi_text(2));
		map->card_barcode_column = (char *) quote_identifier(spi_text(3));
		map->card_mapping = spi_mapping(4, map->card_relid);
	}
	return map;
}

/*
 * SQL for a patron's barcode, over alias, a row of the patron mapping view:
 * the patron's own, or an active card's.
 */
char *
barcode_sql(PatronMap *map, const char *alias)
{
	if (map->barcode_column)
		return psprintf("%s.barcode::pg_catalog.text", alias);
	if (map->card_mapping)
		return psprintf("(SELECT pg_catalog.max(c.barcode::pg_catalog.text) FROM %s c "
						"WHERE c.patron_id OPERATOR(pg_catalog.=) %s.patron_id AND c.is_active)",
						map->card_mapping, alias);
	return "NULL::pg_catalog.text";
}

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

/* The current attachment kind of a table, or NULL. */
static char *
attached_kind(Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (SPI_execute_with_args("SELECT kind FROM " PG_SCHEMA ".attachments "
							  "WHERE relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	return SPI_processed ? spi_text(1) : NULL;
}

/* The table attached as 'kind' (patrons or cards), or InvalidOid. */
static Oid
attached_table(const char *kind)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(kind)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT relid::pg_catalog.oid FROM " PG_SCHEMA ".attachments "
							  "WHERE kind OPERATOR(pg_catalog.=) $1",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	if (SPI_processed == 0)
		return InvalidOid;
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Refuse to attach a table twice, or a second table of a kind that allows one. */
static void
check_not_attached(Oid relid, const char *kind)
{
	char	   *current = attached_kind(relid);
	Oid			other;

	if (current)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already attached as %s", get_rel_name(relid), current),
				 errhint("Detach it first with patron_group.detach('%s').", qualified_relname(relid))));
	if (strcmp(kind, "patrons") != 0 && strcmp(kind, "cards") != 0)
		return;					/* several circulation and money tables are fine */
	other = attached_table(kind);
	if (OidIsValid(other))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("a %s table is already attached: \"%s\"", kind, get_rel_name(other)),
				 errhint("Detach it first with patron_group.detach('%s').", qualified_relname(other))));
}

/* Run a utility statement through SPI. */
static void
spi_exec(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute failed (%d): %s", rc, sql);
}

/*
 * Validate a boolean condition over a row of relid and return it in
 * canonical (deparsed) form.  It must parse as one expression over that
 * table alone, be boolean, and use no subqueries, aggregates, set-returning
 * or volatile functions.
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
	return deparse_expression(expr,
							  deparse_context_for(get_rel_name(relid), relid),
							  false, false);
}

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

/*
 * Everything an attachment row records, besides its mapping; NULL pointers
 * are stored as NULL.
 */
typedef struct AttachmentRow
{
	MappingSpec spec;			/* kind, table, columns and conditions */
	Datum		name_columns;	/* name[] or 0 */
	Datum		clone_columns;	/* name[] or 0 */
	Oid			via_relid;
	const char *via_id_column;
	const char *via_patron_column;
	Oid			barcode_index;
} AttachmentRow;

/*
 * Make the mapping view of an attachment and record the attachment (as the
 * extension owner).
 */
static void
record_attachment(AttachmentRow *a)
{
	Oid			argtypes[15] = {OIDOID, TEXTOID, NAMEOID, NAMEOID, NAMEOID,
		NAMEARRAYOID, NAMEARRAYOID, NAMEOID, TEXTOID, NAMEOID,
	OIDOID, NAMEOID, NAMEOID, TEXTOID, OIDOID};
	Datum		values[15];
	char		nulls[16] = "               ";
	MappingSpec *m = &a->spec;
	OwnerContext oc;

#define NAME_OR_NULL(i, s) \
	do { if (s) values[i] = DirectFunctionCall1(namein, CStringGetDatum(s)); \
		 else nulls[i] = 'n'; } while (0)
#define TEXT_OR_NULL(i, s) \
	do { if (s) values[i] = CStringGetTextDatum(s); else nulls[i] = 'n'; } while (0)
#define DATUM_OR_NULL(i, d) \
	do { values[i] = (d); if ((d) == (Datum) 0) nulls[i] = 'n'; } while (0)

	m->via = OidIsValid(a->via_relid);
	values[0] = ObjectIdGetDatum(m->relid);
	values[1] = CStringGetTextDatum(mapping_kind_name(m->kind));
	NAME_OR_NULL(2, m->id_column);
	NAME_OR_NULL(3, m->patron_column);
	NAME_OR_NULL(4, m->barcode_column);
	DATUM_OR_NULL(5, a->name_columns);
	DATUM_OR_NULL(6, a->clone_columns);
	NAME_OR_NULL(7, m->due_column);
	TEXT_OR_NULL(8, m->money_kind);
	NAME_OR_NULL(9, m->amount_column);
	DATUM_OR_NULL(10, ObjectIdGetDatum(a->via_relid));
	NAME_OR_NULL(11, a->via_id_column);
	NAME_OR_NULL(12, a->via_patron_column);
	/* by name: an index is restored after the table's data, a regclass could not be */
	TEXT_OR_NULL(13, OidIsValid(a->barcode_index) ? qualified_relname(a->barcode_index) : NULL);
	values[14] = ObjectIdGetDatum(create_mapping_view(m));

	become_extension_owner(&oc);
	if (SPI_execute_with_args("INSERT INTO " PG_SCHEMA ".attachments (relid, kind, id_column, "
							  "patron_column, barcode_column, name_columns, clone_columns, "
							  "due_column, money_kind, amount_column, "
							  "via_relid, via_id_column, via_patron_column, barcode_index, mapping) "
							  "VALUES ($1::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
							  "$11::pg_catalog.regclass, $12, $13, $14, $15::pg_catalog.regclass)",
							  15, argtypes, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the attachment");
	restore_user(&oc);
}

/* attach_patrons(): attach the library system's patron table. */
Datum
pg_attach_patrons(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *id_column;
	char	   *barcode_column = NULL;
	char	   *relname;
	Datum		name_columns = (Datum) 0;
	List	   *name_list = NIL;
	Datum		clone_columns;
	Oid			index = InvalidOid;
	OwnerContext oc;
	Datum	   *elems;
	int			n;
	const char *qid;

	require_arg(fcinfo, 0, "patron_table");
	require_arg(fcinfo, 1, "id_column");
	relid = check_table(PG_GETARG_OID(0));
	id_column = NameStr(*PG_GETARG_NAME(1));
	if (!PG_ARGISNULL(2))
		barcode_column = NameStr(*PG_GETARG_NAME(2));
	clone_columns = PG_ARGISNULL(4) ?
		PointerGetDatum(construct_empty_array(NAMEOID)) : PG_GETARG_DATUM(4);

	SPI_connect();
	check_not_attached(relid, "patrons");
	check_id_column(relid, id_column, "id column");
	if (barcode_column)
		check_barcode_column(relid, barcode_column);
	if (!PG_ARGISNULL(3))
	{
		name_columns = PG_GETARG_DATUM(3);
		deconstruct_array(DatumGetArrayTypeP(name_columns), NAMEOID, NAMEDATALEN,
						  false, TYPALIGN_CHAR, &elems, NULL, &n);
		for (int i = 0; i < n; i++)
		{
			check_column(relid, NameStr(*DatumGetName(elems[i])), "name column");
			name_list = lappend(name_list, pstrdup(NameStr(*DatumGetName(elems[i]))));
		}
	}
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

	/* everything checked: now change things, keeping writers out meanwhile */
	relname = qualified_relname(relid);
	qid = quote_identifier(id_column);
	spi_exec(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", relname));
	if (barcode_column)
		index = create_barcode_index(relid, barcode_column);
	spi_exec(psprintf("CREATE TRIGGER patron_group_insert AFTER INSERT ON %s "
					  "REFERENCING NEW TABLE AS patron_group_new FOR EACH STATEMENT "
					  "EXECUTE FUNCTION " PG_SCHEMA ".patrons_trigger(%s)",
					  relname, quote_literal_cstr(id_column)));
	spi_exec(psprintf("CREATE TRIGGER patron_group_delete AFTER DELETE ON %s "
					  "REFERENCING OLD TABLE AS patron_group_old FOR EACH STATEMENT "
					  "EXECUTE FUNCTION " PG_SCHEMA ".patrons_trigger(%s)",
					  relname, quote_literal_cstr(id_column)));
	spi_exec(psprintf("CREATE TRIGGER patron_group_update AFTER UPDATE OF %s ON %s "
					  "FOR EACH ROW WHEN (OLD.%s IS DISTINCT FROM NEW.%s) "
					  "EXECUTE FUNCTION " PG_SCHEMA ".patrons_trigger(%s)",
					  qid, relname, qid, qid, quote_literal_cstr(id_column)));
	spi_exec(psprintf("CREATE TRIGGER patron_group_truncate AFTER TRUNCATE ON %s "
					  "FOR EACH STATEMENT EXECUTE FUNCTION " PG_SCHEMA ".patrons_trigger(%s)",
					  relname, quote_literal_cstr(id_column)));

	{
		AttachmentRow a = {.spec = {.kind = MAP_PATRONS,.relid = relid,.id_column = id_column,
			.barcode_column = barcode_column,.name_columns = name_list},
			.name_columns = name_columns,.clone_columns = clone_columns,
		.barcode_index = index};

		record_attachment(&a);
	}

	become_extension_owner(&oc);
	spi_exec(psprintf("INSERT INTO " PG_SCHEMA ".accounts (patron_id) "
					  "SELECT %s FROM %s ON CONFLICT DO NOTHING", qid, relname));
	restore_user(&oc);
	SPI_finish();
	PG_RETURN_VOID();
}

/* attach_cards(): attach the table that holds patrons' card barcodes. */
Datum
pg_attach_cards(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *patron_column;
	char	   *barcode_column;
	char	   *condition = NULL;
	Oid			index;

	require_arg(fcinfo, 0, "card_table");
	require_arg(fcinfo, 1, "patron_column");
	require_arg(fcinfo, 2, "barcode_column");
	relid = check_table(PG_GETARG_OID(0));
	patron_column = NameStr(*PG_GETARG_NAME(1));
	barcode_column = NameStr(*PG_GETARG_NAME(2));

	SPI_connect();
	if (!OidIsValid(attached_table("patrons")))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no patron table is attached"),
				 errhint("Attach the patron table with patron_group.attach_patrons() before its cards.")));
	check_not_attached(relid, "cards");
	check_id_column(relid, patron_column, "patron column");
	check_barcode_column(relid, barcode_column);
	if (!PG_ARGISNULL(3))
		condition = validate_condition(relid, text_to_cstring(PG_GETARG_TEXT_PP(3)),
									   "active_when");

	index = create_barcode_index(relid, barcode_column);
	{
		AttachmentRow a = {.spec = {.kind = MAP_CARDS,.relid = relid,.patron_column = patron_column,
			.barcode_column = barcode_column,.condition = condition},
		.barcode_index = index};

		record_attachment(&a);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

static const char *const via_triggers[] = {"patron_group_via_delete",
"patron_group_via_update", "patron_group_via_truncate"};

/* Drop the triggers of a transaction table that money was resolved through. */
static void
drop_via_triggers(Oid via)
{
	for (size_t i = 0; i < lengthof(via_triggers); i++)
		if (OidIsValid(get_trigger_oid(via, via_triggers[i], true)))
			spi_exec(psprintf("DROP TRIGGER %s ON %s", via_triggers[i], qualified_relname(via)));
}

/* detach(): undo an attach. */
Datum
pg_detach(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	char	   *kind;
	bool		dropped;
	bool		isnull;
	Datum		index;
	OwnerContext oc;

	require_arg(fcinfo, 0, "attached_table");
	relid = PG_GETARG_OID(0);
	values[0] = ObjectIdGetDatum(relid);
	SPI_connect();
	kind = attached_kind(relid);
	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not attached", get_rel_name(relid))));

	/*
	 * A table the library system dropped took its triggers and index with
	 * it: only the attachment is left to forget, and its share of the totals.
	 */
	dropped = get_rel_name(relid) == NULL;

	/* a protected table is unprotected first, as unprotect() does */
	{
		bool		was;
		List	   *released = protected_by(relid);

		if (set_protected(relid, false, &was) && was)
			sync_protection_for(true, released);
	}
	if (strcmp(kind, "patrons") == 0 && !dropped)
	{
		if (SPI_execute("SELECT relid FROM " PG_SCHEMA ".attachments "
						"WHERE kind OPERATOR(pg_catalog.<>) 'patrons'", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read patron_group.attachments");
		if (SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot detach the patron table while other tables are attached"),
					 errdetail("Table \"%s\" is still attached.", spi_text(1)),
					 errhint("Detach the other tables first.")));
	}

	if (!dropped)
	{
		char	   *relname = qualified_relname(relid);

		/* the index is found among the table's by its name, wherever its schema went */
		if (SPI_execute_with_args("SELECT (SELECT i.indexrelid FROM pg_catalog.pg_index i "
								  "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid "
								  "WHERE i.indrelid OPERATOR(pg_catalog.=) a.relid::pg_catalog.oid "
								  "AND c.relname OPERATOR(pg_catalog.=) (SELECT p[pg_catalog.array_upper(p, 1)] "
								  "FROM pg_catalog.parse_ident(a.barcode_index::pg_catalog.text) p)) "
								  "FROM " PG_SCHEMA ".attachments a "
								  "WHERE a.relid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
								  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read patron_group.attachments");
		index = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull && get_rel_name(DatumGetObjectId(index)) != NULL)
			spi_exec(psprintf("DROP INDEX %s", qualified_relname(DatumGetObjectId(index))));

		if (strcmp(kind, "patrons") == 0)
		{
			static const char *const triggers[] = {"patron_group_insert", "patron_group_delete",
			"patron_group_update", "patron_group_truncate"};

			for (size_t i = 0; i < lengthof(triggers); i++)
				spi_exec(psprintf("DROP TRIGGER IF EXISTS %s ON %s", triggers[i], relname));
		}
		if (strcmp(kind, "circulations") == 0 || strcmp(kind, "money") == 0)
		{
			static const char *const triggers[] = {"patron_group_totals_insert",
				"patron_group_totals_update", "patron_group_totals_delete",
			"patron_group_totals_truncate"};

			spi_exec(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", relname));
			for (size_t i = 0; i < lengthof(triggers); i++)
				spi_exec(psprintf("DROP TRIGGER IF EXISTS %s ON %s", triggers[i], relname));
			/* enforce_limits' trigger, when enforcement is on (quietly otherwise) */
			if (OidIsValid(get_trigger_oid(relid, "patron_group_totals_insert_limits", true)))
				spi_exec(psprintf("DROP TRIGGER patron_group_totals_insert_limits ON %s", relname));
		}
	}

	/* the transaction table's triggers go with the last money table using it */
	if (SPI_execute_with_args("SELECT a.via_relid::pg_catalog.oid FROM " PG_SCHEMA ".attachments a "
							  "WHERE a.relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1 AND a.via_relid IS NOT NULL "
							  "AND EXISTS (SELECT FROM pg_catalog.pg_class c "
							  "WHERE c.oid OPERATOR(pg_catalog.=) a.via_relid::pg_catalog.oid) "
							  "AND NOT EXISTS (SELECT FROM " PG_SCHEMA ".attachments b "
							  "WHERE b.via_relid OPERATOR(pg_catalog.=) a.via_relid "
							  "AND b.relid OPERATOR(pg_catalog.<>) a.relid)",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	if (SPI_processed == 1)
		drop_via_triggers(DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1, &isnull)));

	become_extension_owner(&oc);
	history_context_set(NULL, dropped ? "attached table dropped" : "patron table detached");
	if (SPI_execute_with_args("DELETE FROM " PG_SCHEMA ".attachments "
							  "WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1 "
							  "RETURNING mapping::pg_catalog.oid",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete the attachment");
	if (SPI_processed == 1)
	{
		Datum		mapping = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			drop_mapping_view(DatumGetObjectId(mapping));
	}
	if (strcmp(kind, "patrons") == 0)
	{
		spi_exec("DELETE FROM " PG_SCHEMA ".accounts");
		spi_exec("DELETE FROM " PG_SCHEMA ".groups");
	}
	else if (strcmp(kind, "circulations") == 0 || strcmp(kind, "money") == 0)
		(void) rebuild_totals(NULL);	/* take the table's share out of the totals */
	history_context_clear();
	restore_user(&oc);
	SPI_finish();
	PG_RETURN_VOID();
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
 * Refuse a table whose rows another attached circulation or money table
 * already sees through inheritance or partitioning: its rows would count
 * twice.
 */
static void
check_no_overlap(Oid relid)
{
	List	   *mine = find_all_inheritors(relid, NoLock, NULL);

	if (SPI_execute("SELECT relid::pg_catalog.oid FROM " PG_SCHEMA ".attachments "
					"WHERE kind OPERATOR(pg_catalog.=) ANY ('{circulations,money}')", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read patron_group.attachments");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Oid			other = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r],
														   SPI_tuptable->tupdesc, 1, &isnull));

		if (list_member_oid(mine, other) ||
			list_member_oid(find_all_inheritors(other, NoLock, NULL), relid))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" shares rows with attached table \"%s\" through inheritance or partitioning",
							get_rel_name(relid), get_rel_name(other)),
					 errhint("Attach either the parent or its children, not both.")));
	}
}

/* Warn when no index leads with a column that lookups filter on. */
static void
warn_missing_index(Oid relid, const char *column, const char *why)
{
	Oid			types[2] = {OIDOID, INT2OID};
	Datum		values[2] = {ObjectIdGetDatum(relid), Int16GetDatum(get_attnum(relid, column))};

	if (SPI_execute_with_args("SELECT FROM pg_catalog.pg_index WHERE indrelid OPERATOR(pg_catalog.=) $1 "
							  "AND indkey[0] OPERATOR(pg_catalog.=) $2",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_index");
	if (SPI_processed == 0)
		ereport(WARNING,
				(errmsg("no index on column \"%s\" of relation \"%s\"", column, get_rel_name(relid)),
				 errdetail("%s", why),
				 errhint("CREATE INDEX ON %s (%s);", qualified_relname(relid), quote_identifier(column))));
}

/* Create the totals triggers of a circulation or money table. */
static void
create_totals_triggers(const char *relname)
{
	spi_exec(psprintf("CREATE TRIGGER patron_group_totals_insert AFTER INSERT ON %s "
					  "REFERENCING NEW TABLE AS patron_group_new FOR EACH STATEMENT "
					  "EXECUTE FUNCTION " PG_SCHEMA ".totals_trigger()", relname));
	spi_exec(psprintf("CREATE TRIGGER patron_group_totals_update AFTER UPDATE ON %s "
					  "REFERENCING OLD TABLE AS patron_group_old NEW TABLE AS patron_group_new "
					  "FOR EACH STATEMENT EXECUTE FUNCTION " PG_SCHEMA ".totals_trigger()", relname));
	spi_exec(psprintf("CREATE TRIGGER patron_group_totals_delete AFTER DELETE ON %s "
					  "REFERENCING OLD TABLE AS patron_group_old FOR EACH STATEMENT "
					  "EXECUTE FUNCTION " PG_SCHEMA ".totals_trigger()", relname));
	spi_exec(psprintf("CREATE TRIGGER patron_group_totals_truncate AFTER TRUNCATE ON %s "
					  "FOR EACH STATEMENT EXECUTE FUNCTION " PG_SCHEMA ".totals_trigger()", relname));
}

/* Record the attachment and compute the initial totals, as the extension owner. */
static void
finish_totals_attach(AttachmentRow *a)
{
	OwnerContext oc;

	record_attachment(a);
	become_extension_owner(&oc);
	(void) rebuild_totals(NULL);
	restore_user(&oc);
}

/* Common checks of a circulation or money table; returns its relid. */
static Oid
check_totals_table(FunctionCallInfo fcinfo, const char *kind)
{
	Oid			relid = check_table(PG_GETARG_OID(0));

	if (!OidIsValid(attached_table("patrons")))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no patron table is attached"),
				 errhint("Attach the patron table with patron_group.attach_patrons() first.")));
	check_not_attached(relid, kind);
	check_no_overlap(relid);
	return relid;
}

/* attach_circulations(): loans, open or closed, and which are lost. */
Datum
pg_attach_circulations(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *patron_column;
	char	   *due_column;
	char	   *open_when;
	char	   *lost_when;
	char	   *relname;

	require_arg(fcinfo, 0, "circulation_table");
	require_arg(fcinfo, 1, "patron_column");
	require_arg(fcinfo, 2, "due_column");
	require_arg(fcinfo, 3, "open_when");
	require_arg(fcinfo, 4, "lost_when");
	patron_column = NameStr(*PG_GETARG_NAME(1));
	due_column = NameStr(*PG_GETARG_NAME(2));

	SPI_connect();
	relid = check_totals_table(fcinfo, "circulations");
	check_id_column(relid, patron_column, "patron column");
	check_due_column(relid, due_column);
	open_when = validate_condition(relid, text_to_cstring(PG_GETARG_TEXT_PP(3)), "open_when");
	lost_when = validate_condition(relid, text_to_cstring(PG_GETARG_TEXT_PP(4)), "lost_when");

	relname = qualified_relname(relid);
	spi_exec(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", relname));
	warn_missing_index(relid, patron_column,
					   "Overdue counts and member lists look up loans by patron.");
	create_totals_triggers(relname);
	{
		AttachmentRow a = {.spec = {.kind = MAP_CIRCULATIONS,.relid = relid,
			.patron_column = patron_column,.due_column = due_column,
		.condition = open_when,.lost_condition = lost_when}};

		finish_totals_attach(&a);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/* attach_money(): charges, payments, or both with signed amounts. */
Datum
pg_attach_money(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *kind;
	char	   *amount_column;
	char	   *patron_column;
	Oid			via = InvalidOid;
	char	   *via_id = NULL;
	char	   *via_patron = NULL;
	char	   *counts_when;
	char	   *relname;

	require_arg(fcinfo, 0, "money_table");
	require_arg(fcinfo, 1, "kind");
	require_arg(fcinfo, 2, "amount_column");
	require_arg(fcinfo, 3, "patron_column");
	require_arg(fcinfo, 7, "counts_when");
	kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	amount_column = NameStr(*PG_GETARG_NAME(2));
	patron_column = NameStr(*PG_GETARG_NAME(3));
	if (strcmp(kind, "charge") != 0 && strcmp(kind, "payment") != 0 && strcmp(kind, "signed") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kind must be charge, payment or signed, not \"%s\"", kind),
				 errhint("Use signed for a table holding both, charges positive and credits negative.")));

	SPI_connect();
	relid = check_totals_table(fcinfo, "money");
	check_amount_column(relid, amount_column);
	check_id_column(relid, patron_column, via == InvalidOid && PG_ARGISNULL(4) ?
					"patron column" : "transaction column");
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
	counts_when = validate_condition(relid, text_to_cstring(PG_GETARG_TEXT_PP(7)), "counts_when");

	relname = qualified_relname(relid);
	spi_exec(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", relname));
	warn_missing_index(relid, patron_column,
					   via ? "A patron merge looks up money by transaction." :
					   "Rebuilding a patron's totals looks up money by patron.");
	create_totals_triggers(relname);
	if (OidIsValid(via))
	{
		char	   *vname = qualified_relname(via);

		spi_exec(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", vname));
		warn_missing_index(via, via_id, "Money is resolved to patrons through this column.");
		drop_via_triggers(via);
		CommandCounterIncrement();
		spi_exec(psprintf("CREATE TRIGGER %s BEFORE DELETE ON %s FOR EACH ROW "
						  "EXECUTE FUNCTION " PG_SCHEMA ".via_trigger()", via_triggers[0], vname));
		spi_exec(psprintf("CREATE TRIGGER %s AFTER UPDATE ON %s "
						  "REFERENCING OLD TABLE AS patron_group_old NEW TABLE AS patron_group_new "
						  "FOR EACH STATEMENT EXECUTE FUNCTION " PG_SCHEMA ".via_trigger()",
						  via_triggers[1], vname));
		spi_exec(psprintf("CREATE TRIGGER %s AFTER TRUNCATE ON %s FOR EACH STATEMENT "
						  "EXECUTE FUNCTION " PG_SCHEMA ".via_trigger()", via_triggers[2], vname));
	}
	{
		AttachmentRow a = {.spec = {.kind = MAP_MONEY,.relid = relid,.patron_column = patron_column,
			.condition = counts_when,.money_kind = kind,.amount_column = amount_column},
		.via_relid = via,.via_id_column = via_id,.via_patron_column = via_patron};

		finish_totals_attach(&a);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * The mapping view of a table attached by a version before 1.2, which kept
 * its conditions as text in patron_group.attachments: made from that row
 * (the caller is connected to SPI).  The text is parsed once, with
 * search_path pinned to pg_catalog, pg_temp, as those versions deparsed it.
 * InvalidOid when the table no longer exists.
 */
static Oid
mapping_from_old_row(Oid relid, const char *condition, const char *lost_condition)
{
	MappingSpec m;
	SPITupleTable *tt;
	HeapTuple	row;
	char	   *kind;

	if (SPI_execute_with_args("SELECT kind, id_column, patron_column, barcode_column, name_columns, "
							  "due_column, money_kind, amount_column, via_relid "
							  "FROM " PG_SCHEMA ".attachments WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(relid)},
							  NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "table %u is not attached", relid);
	if (get_rel_name(relid) == NULL)
		return InvalidOid;		/* dropped by the library system; health() says so */
	tt = SPI_tuptable;
	row = tt->vals[0];
	memset(&m, 0, sizeof(m));
	m.relid = relid;
	kind = SPI_getvalue(row, tt->tupdesc, 1);
	m.kind = strcmp(kind, "patrons") == 0 ? MAP_PATRONS : strcmp(kind, "cards") == 0 ? MAP_CARDS :
		strcmp(kind, "circulations") == 0 ? MAP_CIRCULATIONS : MAP_MONEY;
	m.id_column = SPI_getvalue(row, tt->tupdesc, 2);
	m.patron_column = SPI_getvalue(row, tt->tupdesc, 3);
	m.barcode_column = SPI_getvalue(row, tt->tupdesc, 4);
	m.name_columns = spi_name_list(5, false);
	m.due_column = SPI_getvalue(row, tt->tupdesc, 6);
	m.money_kind = SPI_getvalue(row, tt->tupdesc, 7);
	m.amount_column = SPI_getvalue(row, tt->tupdesc, 8);
	m.via = SPI_getvalue(row, tt->tupdesc, 9) != NULL;
	m.condition = condition;
	m.lost_condition = lost_condition;
	return create_mapping_view(&m);
}

/*
 * make_mapping_view(attached_table, condition, lost_condition): used by the
 * update from 1.1 only (which drops it afterwards).
 */
PG_FUNCTION_INFO_V1(pg_make_mapping_view);

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
PG_FUNCTION_INFO_V1(pg_attachments_restore);

Datum
pg_attachments_restore(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	bool		isnull;
	Oid			relid;
	char	   *condition;
	char	   *lost_condition;
	Oid			view;
	OwnerContext oc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("attachments_restore must be an AFTER INSERT row trigger on patron_group.attachments")));
	desc = RelationGetDescr(td->tg_relation);
	tup = td->tg_trigtuple;
	(void) heap_getattr(tup, SPI_fnumber(desc, "mapping"), desc, &isnull);
	if (!isnull)
		return PointerGetDatum(NULL);
	relid = DatumGetObjectId(heap_getattr(tup, SPI_fnumber(desc, "relid"), desc, &isnull));
	condition = SPI_getvalue(tup, desc, SPI_fnumber(desc, "condition"));
	lost_condition = SPI_getvalue(tup, desc, SPI_fnumber(desc, "lost_condition"));

	SPI_connect();
	view = mapping_from_old_row(relid, condition, lost_condition);
	become_extension_owner(&oc);
	if (SPI_execute_with_args("UPDATE " PG_SCHEMA ".attachments SET mapping = $2::pg_catalog.regclass, "
							  "condition = NULL, lost_condition = NULL "
							  "WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
							  2, (Oid[]) {OIDOID, OIDOID},
							  (Datum[]) {ObjectIdGetDatum(relid), ObjectIdGetDatum(view)},
							  OidIsValid(view) ? "  " : " n", false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the mapping view");
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}
