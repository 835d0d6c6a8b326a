/*
 * mapping.c
 *		The one reader of patron_group.attachments, and the mapping views.
 *
 * The attachments are read once per backend into a Mapping and kept until
 * something they describe changes: a write to patron_group.attachments (its
 * statement trigger sends an invalidation to every backend, the owner's
 * direct writes included), an attached table, its mapping view or its
 * transaction table altered, a schema renamed.  Every file that needs to
 * know what is attached asks get_mapping().
 *
 * How an attached table's rows are read is its mapping view.
 * Attaching a table makes a view in schema patron_group, "<table>_map",
 * that reads the table the way the extension counts it: the patron (or, for
 * money naming a transaction, the transaction), and each row's share of the
 * totals (items out, items lost, amount billed, amount paid), with the
 * conditions the DBA gave (open_when, lost_when, counts_when, active_when)
 * written into its expressions.  PostgreSQL stores a view as a parsed node
 * tree, as it stores CHECK constraints and policies: names are resolved
 * once, when the view is made (with search_path pinned to pg_catalog,
 * pg_temp), and never again; the view depends on the columns and functions
 * it uses, so they cannot be dropped or retyped under it; pg_dump writes it
 * out as SQL with every name qualified and a restore parses it afresh
 * against the restored tables.
 *
 * Everything that counts reads these views, so everything counts alike:
 * the totals triggers evaluate the view's own expressions on each
 * transition row (compile_mapping), and verify() and rebuild() select from
 * the views.  The views are security_invoker and readable by everyone:
 * reading one needs the rights on its table, and that table's row-level
 * security applies, as if the table were read directly.
 *
 * Maintenance (verify, rebuild, a recount) evaluates a view's expressions as
 * the extension owner, so a condition may call only functions owned by a
 * superuser: a function its owner could redefine would run with the
 * extension owner's rights.  That is checked when the view is made and each
 * time it is compiled.
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "access/genam.h"
#include "utils/fmgroids.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "rewrite/rewriteManip.h"
#include "access/attmap.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "patron_group.h"


/* The cached mapping, its memory, and whether it still holds. */
static Mapping *cached = NULL;
static MemoryContext cached_cxt = NULL;
static bool cached_valid = false;
static Oid	attachments_oid = InvalidOid;
static uint64 generation = 0;

/* Does a relation's invalidation concern the cached mapping? */
static bool
mapping_concerns(Oid relid)
{
	ListCell   *lc;

	if (cached == NULL || relid == InvalidOid || relid == attachments_oid)
		return true;
	foreach(lc, cached->all)
	{
		Attachment *a = lfirst(lc);

		if (a->relid == relid || a->mapping == relid || a->via_relid == relid)
			return true;
	}
	return false;
}

/* Relcache callback: an attached table, view or the attachments changed. */
static void
mapping_relcache_callback(Datum arg, Oid relid)
{
	if (cached_valid && mapping_concerns(relid))
		cached_valid = false;
}

/* Syscache callback: a schema was renamed, so qualified names may be stale. */
static void
mapping_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_valid = false;
}

/* Forget the cached mapping now (the caller changed the attachments). */
void
mapping_changed(void)
{
	cached_valid = false;
}

/* Text of column col of SPI row r, or NULL; a pstrdup'd copy. */
static char *
row_text(uint64 r, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col);
}

/* A quoted identifier, or NULL. */
static char *
quoted_or_null(char *s)
{
	return s ? (char *) quote_identifier(s) : NULL;
}

/* A name[] column of SPI row r as a List of unquoted char *. */
static List *
row_names(uint64 r, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col, &isnull);
	Datum	   *elems;
	int			n;
	List	   *result = NIL;

	if (isnull)
		return NIL;
	deconstruct_array(DatumGetArrayTypeP(d), NAMEOID, NAMEDATALEN, false,
					  TYPALIGN_CHAR, &elems, NULL, &n);
	for (int i = 0; i < n; i++)
		result = lappend(result, pstrdup(NameStr(*DatumGetName(elems[i]))));
	return result;
}

/* An oid column of SPI row r, or InvalidOid. */
static Oid
row_oid(uint64 r, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? InvalidOid : DatumGetObjectId(d);
}

