/*
 * triggers.c
 *		Which triggers each table needs, and making it so.
 *
 * What is attached decides every trigger the extension puts on the library
 * system's tables; this file is the one place that says which, by name:
 *
 *	- the patron table and each of its children and partitions: its account
 *	  rows follow inserts, deletes, id changes and TRUNCATE (patrons_trigger);
 *	- an attached circulation or money table and each table of its tree: the
 *	  totals follow every statement that names that table (totals_trigger),
 *	  and, where the root enforces limits, a checkout over a limit is refused
 *	  (limits_trigger);
 *	- the transaction table that money names, and each table of its tree:
 *	  money follows a transaction that changes patron or goes (via_trigger);
 *	- every table above one of those trees (a parent of an attached table,
 *	  such as Evergreen's money.billable_xact above action.circulation): a
 *	  statement that names it changes rows of the tree without firing their
 *	  triggers, so the patrons its rows name are recounted (within_trigger).
 *
 * A statement fires the statement triggers of the table it names only, and
 * its transition tables hold the rows of every table of that table's tree
 * it touched: with the same triggers on every table of a tree, each row is
 * counted once, whichever table the statement names.
 *
 * sync_triggers() compares what the attachments want with the triggers of
 * the extension's functions that exist, creates what is missing, replaces
 * what differs and drops what nothing wants any more.  Attaching, altering
 * and detaching call it, and so does the DDL watch when a table joins or
 * leaves a tree.  expected_triggers() lists the same for health() and
 * attachment_status.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_expected_triggers);

/* What a trigger of the extension does. */
typedef enum TriggerRole
{
	ROLE_PATRONS,
	ROLE_PATRON_ROWS,			/* the patrons' rows are watched: deleted_when */
	ROLE_TOTALS,
	ROLE_LIMITS,
	ROLE_VIA,
	ROLE_WITHIN
} TriggerRole;

/* One trigger the extension creates: its name, and the rest of its CREATE TRIGGER. */
typedef struct TriggerSpec
{
	const char *name;
	TriggerRole role;
	const char *function;
	const char *definition;		/* %1$s the table, %2$s the UPDATE OF list and WHEN of an id */
} TriggerSpec;

#define NEW_ROWS "REFERENCING NEW TABLE AS patron_group_new FOR EACH STATEMENT "
#define OLD_ROWS "REFERENCING OLD TABLE AS patron_group_old FOR EACH STATEMENT "
#define BOTH_ROWS "REFERENCING OLD TABLE AS patron_group_old NEW TABLE AS patron_group_new FOR EACH STATEMENT "

/*
 * Every trigger, in the order a table gets them (and attachment_status
 * lists them).  Names sort so that, on one table, the limits are checked
 * after the totals count the statement's loans, and a recount of a table
 * above a tree (within) runs after the money of its transactions moved.
 */
