/*
 * views.c
 *		The reporting views (member_summary, group_summary,
 *		membership_history) as plain SQL over the attached tables, made
 *		again whenever the attachments change.
 *
 * A reporting tool reads whole views ("every family owing more than 5") or
 * looks a patron up in one: the planner must see through them to the
 * library system's tables, their indexes and their statistics, join them
 * by hash and run them in parallel.  So the views are not calls of a
 * function per row but SQL generated from the mapping (sqlgen.c): the
 * accounts joined to the patron mapping view for the name, to the card
 * mapping view for the barcode, and to one aggregate of the overdue loans
 * per patron.  The extension's script creates them for nothing attached;
 * every write to patron_group.attachments (attach, alter, detach, a
 * restore, the owner's own) makes them again, with CREATE OR REPLACE VIEW,
 * which keeps their columns, comments, grants and security_invoker.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/inval.h"
#include "utils/rel.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_attachments_changed);

/* Make the reporting views again from the mapping, as the extension owner. */
static void
make_reporting_views(void)
{
	const Mapping *m = get_mapping();
	OwnerContext oc;

	/*
	 * The update to 1.2 has the library write the views, before the update
	 * to 1.3 makes the consent rule's function that they call; that update
	 * has them written again when it has.
	 */
	if (creating_extension &&
		!OidIsValid(LookupFuncName(list_make2(makeString(PG_SCHEMA), makeString("consent_in_force")), 2,
								   (Oid[]) {BOOLOID, TIMESTAMPTZOID}, true)))
		return;
	become_extension_owner(&oc);
	spi_exec(psprintf("CREATE OR REPLACE VIEW " PG_SCHEMA ".member_summary WITH (security_invoker = true) AS %s",
					  member_summary_sql(m)));
	spi_exec(psprintf("CREATE OR REPLACE VIEW " PG_SCHEMA ".group_summary WITH (security_invoker = true) AS %s",
					  group_summary_sql(m)));
	spi_exec(psprintf("CREATE OR REPLACE VIEW " PG_SCHEMA ".membership_history WITH (security_invoker = true) AS %s",
					  membership_history_sql(m)));
	restore_user(&oc);
}

/*
 * attachments_changed: AFTER INSERT, UPDATE, DELETE or TRUNCATE on
 * patron_group.attachments, for each statement.  Every backend forgets its
 * cached mapping (and the expressions compiled from it) when this
 * transaction commits, and this one at once, whoever wrote the rows (the
 * extension or its owner directly); the reporting views follow the new
 * mapping.
 */
Datum
pg_attachments_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = trigger_data(fcinfo, "attachments_changed", true);

	CacheInvalidateRelcacheByRelid(RelationGetRelid(td->tg_relation));
	mapping_changed();
	SPI_connect();
	make_reporting_views();
	SPI_finish();
	return PointerGetDatum(NULL);
}
