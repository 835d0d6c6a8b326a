/*
 * history.c
 *		patron_group.history, append-only: the one writer of its rows, the
 *		context (action and reason) that the running operation gives the
 *		rows it causes, and the guard that refuses changing or removing them.
 *
 * A group operation sets the context, then changes accounts; the trigger on
 * accounts (accounts.c) writes the rows, so that a DBA's direct UPDATE is
 * recorded as faithfully as a group operation.  The context lasts until
 * the operation clears it, a subtransaction rolls back, or the transaction
 * ends.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "patron_group.h"

/* patron_group.application_user (init.c defines the setting): who is at the desk, as the ILS knows them */
char	   *application_user = NULL;

PG_FUNCTION_INFO_V1(pg_history_guard);

/* What the running operation wants history to say; cleared at transaction end. */
static char *hist_action = NULL;
static char *hist_reason = NULL;

/* Set the action and reason that history rows written next will carry. */
void
history_context_set(const char *action, const char *reason)
{
	history_context_clear();
	if (action)
		hist_action = MemoryContextStrdup(TopMemoryContext, action);
	if (reason)
		hist_reason = MemoryContextStrdup(TopMemoryContext, reason);
}

/* Forget the history context. */
void
history_context_clear(void)
{
	if (hist_action)
		pfree(hist_action);
	if (hist_reason)
		pfree(hist_reason);
	hist_action = NULL;
	hist_reason = NULL;
}

/* The action an operation asked history to record instead of the derived one. */
const char *
history_context_action(void)
{
	return hist_action;
}

/* patron_group.application_user, or NULL when unset or empty. */
const char *
history_app_user(void)
{
	if (application_user == NULL || application_user[0] == '\0')
		return NULL;
	return application_user;
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
	static SPIPlanPtr plan = NULL;
	Oid			types[8] = {NAMEOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[8];
	const char *app_user = history_app_user();

	memset(nulls, ' ', sizeof(nulls));
	refuse_if_replicated();	/* also for a trigger fired by a write made here */
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

	run_kept(kept_plan(&plan,
					   "INSERT INTO " PG_SCHEMA ".history (db_role, app_user, action, patron_id, "
					   "from_group, to_group, reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
					   8, types),
			 values, nulls, false, SPI_OK_INSERT);
}

/* Append one history row about a patron, with the reason given. */
void
record_history_reason(const char *action, int64 patron, bool from_null, int64 from,
					  bool to_null, int64 to, const char *reason, const char *detail)
{
	insert_history(action, false, patron, from_null, from, to_null, to, reason, detail);
}

/* Append one history row about a patron, with the running operation's reason. */
void
record_history(const char *action, int64 patron, bool from_null, int64 from,
			   bool to_null, int64 to, const char *detail)
{
	insert_history(action, false, patron, from_null, from, to_null, to, hist_reason, detail);
}

/*
 * Append one history row about a group rather than a patron (its label, its
 * limits): the group in to_group, NULL for the default of every group.
 */
void
record_group_event(const char *action, bool group_null, int64 group, const char *reason,
				   const char *detail)
{
	insert_history(action, true, 0, true, 0, group_null, group, reason, detail);
}

/* history_guard: refuse to change or remove history rows. */
Datum
pg_history_guard(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("history_guard: not called by trigger manager")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("patron_group.history is append-only"),
			 errdetail("Membership history cannot be changed or removed.")));
	PG_RETURN_NULL();
}