static const TriggerSpec trigger_specs[] = {
	{"patron_group_insert", ROLE_PATRONS, "patrons_trigger", "AFTER INSERT ON %1$s " NEW_ROWS},
	{"patron_group_delete", ROLE_PATRONS, "patrons_trigger", "AFTER DELETE ON %1$s " OLD_ROWS},
	{"patron_group_update", ROLE_PATRONS, "patrons_trigger", "AFTER UPDATE OF %2$s ON %1$s FOR EACH ROW %3$s"},
	{"patron_group_truncate", ROLE_PATRONS, "patrons_trigger", "AFTER TRUNCATE ON %1$s FOR EACH STATEMENT"},
	{"patron_group_update_rows", ROLE_PATRON_ROWS, "patrons_trigger", "AFTER UPDATE ON %1$s " BOTH_ROWS},
	{"patron_group_totals_insert", ROLE_TOTALS, "totals_trigger", "AFTER INSERT ON %1$s " NEW_ROWS},
	{"patron_group_totals_update", ROLE_TOTALS, "totals_trigger", "AFTER UPDATE ON %1$s " BOTH_ROWS},
	{"patron_group_totals_delete", ROLE_TOTALS, "totals_trigger", "AFTER DELETE ON %1$s " OLD_ROWS},
	{"patron_group_totals_truncate", ROLE_TOTALS, "totals_trigger", "AFTER TRUNCATE ON %1$s FOR EACH STATEMENT"},
	{"patron_group_totals_insert_limits", ROLE_LIMITS, "limits_trigger", "AFTER INSERT ON %1$s " NEW_ROWS},
	{"patron_group_via_delete", ROLE_VIA, "via_trigger", "BEFORE DELETE ON %1$s FOR EACH ROW"},
	{"patron_group_via_update", ROLE_VIA, "via_trigger", "AFTER UPDATE ON %1$s " BOTH_ROWS},
	{"patron_group_via_truncate", ROLE_VIA, "via_trigger", "AFTER TRUNCATE ON %1$s FOR EACH STATEMENT"},
	{"patron_group_within_update", ROLE_WITHIN, "within_trigger", "AFTER UPDATE ON %1$s " BOTH_ROWS},
	{"patron_group_within_delete", ROLE_WITHIN, "within_trigger", "AFTER DELETE ON %1$s " OLD_ROWS},
	{"patron_group_within_truncate", ROLE_WITHIN, "within_trigger", "AFTER TRUNCATE ON %1$s FOR EACH STATEMENT"},
};

#define LIMITS_TRIGGER "patron_group_totals_insert_limits"

/* A trigger some attachment wants on a table, with its arguments. */
typedef struct WantedTrigger
{
	Oid			relid;
	const TriggerSpec *spec;
	Oid			attached;		/* the attached table that wants it */
	List	   *args;			/* char *: the patron id column, or the patron columns (within) */
	int			ord;			/* position in attachment_status */
} WantedTrigger;

/* The wanted trigger of a name on a table in a list, or NULL. */
static WantedTrigger *
find_wanted(List *wanted, Oid relid, const char *name)
{
	ListCell   *lc;

	foreach(lc, wanted)
	{
		WantedTrigger *w = lfirst(lc);

		if (w->relid == relid && strcmp(w->spec->name, name) == 0)
			return w;
	}
	return NULL;
}

/* Want every trigger of a role on a table (once: a second want adds its argument). */
static void
want(List **wanted, Oid relid, TriggerRole role, Oid attached, const char *arg, int *ord)
{
	for (size_t i = 0; i < lengthof(trigger_specs); i++)
	{
		WantedTrigger *w;

		if (trigger_specs[i].role != role)
			continue;
		w = find_wanted(*wanted, relid, trigger_specs[i].name);
		if (w == NULL)
		{
			w = palloc0(sizeof(WantedTrigger));
			w->relid = relid;
			w->spec = &trigger_specs[i];
			w->attached = attached;
			w->ord = (*ord)++;
			*wanted = lappend(*wanted, w);
		}
		if (arg && !list_member(w->args, makeString((char *) arg)))
			w->args = lappend(w->args, makeString(pstrdup(arg)));
	}
}

/* Does the root of an attached circulation table enforce limits? */
static bool
enforces_limits(Oid relid)
{
	return OidIsValid(get_trigger_oid(relid, LIMITS_TRIGGER, true));
}

/* Want "within" triggers on every table above root, for patron column 'column' (NULL: unknown). */
static void
want_above(List **wanted, Oid root, Oid attached, const char *column, int *ord)
{
	ListCell   *lc;

	foreach(lc, ancestors_of(root))
	{
		Oid			ancestor = lfirst_oid(lc);
		bool		has_column = column && get_attnum(ancestor, column) != InvalidAttrNumber;

		/* a parent without the patron column: recount everyone (no argument) */
		want(wanted, ancestor, ROLE_WITHIN, attached, has_column ? column : "", ord);
	}
}

