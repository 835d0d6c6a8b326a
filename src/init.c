/*
 * init.c
 *		The top of the module: loading it defines its setting, installs the
 *		guard's hooks, and registers the transaction callbacks that end, in
 *		each layer, what lasts one transaction.  Nothing calls into this file.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/guc.h"

#include "patron_group.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* End what lasts one transaction, however it ends. */
static void
patron_group_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			recount_before_commit();
			break;
		case XACT_EVENT_COMMIT:
			/* every plan this transaction ran has been released */
			free_retired_sql_plans();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* their memory went with TopTransactionContext */
			recount_reset();
			history_context_clear();
			identity_reset();	/* the asserted patron lasts one transaction */
			break;
		default:
			break;
	}
}

/* A rolled-back subtransaction takes its history context and identity with it. */
static void
patron_group_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		history_context_clear();
	if (event == SUBXACT_EVENT_ABORT_SUB || event == SUBXACT_EVENT_COMMIT_SUB)
		identity_subxact_end(event == SUBXACT_EVENT_COMMIT_SUB, mySubid, parentSubid);
}

/* Module load: settings and callbacks. */
void
_PG_init(void)
{
	DefineCustomStringVariable("patron_group.application_user",
							   "Staff user of the library system, recorded in the history.",
							   "The database role is always recorded too; this adds the "
							   "application's own login name, which the database cannot know.",
							   &application_user,
							   NULL,
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("patron_group");
	RegisterXactCallback(patron_group_xact_callback, NULL);
	guard_init();
	RegisterSubXactCallback(patron_group_subxact_callback, NULL);
}

