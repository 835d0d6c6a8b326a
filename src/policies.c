/*
 * policies.c
 *		Row-level security on the library system's tables: which tables are
 *		protected, the policies each one carries, and the registry of
 *		patron-facing roles they apply to.
 *
 * protect(table) marks an attached table protected.  What is then protected
 * is every table whose rows a patron-facing session could read the
 * protected rows through:
 *
 *	 - the attached table and every child table and partition below it
 *	   (each can be queried by name, and a query on a child applies the
 *	   child's policies, not its parent's);
 *	 - for money that names a transaction, the transaction table and its
 *	   whole tree: its rows tell whose a transaction is, and the bills'
 *	   policy reads it, so it is protected with the bills rule.
 *
 * Each such table carries a permissive policy open to everyone (staff and
 * the library system keep seeing everything) and, for the registered
 * patron-facing roles only, restrictive policies: reads narrowed to the
 * patrons visible_patrons() gives (the table's own kind, and the bills rule
 * when it is also part of a transaction tree: both must allow a row), and
 * writes refused.  The predicate is kept alone in its policy so that the
 * visible set is computed once per query and the patron column's index is
 * used.  Tables added to a protected tree later are protected by the DDL
 * event trigger (guard.c) before their statement commits.
 *
 * Everything is derived from patron_group.attachments and recreated by
 * sync_protection(), so protect, unprotect, registering a role and new
 * children all take one path.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_register_patron_facing);
PG_FUNCTION_INFO_V1(pg_unregister_patron_facing);
PG_FUNCTION_INFO_V1(pg_protect);
PG_FUNCTION_INFO_V1(pg_unprotect);

/* A table to protect, and the reads its patron-facing policies allow. */
typedef struct Protection
{
	Oid			relid;
	char	   *read_pred;		/* as a member of a protected attached tree, or NULL */
	char	   *xact_pred;		/* as a member of a protected transaction tree, or NULL */
} Protection;

/* The registered patron-facing roles, quoted and comma-separated, or NULL. */
static char *
patron_facing_list(void)
{
	StringInfoData list;

	run_sql("SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(role_name::pg_catalog.oid)) "
			"FROM " PG_SCHEMA ".patron_facing_roles ORDER BY 1",
			0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	initStringInfo(&list);
	for (uint64 r = 0; r < SPI_processed; r++)
		appendStringInfo(&list, "%s%s", r ? ", " : "",
						 SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1));
	return list.data;
}

/*
 * SQL: a column (of the row aliased alias, or of the policy's own row when
 * alias is NULL) is one of the patrons whose rows of a kind the session may
 * see.
 */
static char *
visible_predicate(const char *alias, const char *column, const char *kind)
{
	return psprintf("%s%s%s OPERATOR(pg_catalog.=) ANY ((SELECT " PG_SCHEMA ".visible_patrons('%s'))"
					"::pg_catalog.int8[])", alias ? alias : "", alias ? "." : "",
					quote_identifier(column), kind);
}

/* The entry for relid in a list of Protection, added when missing. */
static Protection *
protection_for(List **list, Oid relid)
{
	ListCell   *lc;
	Protection *p;

	foreach(lc, *list)
		if (((Protection *) lfirst(lc))->relid == relid)
			return lfirst(lc);
	p = palloc0(sizeof(Protection));
	p->relid = relid;
	*list = lappend(*list, p);
	return p;
}

/*
 * Every table that must be protected now, from the protected attachments
 * and their trees.  The caller is connected to SPI.
 */
static List *
wanted_protection(void)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, get_mapping()->all)
	{
		const Attachment *a = lfirst(lc);
		const char *column = a->kind == MAP_PATRONS ? a->id_name : a->patron_name;
		const char *visible_kind = a->kind == MAP_MONEY ? "bills" : mapping_kind_name(a->kind);
		char	   *pred;
		ListCell   *lc2;

		if (!a->protected || get_rel_name(a->relid) == NULL)
			continue;
		if (OidIsValid(a->via_relid) && get_rel_name(a->via_relid) != NULL)
		{
			char	   *xact_pred = visible_predicate(NULL, a->via_patron_name, "bills");

			/* a bill is visible when its transaction is, read under the transaction's own policies */
			pred = psprintf("%s OPERATOR(pg_catalog.=) ANY ((SELECT pg_catalog.array_agg(v.%s) FROM %s v "
							"WHERE %s)::pg_catalog.int8[])",
							quote_identifier(column), a->via_id_column,
							qualified_relname(a->via_relid), visible_predicate("v", a->via_patron_name, "bills"));
			foreach(lc2, find_all_inheritors(a->via_relid, NoLock, NULL))
				protection_for(&result, lfirst_oid(lc2))->xact_pred = xact_pred;
		}
		else
			pred = visible_predicate(NULL, column, visible_kind);
		foreach(lc2, find_all_inheritors(a->relid, NoLock, NULL))
			protection_for(&result, lfirst_oid(lc2))->read_pred = pred;
	}
	return result;
}