/* Every trigger the attachments want, tree by tree, parents before children. */
static List *
wanted_triggers(void)
{
	List	   *wanted = NIL;
	ListCell   *lc;
	int			ord = 0;

	foreach(lc, get_mapping()->all)
	{
		const Attachment *a = lfirst(lc);
		ListCell   *m;

		if (a->tree == NIL)
			continue;			/* the table is gone */
		switch (a->kind)
		{
			case MAP_PATRONS:
				{
					bool		rows = patrons_deleted_when(a) || a->group_name != NULL;

					foreach(m, a->tree)
					{
						want(&wanted, lfirst_oid(m), ROLE_PATRONS, a->relid, a->id_name, &ord);
						if (rows)
							want(&wanted, lfirst_oid(m), ROLE_PATRON_ROWS, a->relid, a->id_name, &ord);
					}
					break;
				}
			case MAP_CARDS:
				break;
			case MAP_CIRCULATIONS:
			case MAP_MONEY:
				{
					bool		limits = a->kind == MAP_CIRCULATIONS && enforces_limits(a->relid);

					foreach(m, a->tree)
					{
						want(&wanted, lfirst_oid(m), ROLE_TOTALS, a->relid, NULL, &ord);
						if (limits)
							want(&wanted, lfirst_oid(m), ROLE_LIMITS, a->relid, NULL, &ord);
					}
					/* money naming transactions: the patrons above are unknown */
					want_above(&wanted, a->relid, a->relid,
							   OidIsValid(a->via_relid) ? NULL : a->patron_name, &ord);
					foreach(m, a->via_tree)
						want(&wanted, lfirst_oid(m), ROLE_VIA, a->relid, NULL, &ord);
					if (a->via_tree != NIL)
						want_above(&wanted, a->via_relid, a->relid, a->via_patron_name, &ord);
					break;
				}
		}
	}
	return wanted;
}

/* The arguments of a wanted trigger, as SQL literals. */
static char *
trigger_args(const WantedTrigger *w)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	foreach(lc, w->args)
		appendStringInfo(&s, "%s%s", s.len ? ", " : "", quote_literal_cstr(strVal(lfirst(lc))));
	return s.data;
}

/* The tgargs bytes a wanted trigger has: each argument followed by a NUL. */
static bool
args_match(const WantedTrigger *w, bytea *tgargs)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	foreach(lc, w->args)
		appendBinaryStringInfo(&s, strVal(lfirst(lc)), strlen(strVal(lfirst(lc))) + 1);
	return VARSIZE_ANY_EXHDR(tgargs) == (Size) s.len && memcmp(VARDATA_ANY(tgargs), s.data, s.len) == 0;
}

/* Create a wanted trigger. */
static void
create_trigger(const WantedTrigger *w)
{
	const char *table = qualified_relname(w->relid);
	const char *update_of = "";
	const char *when = "";

	if ((w->spec->role == ROLE_PATRONS || w->spec->role == ROLE_PATRON_ROWS) && w->args != NIL)
	{
		const char *id = quote_identifier(strVal(linitial(w->args)));

		update_of = id;
		when = psprintf("WHEN (OLD.%s IS DISTINCT FROM NEW.%s)", id, id);
	}
	spi_exec(psprintf("CREATE TRIGGER %s %s EXECUTE FUNCTION " PG_SCHEMA ".%s(%s)",
					  w->spec->name, psprintf(w->spec->definition, table, update_of, when),
					  w->spec->function, trigger_args(w)));
}