/* Read patron_group.attachments into a new Mapping, in cached_cxt. */
static Mapping *
read_mapping(void)
{
	static SPIPlanPtr plan = NULL;
	Mapping    *m = MemoryContextAllocZero(cached_cxt, sizeof(Mapping));
	OwnerContext oc;

	become_extension_owner(&oc);
	SPI_connect();
	run_kept(kept_plan(&plan,
					   "SELECT relid::pg_catalog.oid, kind, id_column, patron_column, barcode_column, "
					   "name_columns, clone_columns, due_column, money_kind, amount_column, "
					   "via_relid::pg_catalog.oid, via_id_column, via_patron_column, barcode_index, "
					   "protected, mapping::pg_catalog.oid, outstanding_column, "
					   "out_includes::pg_catalog.name[], group_column, lead_column, card_id_column, "
					   "primary_card_column "
					   "FROM " PG_SCHEMA ".attachments ORDER BY relid::pg_catalog.oid", 0, NULL),
			 NULL, NULL, false, SPI_OK_SELECT);	/* not read-only: see this transaction's own changes */
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		MemoryContext spi = MemoryContextSwitchTo(cached_cxt);
		Attachment *a = palloc0(sizeof(Attachment));
		bool		isnull;

		a->relid = row_oid(r, 1);
		a->kind = mapping_kind_of(row_text(r, 2));
		a->id_name = row_text(r, 3);
		a->patron_name = row_text(r, 4);
		a->barcode_name = row_text(r, 5);
		a->id_column = quoted_or_null(a->id_name);
		a->patron_column = quoted_or_null(a->patron_name);
		a->barcode_column = quoted_or_null(a->barcode_name);
		a->name_columns = row_names(r, 6);
		a->clone_columns = row_names(r, 7);
		a->due_column = row_text(r, 8);
		a->money_kind = row_text(r, 9);
		a->amount_column = row_text(r, 10);
		a->via_relid = row_oid(r, 11);
		a->via_id_name = row_text(r, 12);
		a->via_patron_name = row_text(r, 13);
		a->via_id_column = quoted_or_null(a->via_id_name);
		a->via_patron_column = quoted_or_null(a->via_patron_name);
		a->barcode_index = row_text(r, 14);
		a->protected = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 15, &isnull));
		a->mapping = row_oid(r, 16);
		a->outstanding_column = row_text(r, 17);
		a->out_includes = row_names(r, 18);
		(void) SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 18, &isnull);
		if (isnull)				/* NULL: every state counts as out, as before 1.2 */
			a->out_includes = list_make3((char *) loan_states[LOAN_LOST],
										 (char *) loan_states[LOAN_CLAIMS_RETURNED],
										 (char *) loan_states[LOAN_LONG_OVERDUE]);
		a->group_name = row_text(r, 19);
		a->lead_name = row_text(r, 20);
		a->card_id_name = row_text(r, 21);
		a->primary_card_name = row_text(r, 22);

		/* a table the library system dropped counts nothing any more */
		a->dropped = get_rel_name(a->relid) == NULL ||
			!OidIsValid(a->mapping) || get_rel_name(a->mapping) == NULL ||
			(OidIsValid(a->via_relid) && get_rel_name(a->via_relid) == NULL);
		if (get_rel_name(a->relid) != NULL)
		{
			a->relname = qualified_relname(a->relid);
			a->tree = find_all_inheritors(a->relid, NoLock, NULL);
		}
		if (OidIsValid(a->via_relid) && get_rel_name(a->via_relid) != NULL)
			a->via_tree = find_all_inheritors(a->via_relid, NoLock, NULL);
		if (!a->dropped)
		{
			a->mapping_name = qualified_relname(a->mapping);
			if (OidIsValid(a->via_relid))
				a->via_relname = qualified_relname(a->via_relid);
		}
		m->all = lappend(m->all, a);
		if (!a->dropped)
		{
			if (a->kind == MAP_PATRONS)
				m->patrons = a;
			else if (a->kind == MAP_CARDS)
				m->cards = a;
			else
				m->totals = lappend(m->totals, a);
		}
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	restore_user(&oc);
	return m;
}

/*
 * What is attached, read once and kept until it changes.  The pointers stay
 * valid until the end of the transaction even when the mapping is read
 * again meanwhile.
 */
