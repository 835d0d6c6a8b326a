/*
 * mapping.c
 *		How an attached table's rows are read: the mapping view.
 *
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
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
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
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "patron_group.h"

/* Run a utility statement through SPI. */
static void
spi_exec(const char *sql)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute failed (%d): %s", rc, sql);
}

/* SQL of a condition given to attach, NULL meaning 'dflt'. */
static const char *
condition_or(const char *condition, const char *dflt)
{
	return condition ? psprintf("COALESCE((%s), false)", condition) : dflt;
}

/*
 * The SELECT of a table's mapping view:
 *
 *	 patrons:      patron_id, barcode, display_name
 *	 cards:        patron_id, barcode, is_active
 *	 circulations: patron_id, due, is_open, is_lost,
 *	               items_out, items_lost, amount_billed, amount_paid
 *	 money:        patron_id or xact_id, amount, counts,
 *	               items_out, items_lost, amount_billed, amount_paid
 *
 * patron_id (and xact_id) keep the table's own type, so that comparing them
 * with a bigint uses the table's index.
 */
static char *
mapping_sql(MappingSpec *m)
{
	StringInfoData sql;
	const char *rel = qualified_relname(m->relid);

	initStringInfo(&sql);
	switch (m->kind)
	{
		case MAP_PATRONS:
			appendStringInfo(&sql, "SELECT p.%s AS patron_id, %s AS barcode, %s AS display_name FROM %s p",
							 quote_identifier(m->id_column),
							 m->barcode_column ? psprintf("p.%s", quote_identifier(m->barcode_column))
							 : "NULL::pg_catalog.text",
							 display_name_expr(m->name_columns, m->id_column, "p"), rel);
			break;
		case MAP_CARDS:
			appendStringInfo(&sql, "SELECT c.%s AS patron_id, c.%s AS barcode, %s AS is_active FROM %s c",
							 quote_identifier(m->patron_column), quote_identifier(m->barcode_column),
							 condition_or(m->condition, "true"), rel);
			break;
		case MAP_CIRCULATIONS:
			{
				const char *open = condition_or(m->condition, "true");
				const char *lost = condition_or(m->lost_condition, "false");

				appendStringInfo(&sql,
								 "SELECT r.%s AS patron_id, r.%s AS due, %s AS is_open, %s AS is_lost, "
								 "CASE WHEN %s THEN 1 ELSE 0 END AS items_out, "
								 "CASE WHEN %s AND %s THEN 1 ELSE 0 END AS items_lost, "
								 "0::pg_catalog.numeric AS amount_billed, 0::pg_catalog.numeric AS amount_paid "
								 "FROM %s r",
								 quote_identifier(m->patron_column), quote_identifier(m->due_column),
								 open, lost, open, open, lost, rel);
				break;
			}
		case MAP_MONEY:
			{
				const char *counts = condition_or(m->condition, "true");
				char	   *amount = psprintf("r.%s::pg_catalog.numeric", quote_identifier(m->amount_column));
				const char *zero = "0::pg_catalog.numeric";
				char	   *billed;
				char	   *paid;

				if (strcmp(m->money_kind, "charge") == 0)
				{
					billed = psprintf("CASE WHEN %s THEN %s ELSE %s END", counts, amount, zero);
					paid = (char *) zero;
				}
				else if (strcmp(m->money_kind, "payment") == 0)
				{
					billed = (char *) zero;
					paid = psprintf("CASE WHEN %s THEN %s ELSE %s END", counts, amount, zero);
				}
				else
				{
					/* signed: charges positive, credits negative */
					billed = psprintf("CASE WHEN %s AND %s OPERATOR(pg_catalog.>) 0 THEN %s ELSE %s END",
									  counts, amount, amount, zero);
					paid = psprintf("CASE WHEN %s AND %s OPERATOR(pg_catalog.<) 0 "
									"THEN OPERATOR(pg_catalog.-) %s ELSE %s END",
									counts, amount, amount, zero);
				}
				appendStringInfo(&sql,
								 "SELECT r.%s AS %s, %s AS amount, %s AS counts, "
								 "0 AS items_out, 0 AS items_lost, %s AS amount_billed, %s AS amount_paid "
								 "FROM %s r",
								 quote_identifier(m->patron_column), m->via ? "xact_id" : "patron_id",
								 amount, counts, billed, paid, rel);
				break;
			}
	}
	return sql.data;
}