/* Does a table carry policies of the extension? */
static bool
has_our_policies(Oid relid)
{
	run_sql("SELECT FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) $1 "
			"AND polname OPERATOR(pg_catalog.~~) 'patron\\_group\\_%'",
			1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(relid)}, NULL, true, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/* Drop the extension's policies of a table. */
static void
drop_policies(Oid relid)
{
	char	   *relname = qualified_relname(relid);
	SPITupleTable *tt;
	uint64		n;

	run_sql("SELECT pg_catalog.quote_ident(polname) FROM pg_catalog.pg_policy "
			"WHERE polrelid OPERATOR(pg_catalog.=) $1 "
			"AND polname OPERATOR(pg_catalog.~~) 'patron\\_group\\_%' ORDER BY 1",
			1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(relid)}, NULL, false, SPI_OK_SELECT);
	tt = SPI_tuptable;
	n = SPI_processed;
	for (uint64 r = 0; r < n; r++)
		spi_exec(psprintf("DROP POLICY %s ON %s",
						  SPI_getvalue(tt->vals[r], tt->tupdesc, 1), relname));
}

/* Is a table's owner a patron-facing role (which would bypass its policies)? */
static void
refuse_patron_facing_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	run_sql("SELECT FROM " PG_SCHEMA ".patron_facing_roles r "
			"WHERE pg_catalog.pg_has_role(r.role_name::pg_catalog.oid, $1, 'USAGE')",
			1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(owner)}, NULL, true, SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_GRANT_OPERATION),
				 errmsg("table \"%s\" is owned by a patron-facing role, which would bypass its row-level security",
						get_rel_name(relid)),
				 errhint("Let another role own the library system's tables.")));
}