const Mapping *
get_mapping(void)
{
	static bool callbacks = false;

	if (!callbacks)
	{
		CacheRegisterRelcacheCallback(mapping_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, mapping_syscache_callback, (Datum) 0);
		callbacks = true;
	}
	(void) extension_owner();	/* refuses a schema this library cannot read */
	if (cached_valid && cached != NULL)
		return cached;
	if (cached_cxt != NULL)
	{
		/* whoever still holds the old one may use it until the transaction ends */
		if (IsTransactionState())
			MemoryContextSetParent(cached_cxt, TopTransactionContext);
		else
			MemoryContextDelete(cached_cxt);
	}
	cached_cxt = AllocSetContextCreate(CacheMemoryContext, "patron_group mapping",
									   ALLOCSET_SMALL_SIZES);
	attachments_oid = get_relname_relid("attachments", get_namespace_oid(PG_SCHEMA, false));
	cached_valid = true;		/* before reading: an invalidation meanwhile clears it */
	forget_sql_plans();			/* the texts built from the old mapping */
	cached = read_mapping();
	cached->generation = ++generation;
	return cached;
}

/*
 * The generation of the kept mapping, or 0 when it is to be read again:
 * what the totals path compares with what it compiled, without the cost of
 * get_mapping()'s checks.
 */
uint64
mapping_generation(void)
{
	return cached_valid && cached != NULL ? cached->generation : 0;
}

/* The patron table's attachment; NULL when none is attached and missing_ok. */
const Attachment *
mapping_patrons(bool missing_ok)
{
	const Mapping *m = get_mapping();

	if (m->patrons == NULL && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no patron table is attached"),
				 errhint("Attach the library system's patron table with patron_group.attach_patrons().")));
	return m->patrons;
}

/* The attachment of a table (dropped or not), or NULL. */
const Attachment *
attachment_of(Oid relid)
{
	ListCell   *lc;

	foreach(lc, get_mapping()->all)
		if (((Attachment *) lfirst(lc))->relid == relid)
			return lfirst(lc);
	return NULL;
}

/*
 * The attachment whose table's tree holds relid: the attached table itself,
 * or one of its children or partitions; NULL for none.
 */
const Attachment *
attachment_covering(Oid relid)
{
	ListCell   *lc;

	foreach(lc, get_mapping()->all)
	{
		Attachment *a = lfirst(lc);

		if (a->relid == relid || list_member_oid(a->tree, relid))
			return a;
	}
	return NULL;
}

/*
 * The money tables whose money names transactions of relid: those naming
 * relid's table, or a table of whose tree relid is a member.
 */
List *
totals_via(Oid relid)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, get_mapping()->totals)
	{
		Attachment *a = lfirst(lc);

		if (OidIsValid(a->via_relid) && (a->via_relid == relid || list_member_oid(a->via_tree, relid)))
			result = lappend(result, a);
	}
	return result;
}

/* The direct parents of a table (inheritance or partitioning), in no order. */
static List *
parents_of(Oid relid)
{
	Relation	rel = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *result = NIL;

	ScanKeyInit(&key, Anum_pg_inherits_inhrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InheritsRelidSeqnoIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		result = lappend_oid(result, ((Form_pg_inherits) GETSTRUCT(tup))->inhparent);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/* Every table of which relid is a child or partition, nearest first. */
List *
ancestors_of(Oid relid)
{
	List	   *result = NIL;
	List	   *todo = parents_of(relid);

	while (todo != NIL)
	{
		Oid			parent = linitial_oid(todo);

		todo = list_delete_first(todo);
		if (list_member_oid(result, parent))
			continue;
		result = lappend_oid(result, parent);
		todo = list_concat(todo, parents_of(parent));
	}
	return result;
}

/*
 * A table joined or left a tree of an attached table: every backend reads
 * the mapping (and the trees it keeps) again, as a write to attachments
 * makes it do.
 */
void
mapping_trees_changed(void)
{
	Oid			attachments = get_relname_relid("attachments", get_namespace_oid(PG_SCHEMA, false));

	if (OidIsValid(attachments))
		CacheInvalidateRelcacheByRelid(attachments);
	mapping_changed();
}

/* The name of a mapping kind, as attachments.kind spells it. */
const char *
mapping_kind_name(MappingKind kind)
{
	switch (kind)
	{
		case MAP_PATRONS:
			return "patrons";
		case MAP_CARDS:
			return "cards";
		case MAP_CIRCULATIONS:
			return "circulations";
		case MAP_MONEY:
			return "money";
	}
	return NULL;				/* keep compiler quiet */
}

/* The mapping kind attachments.kind names. */
MappingKind
mapping_kind_of(const char *name)
{
	if (strcmp(name, "patrons") == 0)
		return MAP_PATRONS;
	if (strcmp(name, "cards") == 0)
		return MAP_CARDS;
	if (strcmp(name, "circulations") == 0)
		return MAP_CIRCULATIONS;
	if (strcmp(name, "money") == 0)
		return MAP_MONEY;
	elog(ERROR, "unknown attachment kind \"%s\"", name);
	return MAP_PATRONS;			/* keep compiler quiet */
}

/* What find_untrusted_code found: a function or a domain, by oid. */
typedef struct Untrusted
{
	Oid			func;
	Oid			domain;
} Untrusted;

/* check_functions_in_node callback: is a function owned by a non-superuser? */
static bool
owned_by_non_superuser(Oid func, void *context)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(func));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", func);
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	if (superuser_arg(owner))
		return false;
	((Untrusted *) context)->func = func;
	return true;
}

