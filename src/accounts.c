/*
 * accounts.c
 *		Triggers that keep patron_group's state in step with the library
 *		system, whatever SQL changed it:
 *
 *		- patrons_trigger, on the attached patron table: one account row per
 *		  patron, created on insert and removed on delete or truncate;
 *		- accounts_trigger, on patron_group.accounts: group member and lead
 *		  counts, removal of an emptied group, and a history row for every
 *		  membership and lead change, so that a DBA's direct UPDATE is
 *		  recorded as faithfully as a group operation;
 *		- history_guard: the history is append-only.
 *
 * Lock order.  Everything that changes membership locks account rows first,
 * in patron_id order, then group rows in group_id order (see groups.c).  The
 * group updates made here happen while the caller already holds the account
 * row, and the group operations lock the groups they touch beforehand (and
 * patrons_trigger does the same before a bulk delete), so the updates below
 * never take a lock out of order.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"
#include "utils/rel.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_patrons_trigger);
PG_FUNCTION_INFO_V1(pg_accounts_trigger);
PG_FUNCTION_INFO_V1(pg_history_guard);

/* Check that a trigger function was called as the trigger it is meant to be. */
static TriggerData *
trigger_data(FunctionCallInfo fcinfo, const char *name)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: not called by trigger manager", name)));
	return (TriggerData *) fcinfo->context;
}

/*
 * Before removing several accounts at once, lock them in patron_id order and
 * then their groups in group_id order, as every other path does, so that a
 * bulk DELETE of patrons cannot deadlock with a group operation.
 */
static void
lock_in_order(const char *accounts_condition)
{
	char	   *sql;

	sql = psprintf("SELECT NULL FROM " PG_SCHEMA ".accounts WHERE %s "
				   "ORDER BY patron_id FOR UPDATE", accounts_condition);
	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock accounts");
	sql = psprintf("SELECT NULL FROM " PG_SCHEMA ".groups WHERE group_id OPERATOR(pg_catalog.=) ANY "
				   "(ARRAY(SELECT group_id FROM " PG_SCHEMA ".accounts WHERE %s)) "
				   "ORDER BY group_id FOR UPDATE", accounts_condition);
	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock groups");
}

/*
 * Count what the attached tables already hold for patrons whose accounts
 * were just created: rows may name a patron id before the patron row
 * exists (a library system without foreign keys, a patron deleted and
 * inserted again).  'ids_sql' selects the patron ids as one int8[].  (An
 * account given a new id is counted at commit: see recount_at_commit().)
 */
static void
recount_new_accounts(const char *ids_sql)
{
	bool		isnull;
	Datum		ids;

	if (SPI_execute(ids_sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not list the new accounts");
	ids = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;
	(void) rebuild_totals(DatumGetArrayTypePCopy(ids));
}

/* patrons_trigger: keep one account row per patron of the attached table. */
Datum
pg_patrons_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "patrons_trigger");
	TriggerEvent ev = td->tg_event;
	const char *id;
	OwnerContext oc;
	char	   *sql = NULL;
	char	   *lock = NULL;
	char	   *recount = NULL;

	if (!TRIGGER_FIRED_AFTER(ev) || td->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("patrons_trigger must be an AFTER trigger with the id column as argument"),
				 errhint("Create it with patron_group.attach_patrons().")));
	id = quote_identifier(td->tg_trigger->tgargs[0]);

	if (TRIGGER_FIRED_BY_INSERT(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev) && td->tg_newtable)
	{
		sql = psprintf("INSERT INTO " PG_SCHEMA ".accounts (patron_id) "
					   "SELECT n.%s FROM patron_group_new n ON CONFLICT DO NOTHING", id);
		recount = psprintf("SELECT pg_catalog.array_agg(n.%s::pg_catalog.int8) FROM patron_group_new n", id);
	}
	else if (TRIGGER_FIRED_BY_DELETE(ev) && TRIGGER_FIRED_FOR_STATEMENT(ev) && td->tg_oldtable)
	{
		lock = psprintf("patron_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT o.%s::pg_catalog.int8 "
						"FROM patron_group_old o))", id);
		sql = psprintf("DELETE FROM " PG_SCHEMA ".accounts a USING patron_group_old o "
					   "WHERE a.patron_id OPERATOR(pg_catalog.=) o.%s", id);
	}
	else if (TRIGGER_FIRED_BY_TRUNCATE(ev))
	{
		lock = "true";
		sql = "DELETE FROM " PG_SCHEMA ".accounts";
	}
	else if (TRIGGER_FIRED_BY_UPDATE(ev) && TRIGGER_FIRED_FOR_ROW(ev))
	{
		TupleDesc	desc = td->tg_relation->rd_att;
		int			attnum = SPI_fnumber(desc, td->tg_trigger->tgargs[0]);
		char	   *new_id = SPI_getvalue(td->tg_newtuple, desc, attnum);

		/* a patron's id changed (rare): the account follows it */
		sql = psprintf("UPDATE " PG_SCHEMA ".accounts SET patron_id = %s "
					   "WHERE patron_id OPERATOR(pg_catalog.=) %s",
					   new_id, SPI_getvalue(td->tg_trigtuple, desc, attnum));
		/* and its totals are counted once the cascades, if any, are done */
		recount_at_commit(pg_strtoint64(new_id));
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("patrons_trigger fired for an unexpected event"),
				 errhint("Create it with patron_group.attach_patrons().")));

	SPI_connect();
	SPI_register_trigger_data(td);
	become_extension_owner(&oc);
	if (lock)
		lock_in_order(lock);
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "could not update patron_group.accounts");
	if (recount)
		recount_new_accounts(recount);
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}