/* Give a table the policies of its Protection for the registered roles. */
static void
apply_protection(Protection *p, const char *roles)
{
	char	   *relname = qualified_relname(p->relid);

	refuse_patron_facing_owner(p->relid);
	drop_policies(p->relid);
	spi_exec(psprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY", relname));
	spi_exec(psprintf("CREATE POLICY patron_group_everyone ON %s AS PERMISSIVE FOR ALL TO PUBLIC "
					  "USING (true) WITH CHECK (true)", relname));
	if (roles == NULL)
		return;
	/*
	 * One read policy a table.  A table attached for itself (loans) that is
	 * also a child of a transaction table (Evergreen's action.circulation
	 * under money.billable_xact) is read under its own kind's consent: a
	 * loan is seen under loans consent.  Its money is seen under bills
	 * consent all the same, through the transaction table and the money
	 * that names it, whose policies are the transactions'.
	 */
	if (p->read_pred)
		spi_exec(psprintf("CREATE POLICY patron_group_patron_read ON %s AS RESTRICTIVE FOR SELECT TO %s "
						  "USING (%s)", relname, roles, p->read_pred));
	else if (p->xact_pred)
		spi_exec(psprintf("CREATE POLICY patron_group_xact_read ON %s AS RESTRICTIVE FOR SELECT TO %s "
						  "USING (%s)", relname, roles, p->xact_pred));
	spi_exec(psprintf("CREATE POLICY patron_group_patron_insert ON %s AS RESTRICTIVE FOR INSERT TO %s "
					  "WITH CHECK (false)", relname, roles));
	spi_exec(psprintf("CREATE POLICY patron_group_patron_update ON %s AS RESTRICTIVE FOR UPDATE TO %s "
					  "USING (false) WITH CHECK (false)", relname, roles));
	spi_exec(psprintf("CREATE POLICY patron_group_patron_delete ON %s AS RESTRICTIVE FOR DELETE TO %s "
					  "USING (false)", relname, roles));
}

/*
 * Take the extension's policies off a table, and its row-level security
 * unless the library system has policies of its own there.
 */
static void
remove_protection(Oid relid)
{
	drop_policies(relid);
	run_sql("SELECT FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) $1",
			1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(relid)}, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		spi_exec(psprintf("ALTER TABLE %s DISABLE ROW LEVEL SECURITY", qualified_relname(relid)));
}

/*
 * Bring the policies in line with the protected attachments, as the
 * extension owner.  Every table that must be protected gets its policies:
 * all of them anew when 'renew' (the attachments or the roles changed), or
 * only those that have none yet (a new child table).  The tables in
 * 'released' that need no protection any more lose it.  The caller is
 * connected to SPI.
 */
static bool syncing = false;

static void sync_protection_work(bool renew, List *released);

void
sync_protection_for(bool renew, List *released)
{
	/* the ALTER TABLE and CREATE POLICY run here fire the DDL trigger again */
	if (syncing)
		return;
	syncing = true;
	PG_TRY();
	{
		sync_protection_work(renew, released);
	}
	PG_FINALLY();
	{
		syncing = false;
	}
	PG_END_TRY();
}

/* The work of sync_protection_for(). */
static void
sync_protection_work(bool renew, List *released)
{
	OwnerContext oc;
	List	   *wanted;
	char	   *roles;
	ListCell   *lc;

	become_extension_owner(&oc);
	wanted = wanted_protection();
	roles = wanted != NIL || released != NIL ? patron_facing_list() : NULL;
	foreach(lc, wanted)
	{
		Protection *p = lfirst(lc);

		CHECK_FOR_INTERRUPTS();
		if (renew || !has_our_policies(p->relid))
			apply_protection(p, roles);
	}
	foreach(lc, released)
	{
		Oid			relid = lfirst_oid(lc);
		ListCell   *w;
		bool		still = false;

		foreach(w, wanted)
			still |= ((Protection *) lfirst(w))->relid == relid;
		if (!still && get_rel_name(relid) != NULL && has_our_policies(relid))
			remove_protection(relid);
	}
	restore_user(&oc);
}

/* Protect what has no protection yet (DDL added a child to a protected tree). */
void
sync_protection(void)
{
	sync_protection_for(false, NIL);
}

/*
 * Every table an attachment protects when it is protected: its tree and
 * the tree of the transaction table its money names.
 */
List *
protected_by(Oid relid)
{
	List	   *result = NIL;
	const Attachment *a = attachment_of(relid);

	if (get_rel_name(relid) != NULL)
		result = find_all_inheritors(relid, NoLock, NULL);
	if (a != NULL && OidIsValid(a->via_relid) && get_rel_name(a->via_relid) != NULL)
		result = list_concat_unique_oid(result, find_all_inheritors(a->via_relid, NoLock, NULL));
	return result;
}

/*
 * Refuse a role that would see everything anyway, or that owns a table
 * that is attached or would be protected.
 */
static void
check_patron_facing_role(Oid role)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	Form_pg_authid authid;
	bool		unsafe;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for role %u", role);
	authid = (Form_pg_authid) GETSTRUCT(tup);
	unsafe = authid->rolsuper || authid->rolbypassrls;
	ReleaseSysCache(tup);
	if (unsafe)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_GRANT_OPERATION),
				 errmsg("role \"%s\" bypasses row-level security and cannot be patron-facing",
						GetUserNameFromId(role, false)),
				 errhint("Use a role without SUPERUSER and BYPASSRLS for the patron-facing application.")));
	{
		List	   *tables = NIL;
		ListCell   *lc;

		/* every table attached or behind money, with its children */
		foreach(lc, get_mapping()->all)
		{
			const Attachment *a = lfirst(lc);

			if (get_rel_name(a->relid) != NULL)
				tables = list_concat_unique_oid(tables, find_all_inheritors(a->relid, NoLock, NULL));
			if (OidIsValid(a->via_relid) && get_rel_name(a->via_relid) != NULL)
				tables = list_concat_unique_oid(tables, find_all_inheritors(a->via_relid, NoLock, NULL));
		}
		foreach(lc, tables)
		{
			Oid			relid = lfirst_oid(lc);
			HeapTuple	rtup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
			Oid			owner;

			if (!HeapTupleIsValid(rtup))
				continue;
			owner = ((Form_pg_class) GETSTRUCT(rtup))->relowner;
			ReleaseSysCache(rtup);
			if (has_privs_of_role(role, owner))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_GRANT_OPERATION),
						 errmsg("role \"%s\" owns table \"%s\" and would bypass its row-level security",
								GetUserNameFromId(role, false), get_rel_name(relid)),
						 errhint("Let another role own the library system's tables.")));
		}
	}
}

/* Grant or revoke what a patron-facing role needs of the extension. */
static void
patron_facing_grants(Oid role, bool give)
{
	char	   *name = (char *) quote_identifier(GetUserNameFromId(role, false));

	spi_exec(psprintf("%s EXECUTE ON FUNCTION " PG_SCHEMA ".group_members(bigint), "
					  PG_SCHEMA ".set_consent(bigint, text, boolean, timestamptz, text) %s %s",
					  give ? "GRANT" : "REVOKE", give ? "TO" : "FROM", name));
}