/* The OIDs of the extension's trigger functions, as an oid[] Datum. */
static Datum
trigger_functions(void)
{
	const char *names[] = {"patrons_trigger", "totals_trigger", "limits_trigger", "via_trigger",
	"within_trigger"};
	Datum		oids[lengthof(names)];
	int			n = 0;

	for (size_t i = 0; i < lengthof(names); i++)
	{
		Oid			f = LookupFuncName(list_make2(makeString(PG_SCHEMA), makeString((char *) names[i])),
									   0, NULL, true);

		if (OidIsValid(f))
			oids[n++] = ObjectIdGetDatum(f);
	}
	return PointerGetDatum(construct_array(oids, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

/*
 * Make the triggers what the attachments want, as the extension owner (the
 * DDL watch runs this for whoever added a child to a tree).  The caller is
 * connected to SPI; CREATE and DROP TRIGGER lock the tables they change.
 */
void
sync_triggers(void)
{
	List	   *wanted = wanted_triggers();
	Oid			types[1] = {OIDARRAYOID};
	Datum		values[1] = {trigger_functions()};
	SPITupleTable *tt;
	uint64		n;
	ListCell   *lc;
	OwnerContext oc;

	become_extension_owner(&oc);

	/* what exists: the triggers calling the extension's trigger functions */
	run_sql("SELECT t.tgrelid, t.tgname::pg_catalog.text, t.tgparentid OPERATOR(pg_catalog.<>) 0, t.tgargs "
			"FROM pg_catalog.pg_trigger t WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY ($1) "
			"ORDER BY t.tgrelid, t.tgname",
			1, types, values, NULL, false, SPI_OK_SELECT);
	tt = SPI_tuptable;
	n = SPI_processed;
	for (uint64 r = 0; r < n; r++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(tt->vals[r], tt->tupdesc, 2);
		bool		clone = DatumGetBool(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
		bytea	   *args = DatumGetByteaPP(SPI_getbinval(tt->vals[r], tt->tupdesc, 4, &isnull));
		WantedTrigger *w = find_wanted(wanted, relid, name);

		/* a partition's copy of its parent's row trigger goes and comes with the parent's */
		if (clone || (w && args_match(w, args)))
			continue;
		spi_exec(psprintf("DROP TRIGGER %s ON %s", quote_identifier(name), qualified_relname(relid)));
	}
	CommandCounterIncrement();
	foreach(lc, wanted)
	{
		WantedTrigger *w = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		if (!OidIsValid(get_trigger_oid(w->relid, w->spec->name, true)))
		{
			create_trigger(w);
			CommandCounterIncrement();
		}
	}
	restore_user(&oc);
}

/*
 * expected_triggers(): every trigger the attachments want, for health() and
 * attachment_status: the attached table it serves, the table it is on, its
 * name, and where attachment_status lists it.
 */
Datum
pg_expected_triggers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	foreach(lc, wanted_triggers())
	{
		WantedTrigger *w = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = ObjectIdGetDatum(w->attached);
		values[1] = ObjectIdGetDatum(w->relid);
		values[2] = DirectFunctionCall1(namein, CStringGetDatum(w->spec->name));
		values[3] = Int32GetDatum(w->ord);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * enforce_limits(circulation_table, enabled): refuse (or stop refusing) new
 * open loans of members of groups over a limit, on the table and every
 * table of its tree.  The root's trigger says whether the table enforces
 * them; sync_triggers() gives its children and partitions the same.
 */
PG_FUNCTION_INFO_V1(pg_enforce_limits);

Datum
pg_enforce_limits(PG_FUNCTION_ARGS)
{
	Oid			relid;
	const Attachment *a;
	bool		enabled;
	OwnerContext oc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("circulation_table and enabled must not be null")));
	relid = PG_GETARG_OID(0);
	enabled = PG_GETARG_BOOL(1);
	SPI_connect();
	a = attachment_of(relid);
	if (a == NULL || a->kind != MAP_CIRCULATIONS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relation %s is not an attached circulation table",
						DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(relid)))),
				 errhint("Attach it with patron_group.attach_circulations first.")));
	become_extension_owner(&oc);
	if (OidIsValid(get_trigger_oid(relid, LIMITS_TRIGGER, true)))
		spi_exec(psprintf("DROP TRIGGER " LIMITS_TRIGGER " ON %s", qualified_relname(relid)));
	if (enabled)
	{
		WantedTrigger w = {relid, NULL, relid, NIL, 0};

		for (size_t i = 0; i < lengthof(trigger_specs); i++)
			if (trigger_specs[i].role == ROLE_LIMITS)
				w.spec = &trigger_specs[i];
		create_trigger(&w);
	}
	CommandCounterIncrement();
	restore_user(&oc);
	sync_triggers();
	SPI_finish();
	PG_RETURN_VOID();
}