static void insert_history(const char *action, bool patron_null, int64 patron, bool from_null,
						   int64 from, bool to_null, int64 to, const char *reason,
						   const char *detail);

static SPIPlanPtr group_adjust_plan;
static SPIPlanPtr group_drop_plan;
static SPIPlanPtr history_plan;

#define GROUP_ADJUST_SQL \
	"UPDATE " PG_SCHEMA ".groups SET member_count = member_count OPERATOR(pg_catalog.+) $2, " \
	"lead_count = lead_count OPERATOR(pg_catalog.+) $3, " \
	"items_out = items_out OPERATOR(pg_catalog.+) $4, " \
	"items_lost = items_lost OPERATOR(pg_catalog.+) $5, " \
	"amount_billed = amount_billed OPERATOR(pg_catalog.+) $6, " \
	"amount_paid = amount_paid OPERATOR(pg_catalog.+) $7 " \
	"WHERE group_id OPERATOR(pg_catalog.=) $1 RETURNING member_count"

/* An account row's totals, to carry from group to group. */
typedef struct AccountTotals
{
	int64		items_out;
	int64		items_lost;
	Datum		billed;			/* numeric */
	Datum		paid;			/* numeric */
} AccountTotals;

/* Read the totals of an accounts row. */
static void
account_totals(TriggerData *td, HeapTuple tuple, AccountTotals *t)
{
	TupleDesc	desc = td->tg_relation->rd_att;
	bool		isnull;

	t->items_out = DatumGetInt64(SPI_getbinval(tuple, desc, SPI_fnumber(desc, "items_out"), &isnull));
	t->items_lost = DatumGetInt64(SPI_getbinval(tuple, desc, SPI_fnumber(desc, "items_lost"), &isnull));
	t->billed = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "amount_billed"), &isnull);
	t->paid = SPI_getbinval(tuple, desc, SPI_fnumber(desc, "amount_paid"), &isnull);
}

/*
 * Add a member (sign 1) or take one away (sign -1) from a group's counts and
 * totals; remove the group once it is empty.
 */