/*
 * Warn of every view, materialized view and SECURITY DEFINER function
 * through which a patron-facing role reads a protected table around its
 * row-level security (health() reports the same).  The caller is connected
 * to SPI.
 */
static void
warn_exposed(void)
{
	OwnerContext oc;

	/* an update's script protects tables before the check exists */
	if (creating_extension)
		return;
	become_extension_owner(&oc);
	run_sql("SELECT patron_facing_role::pg_catalog.text, kind, object, reads::pg_catalog.text, how, fix "
			"FROM " PG_SCHEMA ".exposed_to_patron_facing()", 0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	restore_user(&oc);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;

		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("patron-facing role %s can read protected table %s through %s %s",
						SPI_getvalue(t, d, 1), SPI_getvalue(t, d, 4), SPI_getvalue(t, d, 2), SPI_getvalue(t, d, 3)),
				 errdetail("The %s reads it %s, so row-level security does not narrow what the role sees.",
						   SPI_getvalue(t, d, 2), SPI_getvalue(t, d, 5)),
				 errhint("%s", SPI_getvalue(t, d, 6))));
	}
}

/* register_patron_facing(regrole). */
Datum
pg_register_patron_facing(PG_FUNCTION_ARGS)
{
	Oid			role;
	OwnerContext oc;

	require_arg(fcinfo, 0, "role_name");
	role = PG_GETARG_OID(0);
	SPI_connect();
	check_patron_facing_role(role);
	become_extension_owner(&oc);
	run_sql("INSERT INTO " PG_SCHEMA ".patron_facing_roles (role_name) VALUES ($1) "
			"ON CONFLICT DO NOTHING",
			1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(role)}, NULL, false, SPI_OK_INSERT);
	restore_user(&oc);
	patron_facing_grants(role, true);
	forget_patron_facing_cache();
	sync_protection_for(true, NIL);
	warn_exposed();
	SPI_finish();
	PG_RETURN_VOID();
}

/* unregister_patron_facing(regrole). */
Datum
pg_unregister_patron_facing(PG_FUNCTION_ARGS)
{
	Oid			role;
	OwnerContext oc;

	require_arg(fcinfo, 0, "role_name");
	role = PG_GETARG_OID(0);
	SPI_connect();
	become_extension_owner(&oc);
	run_sql("DELETE FROM " PG_SCHEMA ".patron_facing_roles WHERE role_name OPERATOR(pg_catalog.=) $1",
			1, (Oid[]) {REGROLEOID}, (Datum[]) {ObjectIdGetDatum(role)}, NULL, false, SPI_OK_DELETE);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" is not patron-facing", GetUserNameFromId(role, false))));
	restore_user(&oc);
	patron_facing_grants(role, false);
	forget_patron_facing_cache();
	sync_protection_for(true, NIL);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Set an attachment's protected flag, as the extension owner; false if the
 * table is not attached.  *was is the flag before.
 */
bool
set_protected(Oid relid, bool on, bool *was)
{
	OwnerContext oc;
	const Attachment *a = attachment_of(relid);

	if (a == NULL)
		return false;
	*was = a->protected;
	become_extension_owner(&oc);
	run_sql("UPDATE " PG_SCHEMA ".attachments SET protected = $2 "
			"WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
			2, (Oid[]) {OIDOID, BOOLOID}, (Datum[]) {ObjectIdGetDatum(relid), BoolGetDatum(on)},
			NULL, false, SPI_OK_UPDATE);
	restore_user(&oc);
	mapping_changed();
	return true;
}

/* protect(regclass). */
Datum
pg_protect(PG_FUNCTION_ARGS)
{
	Oid			relid;
	bool		was;

	require_arg(fcinfo, 0, "attached_table");
	relid = PG_GETARG_OID(0);
	SPI_connect();
	if (!set_protected(relid, true, &was))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not attached", get_rel_name(relid)),
				 errhint("Only attached tables can be protected.")));
	if (was)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already protected", get_rel_name(relid))));
	sync_protection_for(true, NIL);
	warn_exposed();
	SPI_finish();
	PG_RETURN_VOID();
}

/* unprotect(regclass). */
Datum
pg_unprotect(PG_FUNCTION_ARGS)
{
	Oid			relid;
	bool		was;
	List	   *released;

	require_arg(fcinfo, 0, "attached_table");
	relid = PG_GETARG_OID(0);
	SPI_connect();
	if (!set_protected(relid, false, &was) || !was)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" is not protected", get_rel_name(relid))));
	released = protected_by(relid);
	sync_protection_for(true, released);
	SPI_finish();
	PG_RETURN_VOID();
}