/* Walker: the first function or domain in an expression not owned by a superuser. */
static bool
find_untrusted_code(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, owned_by_non_superuser, context))
		return true;
	if (IsA(node, CoerceToDomain))
	{
		Oid			domain = ((CoerceToDomain *) node)->resulttype;
		HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(domain));
		Oid			owner;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for type %u", domain);
		owner = ((Form_pg_type) GETSTRUCT(tup))->typowner;
		ReleaseSysCache(tup);
		if (!superuser_arg(owner))
		{
			((Untrusted *) context)->domain = domain;
			return true;
		}
	}
	return expression_tree_walker(node, find_untrusted_code, context);
}

/*
 * Refuse a mapping whose expressions would run code that a role other than
 * a superuser owns (and so could change into anything) when maintenance
 * evaluates them as the extension owner.
 */
static void
check_trusted_code(Query *query, Oid relid)
{
	Untrusted	found = {InvalidOid, InvalidOid};

	if (!find_untrusted_code((Node *) query->targetList, &found))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("the mapping of \"%s\" uses %s %s, which is not owned by a superuser",
					get_rel_name(relid),
					OidIsValid(found.func) ? "function" : "domain",
					OidIsValid(found.func) ? format_procedure(found.func) : format_type_be(found.domain)),
			 errdetail("verify() and rebuild() evaluate the mapping as the extension owner, "
					   "so code that its owner could redefine would run with those rights."),
			 errhint("Use built-in functions and operators in conditions, or have a superuser own the function.")));
}

/* The stored query of a mapping view, and its table. */
static Query *
mapping_query(Relation view)
{
	return get_view_query(view);
}

static void comment_mapping_columns(const char *qname, MappingSpec *m);

/*
 * Make the mapping view of an attached table, as the extension owner, and
 * return its oid.  The caller is connected to SPI and has validated the
 * conditions.
 */
Oid
create_mapping_view(MappingSpec *m)
{
	OwnerContext oc;
	Oid			nsp = get_namespace_oid(PG_SCHEMA, false);
	char	   *name = ChooseRelationName(get_rel_name(m->relid), NULL, "map", nsp, false);
	char	   *qname = quote_qualified_identifier(PG_SCHEMA, name);
	Oid			view;
	Relation	rel;

	become_extension_owner(&oc);
	spi_exec(psprintf("CREATE VIEW %s WITH (security_invoker = true) AS %s", qname,
					  mapping_view_sql(m, qualified_relname(m->relid))));
	CommandCounterIncrement();
	view = get_relname_relid(name, nsp);
	if (!OidIsValid(view))
		elog(ERROR, "mapping view %s was not created", qname);
	rel = relation_open(view, AccessShareLock);
	check_trusted_code(mapping_query(rel), m->relid);
	relation_close(rel, AccessShareLock);

	/*
	 * Made during CREATE or ALTER EXTENSION (an upgrade), the view would be
	 * a member of the extension, which pg_dump leaves to the extension's
	 * script: it belongs with the attachment instead, and is dumped as one.
	 */
	if (creating_extension)
		spi_exec(psprintf("ALTER EXTENSION patron_group DROP VIEW %s", qname));
	spi_exec(psprintf("GRANT SELECT ON %s TO PUBLIC", qname));
	comment_mapping_columns(qname, m);

	/*
	 * A grant made during an extension's script is recorded as an initial
	 * privilege of the object, member or not, and pg_dump leaves initial
	 * privileges to CREATE EXTENSION: a restore would lose this one.  The
	 * view is the attachment's, not the extension's, so it has none.
	 */
	if (creating_extension)
		run_sql("DELETE FROM pg_catalog.pg_init_privs "
				"WHERE classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass "
				"AND objoid OPERATOR(pg_catalog.=) $1",
				1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)}, NULL, false, SPI_OK_DELETE);
	spi_exec(psprintf("COMMENT ON VIEW %s IS %s", qname,
					  quote_literal_cstr(psprintf("How patron_group reads %s (%s); made by attaching it, "
												  "dropped by patron_group.detach()",
												  qualified_relname(m->relid),
												  mapping_kind_name(m->kind)))));
	restore_user(&oc);
	mapping_changed();
	return view;
}