static void
adjust_group(int64 group_id, int sign, bool lead, AccountTotals *t)
{
	Oid			types[7] = {INT8OID, INT4OID, INT4OID, INT8OID, INT8OID, NUMERICOID, NUMERICOID};
	Datum		values[7];
	bool		isnull;
	int32		remaining;

	values[0] = Int64GetDatum(group_id);
	values[1] = Int32GetDatum(sign);
	values[2] = Int32GetDatum(lead ? sign : 0);
	values[3] = Int64GetDatum(sign * t->items_out);
	values[4] = Int64GetDatum(sign * t->items_lost);
	values[5] = sign > 0 ? t->billed : DirectFunctionCall1(numeric_uminus, t->billed);
	values[6] = sign > 0 ? t->paid : DirectFunctionCall1(numeric_uminus, t->paid);
	kept_plan(&group_adjust_plan, GROUP_ADJUST_SQL, 7, types);
	if (SPI_execute_plan(group_adjust_plan, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "group " INT64_FORMAT " vanished", group_id);
	remaining = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (remaining == 0)
	{
		kept_plan(&group_drop_plan,
				  "DELETE FROM " PG_SCHEMA ".groups WHERE group_id OPERATOR(pg_catalog.=) $1",
				  1, types);
		if (SPI_execute_plan(group_drop_plan, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not remove empty group " INT64_FORMAT, group_id);
	}
}

/* Change a group's lead count alone. */
static void
adjust_leads(int64 group_id, int leads)
{
	Datum		zero = DirectFunctionCall1(int8_numeric, Int64GetDatum(0));
	Oid			types[7] = {INT8OID, INT4OID, INT4OID, INT8OID, INT8OID, NUMERICOID, NUMERICOID};

	/* no member added or taken, no totals moved */
	Datum		values[7] = {Int64GetDatum(group_id), Int32GetDatum(0), Int32GetDatum(leads),
	Int64GetDatum(0), Int64GetDatum(0), zero, zero};

	kept_plan(&group_adjust_plan, GROUP_ADJUST_SQL, 7, types);
	if (SPI_execute_plan(group_adjust_plan, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "group " INT64_FORMAT " vanished", group_id);
}

/* Append one history row, with the reason given. */
void
record_history_reason(const char *action, int64 patron, bool from_null, int64 from,
					  bool to_null, int64 to, const char *reason, const char *detail)
{
	insert_history(action, false, patron, from_null, from, to_null, to, reason, detail);
}

/*
 * Append one history row about a group rather than a patron (its limits):
 * the group in to_group, NULL for the default that applies to every group.
 */
void
record_group_event(const char *action, bool group_null, int64 group, const char *reason,
				   const char *detail)
{
	insert_history(action, true, 0, true, 0, group_null, group, reason, detail);
}

/*
 * The one writer of history rows: the role that made the change (the
 * session's role, whatever SECURITY DEFINER function is running), the
 * library system's user, and what happened.
 */
static void
insert_history(const char *action, bool patron_null, int64 patron, bool from_null, int64 from,
			   bool to_null, int64 to, const char *reason, const char *detail)
{
	Oid			types[8] = {NAMEOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = "        ";
	const char *app_user = history_app_user();

	values[0] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false)));
	if (app_user)
		values[1] = CStringGetTextDatum(app_user);
	else
		nulls[1] = 'n';
	values[2] = CStringGetTextDatum(action);
	values[3] = Int64GetDatum(patron);
	if (patron_null)
		nulls[3] = 'n';
	values[4] = Int64GetDatum(from);
	if (from_null)
		nulls[4] = 'n';
	values[5] = Int64GetDatum(to);
	if (to_null)
		nulls[5] = 'n';
	if (reason)
		values[6] = CStringGetTextDatum(reason);
	else
		nulls[6] = 'n';
	if (detail)
		values[7] = CStringGetTextDatum(detail);
	else
		nulls[7] = 'n';

	kept_plan(&history_plan,
			  "INSERT INTO " PG_SCHEMA ".history (db_role, app_user, action, patron_id, "
			  "from_group, to_group, reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			  8, types);
	if (SPI_execute_plan(history_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record history");
}

/* Append one history row, with the running operation's reason. */
static void
record_history(const char *action, int64 patron, bool from_null, int64 from,
			   bool to_null, int64 to, const char *detail)
{
	record_history_reason(action, patron, from_null, from, to_null, to,
						  history_context_reason(), detail);
}

/*
 * Record every change of a member's consent, whichever statement made it
 * (set_consent, or leaving a group, which clears it).
 */
static void
consent_history(TriggerData *td, HeapTuple oldtup, HeapTuple newtup, int64 patron,
				bool old_null, int64 old_group, bool new_null, int64 new_group)
{
	static const char *const kinds[] = {"circulations", "bills"};
	TupleDesc	desc = td->tg_relation->rd_att;

	for (size_t k = 0; k < lengthof(kinds); k++)
	{
		int			flag = SPI_fnumber(desc, psprintf("share_%s", kinds[k]));
		int			until = SPI_fnumber(desc, psprintf("share_%s_until", kinds[k]));
		bool		isnull;
		bool		old_on = false,
					new_on = false;
		bool		old_until_null = true,
					new_until_null = true;
		Datum		old_until = (Datum) 0,
					new_until = (Datum) 0;
		char	   *detail;

		if (oldtup)
		{
			old_on = DatumGetBool(SPI_getbinval(oldtup, desc, flag, &isnull));
			old_until = SPI_getbinval(oldtup, desc, until, &old_until_null);
		}
		if (newtup)
		{
			new_on = DatumGetBool(SPI_getbinval(newtup, desc, flag, &isnull));
			new_until = SPI_getbinval(newtup, desc, until, &new_until_null);
		}
		if (old_on == new_on &&
			(!new_on || (old_until_null == new_until_null &&
						 (new_until_null || DatumGetTimestampTz(old_until) == DatumGetTimestampTz(new_until)))))
			continue;
		detail = new_on && !new_until_null ?
			psprintf("%s until %s", kinds[k],
					 DatumGetCString(DirectFunctionCall1(timestamptz_out, new_until))) :
			pstrdup(kinds[k]);
		record_history(new_on ? "consent_on" : "consent_off", patron,
					   old_null, old_group, new_null, new_group, detail);
	}
}

/* Column value of an accounts row (patron_id, group_id, is_lead by number). */
static Datum
account_col(TriggerData *td, HeapTuple tuple, int attnum, bool *isnull)
{
	return heap_getattr(tuple, attnum, td->tg_relation->rd_att, isnull);
}

#define ACC_PATRON	1
#define ACC_GROUP	2
#define ACC_LEAD	3

/* accounts_trigger: group counts and history for every account change. */
Datum
pg_accounts_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "accounts_trigger");
	TriggerEvent ev = td->tg_event;
	HeapTuple	oldtup = NULL;
	HeapTuple	newtup = NULL;
	bool		old_null = true,
				new_null = true,
				isnull;
	int64		old_group = 0,
				new_group = 0,
				patron;
	bool		old_lead = false,
				new_lead = false;
	const char *action;
	OwnerContext oc;

	if (!TRIGGER_FIRED_AFTER(ev) || !TRIGGER_FIRED_FOR_ROW(ev))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("accounts_trigger must be an AFTER ROW trigger")));

	/*
	 * The extension inserts an account only for a new patron, in no group.
	 * A row that arrives already in a group is an existing membership being
	 * loaded, as pg_restore does with the groups (their counts included) and
	 * the history beside it: counting or recording it again would double
	 * both.  (Should a DBA insert one by hand, verify() reports the group's
	 * counts and rebuild() repairs them.)
	 */
	if (TRIGGER_FIRED_BY_INSERT(ev))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_DELETE(ev))
		oldtup = td->tg_trigtuple;
	else
	{
		oldtup = td->tg_trigtuple;
		newtup = td->tg_newtuple;
	}
	if (oldtup)
	{
		Datum		g = account_col(td, oldtup, ACC_GROUP, &old_null);

		old_group = old_null ? 0 : DatumGetInt64(g);
		old_lead = DatumGetBool(account_col(td, oldtup, ACC_LEAD, &isnull));
	}
	if (newtup)
	{
		Datum		g = account_col(td, newtup, ACC_GROUP, &new_null);

		new_group = new_null ? 0 : DatumGetInt64(g);
		new_lead = DatumGetBool(account_col(td, newtup, ACC_LEAD, &isnull));
	}
	patron = DatumGetInt64(account_col(td, newtup ? newtup : oldtup, ACC_PATRON, &isnull));

	/* the common case: an ungrouped patron appears or disappears */
	if (old_null && new_null)
		return PointerGetDatum(NULL);

	SPI_connect();
	become_extension_owner(&oc);
	if (old_null != new_null || old_group != new_group)
	{
		AccountTotals old_totals;
		AccountTotals new_totals;

		if (oldtup)
			account_totals(td, oldtup, &old_totals);
		if (newtup)
			account_totals(td, newtup, &new_totals);

		/* membership changed: carry the totals, lower group id first */
		if (!old_null && (new_null || old_group < new_group))
		{
			adjust_group(old_group, -1, old_lead, &old_totals);
			if (!new_null)
				adjust_group(new_group, 1, new_lead, &new_totals);
		}
		else
		{
			adjust_group(new_group, 1, new_lead, &new_totals);
			if (!old_null)
				adjust_group(old_group, -1, old_lead, &old_totals);
		}

		if (old_lead)
			record_history("lead_off", patron, false, old_group, false, old_group, NULL);
		action = history_context_action();
		if (action == NULL)
			action = newtup == NULL ? "delete" : old_null ? "join" : new_null ? "leave" : "move";
		record_history(action, patron, old_null, old_group, new_null, new_group, NULL);
		if (new_lead)
			record_history("lead_on", patron, new_null, new_group, new_null, new_group, NULL);
	}
	else if (old_lead != new_lead)
	{
		adjust_leads(new_group, new_lead ? 1 : -1);
		record_history(new_lead ? "lead_on" : "lead_off", patron,
					   false, old_group, false, new_group, NULL);
	}
	consent_history(td, oldtup, newtup, patron, old_null, old_group, new_null, new_group);
	restore_user(&oc);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* history_guard: refuse to change or remove history rows. */
Datum
pg_history_guard(PG_FUNCTION_ARGS)
{
	(void) trigger_data(fcinfo, "history_guard");
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("patron_group.history is append-only"),
			 errdetail("Membership history cannot be changed or removed.")));
	PG_RETURN_NULL();
}