/* SQL for a patron's display name, "Family, Given Middle", over alias. */
char *
display_name_expr(List *name_columns, const char *id_column, const char *alias)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	if (name_columns == NIL)
		appendStringInfo(&sql, "%s.%s::pg_catalog.text", alias, quote_identifier(id_column));
	else if (list_length(name_columns) == 1)
		appendStringInfo(&sql, "%s.%s::pg_catalog.text", alias,
						 quote_identifier(linitial(name_columns)));
	else
	{
		appendStringInfo(&sql, "pg_catalog.concat_ws(', ', %s.%s, NULLIF(pg_catalog.concat_ws(' '",
						 alias, quote_identifier(linitial(name_columns)));
		for_each_from(lc, name_columns, 1)
			appendStringInfo(&sql, ", %s.%s", alias, quote_identifier(lfirst(lc)));
		appendStringInfoString(&sql, "), ''))");
	}
	return sql.data;
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
	spi_exec(psprintf("CREATE VIEW %s WITH (security_invoker = true) AS %s", qname, mapping_sql(m)));
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
	if (creating_extension &&
		SPI_execute_with_args("DELETE FROM pg_catalog.pg_init_privs "
							  "WHERE classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass "
							  "AND objoid OPERATOR(pg_catalog.=) $1",
							  1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)},
							  NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not forget the initial privileges of %s", qname);
	spi_exec(psprintf("COMMENT ON VIEW %s IS %s", qname,
					  quote_literal_cstr(psprintf("How patron_group reads %s (%s); made by attaching it, "
												  "dropped by patron_group.detach()",
												  qualified_relname(m->relid),
												  mapping_kind_name(m->kind)))));
	restore_user(&oc);
	return view;
}

/* Comment every column of a mapping view, for the reporting tools that read it. */
static void
comment_mapping_columns(const char *qname, MappingSpec *m)
{
	static const char *const patrons[][2] = {
		{"patron_id", "The patron's id in the library system"},
		{"barcode", "The barcode in the patron table, if it has one"},
		{"display_name", "The patron's name as \"Family, Given Other\""}};
	static const char *const cards[][2] = {
		{"patron_id", "The patron the card belongs to"},
		{"barcode", "The card's barcode"},
		{"is_active", "Whether the card is active (active_when)"}};
	static const char *const circulations[][2] = {
		{"patron_id", "The patron the loan belongs to"},
		{"due", "When the loan is due"},
		{"is_open", "Whether the loan is out (open_when)"},
		{"is_lost", "Whether the loan is lost (lost_when)"},
		{"items_out", "1 for a loan that is out, else 0"},
		{"items_lost", "1 for a loan that is out and lost, else 0"},
		{"amount_billed", "Always 0: a loan bills nothing"},
		{"amount_paid", "Always 0: a loan pays nothing"}};
	static const char *const money[][2] = {
		{"patron_id", "The patron the money belongs to"},
		{"xact_id", "The transaction the money belongs to (the patron is the transaction's)"},
		{"amount", "The row's amount"},
		{"counts", "Whether the row counts (counts_when)"},
		{"items_out", "Always 0: money lends nothing"},
		{"items_lost", "Always 0: money lends nothing"},
		{"amount_billed", "The row's charge as counted in amount_billed"},
		{"amount_paid", "The row's payment as counted in amount_paid"}};
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

/* Drop a mapping view, if it is still there. */
void
drop_mapping_view(Oid view)
{
	OwnerContext oc;

	if (!OidIsValid(view) || get_rel_name(view) == NULL)
		return;
	become_extension_owner(&oc);
	spi_exec(psprintf("DROP VIEW %s", qualified_relname(view)));
	restore_user(&oc);
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
 * (patron, or transaction; its type in *key_type), then items out, items
 * lost (int4), billed and paid (numeric).  Those that are the constant zero
 * come back NULL: a loan never bills and a bill never lends, so they need
 * never be evaluated.  The expressions are over the attached table's row
 * (Vars with the view's range table index; the executor evaluates them
 * against whatever scan tuple it is given).
 */
void
compile_mapping(Oid viewid, Oid relid, Expr **exprs, Oid *key_type)
{
	static const char *const columns[MAPPING_VALUES] =
	{NULL, "items_out", "items_lost", "amount_billed", "amount_paid"};
	static const Oid types[MAPPING_VALUES] = {InvalidOid, INT4OID, INT4OID, NUMERICOID, NUMERICOID};
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

	exprs[0] = view_column(query, "patron_id");
	if (exprs[0] == NULL)
		exprs[0] = view_column(query, "xact_id");
	if (exprs[0] == NULL)
		elog(ERROR, "mapping view \"%s\" has no key column", get_rel_name(viewid));
	*key_type = exprType((Node *) exprs[0]);
	exprs[0] = expression_planner(exprs[0]);
	for (int c = 1; c < MAPPING_VALUES; c++)
	{
		Expr	   *e = view_column(query, columns[c]);

		if (e == NULL || exprType((Node *) e) != types[c])
			elog(ERROR, "mapping view \"%s\" has no %s column of type %s",
				 get_rel_name(viewid), columns[c], format_type_be(types[c]));
		e = expression_planner(e);
		if (IsA(e, Const) && !((Const *) e)->constisnull &&
			(types[c] == INT4OID ? DatumGetInt32(((Const *) e)->constvalue) == 0 :
			 DatumGetBool(DirectFunctionCall2(numeric_eq, ((Const *) e)->constvalue,
											  DirectFunctionCall1(int4_numeric, Int32GetDatum(0))))))
			e = NULL;
		exprs[c] = e;
	}
}