/* Comment every column of a mapping view, for the reporting tools that read it. */
static void
comment_mapping_columns(const char *qname, MappingSpec *m)
{
	static const char *const patrons[][2] = {
		{"patron_id", "The patron's id in the library system"},
		{"barcode", "The barcode in the patron table, if it has one"},
		{"display_name", "The patron's name as \"Family, Given Other\""},
		{"is_deleted", "Whether the library system has deleted the patron (deleted_when)"}};
	static const char *const cards[][2] = {
		{"patron_id", "The patron the card belongs to"},
		{"barcode", "The card's barcode"},
		{"is_active", "Whether the card is active (active_when)"},
		{"card_id", "The card's id (card_id_column), which the patron table's primary card column names"}};
	static const char *const circulations[][2] = {
		{"patron_id", "The patron the loan belongs to"},
		{"due", "When the loan is due"},
		{"is_open", "Whether the loan is out (open_when)"},
		{"is_lost", "Whether the loan is lost (lost_when)"},
		{"is_claims_returned", "Whether the patron claims to have returned it (claims_returned_when)"},
		{"is_long_overdue", "Whether the loan is long overdue (long_overdue_when)"},
		{"is_renewal", "Whether the loan renews another (renewal_when): limits do not refuse it"},
		{"items_out", "1 for an open loan counted as out (out, overdue and the states out_includes names), else 0"},
		{"items_lost", "1 for an open loan that is lost, else 0"},
		{"items_claims_returned", "1 for an open loan claimed returned (and not lost), else 0"},
		{"items_long_overdue", "1 for an open loan long overdue (and neither lost nor claimed returned), else 0"},
		{"amount_billed", "Always 0: a loan bills nothing"},
		{"amount_paid", "Always 0: a loan pays nothing"},
		{"balance_owed", "Always 0: a loan owes nothing"}};
	static const char *const money[][2] = {
		{"patron_id", "The patron the money belongs to"},
		{"xact_id", "The transaction the money belongs to (the patron is the transaction's)"},
		{"amount", "The row's amount"},
		{"counts", "Whether the row counts (counts_when)"},
		{"items_out", "Always 0: money lends nothing"},
		{"items_lost", "Always 0: money lends nothing"},
		{"items_claims_returned", "Always 0: money lends nothing"},
		{"items_long_overdue", "Always 0: money lends nothing"},
		{"amount_billed", "The row's charge as counted in amount_billed"},
		{"amount_paid", "The row's payment as counted in amount_paid"},
		{"balance_owed", "What the row leaves owed: its charge minus its payment, or the outstanding_column"}};
	const char *const (*cols)[2];
	int			n;

	switch (m->kind)
	{
		case MAP_PATRONS:
			cols = patrons, n = lengthof(patrons);
			break;
		case MAP_CARDS:
			cols = cards, n = lengthof(cards);
			break;
		case MAP_CIRCULATIONS:
			cols = circulations, n = lengthof(circulations);
			break;
		default:
			cols = money, n = lengthof(money);
			break;
	}
	for (int i = 0; i < n; i++)
	{
		const char *col = cols[i][0];

		/* money has patron_id or xact_id */
		if (m->kind == MAP_MONEY && strcmp(col, m->via ? "patron_id" : "xact_id") == 0)
			continue;
		spi_exec(psprintf("COMMENT ON COLUMN %s.%s IS %s", qname, col, quote_literal_cstr(cols[i][1])));
	}
}

/* Set while the extension drops a mapping view of its own (guard.c refuses anyone else's drop). */
bool		dropping_mapping_view = false;

/* Drop a mapping view, if it is still there. */
void
drop_mapping_view(Oid view)
{
	OwnerContext oc;

	if (!OidIsValid(view) || get_rel_name(view) == NULL)
		return;
	become_extension_owner(&oc);
	dropping_mapping_view = true;
	PG_TRY();
	{
		spi_exec(psprintf("DROP VIEW %s", qualified_relname(view)));
	}
	PG_FINALLY();
	{
		dropping_mapping_view = false;
	}
	PG_END_TRY();
	restore_user(&oc);
}

/*
 * The old mapping view of a table goes and the new one takes its name
 * (alter_attachment(): the new one was made beside it, under another name,
 * so that nothing ever read a table without one).
 */
void
replace_mapping_view(Oid old_view, Oid new_view)
{
	OwnerContext oc;
	char	   *name;

	if (!OidIsValid(old_view) || get_rel_name(old_view) == NULL)
		return;
	name = pstrdup(get_rel_name(old_view));
	drop_mapping_view(old_view);
	become_extension_owner(&oc);
	spi_exec(psprintf("ALTER VIEW %s RENAME TO %s", qualified_relname(new_view), quote_identifier(name)));
	restore_user(&oc);
	mapping_changed();
}

/* The expression of the output column 'name' of a view's stored query, or NULL. */
static Expr *
view_column(Query *query, const char *name)
{
	ListCell   *lc;

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!tle->resjunk && tle->resname && strcmp(tle->resname, name) == 0)
			return tle->expr;
	}
	return NULL;
}

/*
 * The row expressions of a circulation or money table's mapping view,
 * planned and allocated in the current memory context: exprs[0] the key
 * (patron, or transaction; its type in *key_type), then the figures (counts
 * int4, amounts numeric), and, when asked for, whether a new loan renews
 * one (*renewal, NULL for never).  Those that are the constant zero come
 * back NULL: a loan never bills and a bill never lends, so they need never
 * be evaluated.  The expressions are over the attached table's row
 * (Vars with the view's range table index; the executor evaluates them
 * against whatever scan tuple it is given).
 */
/*
 * The view's expressions over a row of 'member', a child or partition of
 * the attached table: the same columns by name, at the member's positions.
 */
static void
map_to_member(Query *query, Oid relid, Oid member)
{
	Relation	root = relation_open(relid, AccessShareLock);
	Relation	child = relation_open(member, AccessShareLock);
	AttrMap    *map = attrmap_by_name(RelationGetDescr(child), RelationGetDescr(root));
	int			rti = 0;
	ListCell   *lc;
	bool		whole_row = false;

	foreach(lc, query->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && rte->relid == relid)
			rti = foreach_current_index(lc) + 1;
	}
	if (rti == 0)
		elog(ERROR, "mapping view of \"%s\" does not read it", RelationGetRelationName(root));
	query->targetList = (List *) map_variable_attnos((Node *) query->targetList, rti, 0, map,
													 InvalidOid, &whole_row);
	if (whole_row)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the mapping of \"%s\" uses the whole row, which its child \"%s\" cannot give",
						RelationGetRelationName(root), RelationGetRelationName(child))));
	relation_close(child, AccessShareLock);
	relation_close(root, AccessShareLock);
}

void
compile_mapping(Oid viewid, Oid relid, Oid member, Expr **exprs, Oid *key_type, Expr **renewal)
{
	Relation	view;
	Query	   *query;

	if (!OidIsValid(viewid) || get_rel_name(viewid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the mapping view of \"%s\" is missing", get_rel_name(relid)),
				 errhint("Detach the table with patron_group.detach() and attach it again.")));
	view = relation_open(viewid, AccessShareLock);
	query = copyObject(mapping_query(view));
	relation_close(view, AccessShareLock);
	check_trusted_code(query, relid);
	if (member != relid)
		map_to_member(query, relid, member);

	exprs[0] = view_column(query, "patron_id");
	if (exprs[0] == NULL)
		exprs[0] = view_column(query, "xact_id");
	if (exprs[0] == NULL)
		elog(ERROR, "mapping view \"%s\" has no key column", get_rel_name(viewid));
	*key_type = exprType((Node *) exprs[0]);
	exprs[0] = expression_planner(exprs[0]);
	for (int f = 0; f < N_FIGURES; f++)
	{
		Oid			type = f < N_COUNTS ? INT4OID : NUMERICOID;
		Expr	   *e = view_column(query, figure_names[f]);

		if (e == NULL || exprType((Node *) e) != type)
			elog(ERROR, "mapping view \"%s\" has no %s column of type %s",
				 get_rel_name(viewid), figure_names[f], format_type_be(type));
		e = expression_planner(e);
		if (IsA(e, Const) && !((Const *) e)->constisnull &&
			(type == INT4OID ? DatumGetInt32(((Const *) e)->constvalue) == 0 :
			 DatumGetBool(DirectFunctionCall2(numeric_eq, ((Const *) e)->constvalue,
											  DirectFunctionCall1(int4_numeric, Int32GetDatum(0))))))
			e = NULL;
		exprs[1 + f] = e;
	}
	if (renewal)
	{
		Expr	   *e = view_column(query, "is_renewal");

		e = e ? expression_planner(e) : NULL;
		/* the constant false: no loan is a renewal */
		if (e && IsA(e, Const) && !((Const *) e)->constisnull && !DatumGetBool(((Const *) e)->constvalue))
			e = NULL;
		*renewal = e;
	}
}

/*
 * One column of an attached table's mapping view as an expression over a
 * row of 'member' (the table or a table of its tree), planned, in the
 * current memory context; NULL when the column is the constant false or
 * missing.  For the conditions that are not figures: is_deleted.
 */
Expr *
compile_view_column(const Attachment *a, Oid member, const char *column)
{
	Relation	view;
	Query	   *query;
	Expr	   *e;

	if (a->dropped)
		return NULL;
	view = relation_open(a->mapping, AccessShareLock);
	query = copyObject(mapping_query(view));
	relation_close(view, AccessShareLock);
	check_trusted_code(query, a->relid);
	if (member != a->relid)
		map_to_member(query, a->relid, member);
	e = view_column(query, column);
	if (e == NULL)
		return NULL;
	e = expression_planner(e);
	if (IsA(e, Const) && !((Const *) e)->constisnull && !DatumGetBool(((Const *) e)->constvalue))
		return NULL;
	return e;
}

/* Does a patron table's mapping say when a patron is deleted? */
bool
patrons_deleted_when(const Attachment *a)
{
	return compile_view_column(a, a->relid, "is_deleted") != NULL;
}

/*
 * The condition the mapping view of an attachment keeps in column 'column'
 * (is_active, is_open, is_lost or counts), as SQL text over a row of the
 * table, deparsed from the stored tree with every name that is not in
 * pg_catalog qualified; NULL when the view has none.  alter_attachment()
 * makes the new view from it when that condition is not the one changed.
 * The caller runs with search_path pinned.
 */
char *
mapping_condition(const Attachment *a, const char *column)
{
	Relation	view = relation_open(a->mapping, AccessShareLock);
	Query	   *query = copyObject(mapping_query(view));
	Node	   *expr;
	int			rti = 0;
	ListCell   *lc;
	char	   *result = NULL;

	relation_close(view, AccessShareLock);
	expr = (Node *) view_column(query, column);
	if (expr == NULL)
		return NULL;
	/* the view wraps the condition as COALESCE((condition), false) */
	if (IsA(expr, CoalesceExpr))
		expr = linitial(((CoalesceExpr *) expr)->args);
	else if (IsA(expr, Const))
		return NULL;			/* no condition was given */
	foreach(lc, query->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && rte->relid == a->relid && rte->inFromCl)
			rti = foreach_current_index(lc) + 1;
	}
	if (rti == 0)
		elog(ERROR, "mapping view of \"%s\" does not read it", get_rel_name(a->relid));
	ChangeVarNodes(expr, rti, 1, 0);
	result = deparse_expression(expr, deparse_context_for(get_rel_name(a->relid), a->relid),
								false, false);
	return result;
}
