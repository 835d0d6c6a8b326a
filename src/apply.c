/*
 * apply.c
 *		The one writer of account and group totals.
 *
 * apply_deltas() writes a statement's deltas (deltas.c) in the lock order
 * (locks.c): the account rows, in patron_id order, each update returning the
 * patron's current group (the row lock makes a concurrent move wait for us,
 * or us for it, and READ COMMITTED then sees the group the move left), then
 * the group rows, in group_id order.  direct.c does this through the table
 * access method whenever nothing but the figures concerns such an update;
 * otherwise a statement that concerns one patron takes two single-row
 * UPDATEs with scalar parameters, the second only for a member of a group.
 *
 * The other writers of totals come here too: a patron who joins or leaves a
 * group carries their totals from one group to the other (adjust_group, from
 * the accounts trigger), and a recount (write_recount, from recount.c) sets
 * them to what the attached tables hold.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "patron_group.h"

/* An array Datum of n Datums of a type. */
static Datum
make_array(Datum *d, int n, Oid type)
{
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_array(d, n, type, len, byval, align));
}

/* The types of the figures, as parameters: counts int8, amounts numeric (array types when many). */
static void
figure_types(Oid *types, bool arrays)
{
	for (int f = 0; f < N_FIGURES; f++)
		types[f] = f < N_COUNTS ? (arrays ? INT8ARRAYOID : INT8OID) : (arrays ? NUMERICARRAYOID : NUMERICOID);
}

/* A delta's figures as parameter values (an amount that is NULL is zero). */
static void
delta_values(const PatronDelta *d, Datum *values)
{
	Datum		zero = NumericGetDatum(zero_amount());

	for (int c = 0; c < N_COUNTS; c++)
		values[c] = Int64GetDatum(d->count[c]);
	for (int a = 0; a < N_AMOUNTS; a++)
		values[N_COUNTS + a] = d->amount[a] ? NumericGetDatum(d->amount[a]) : zero;
}

/*
 * The common case, a statement that concerns one patron (a checkout, a
 * payment): two single-row UPDATEs with scalar parameters, account then
 * group.  Lock order needs no sorting with one row of each.  args holds the
 * patron, then the figures.
 */
static void
apply_one_delta(Datum *args)
{
	static SPIPlanPtr account_plan = NULL;
	static SPIPlanPtr group_plan = NULL;
	Oid			types[1 + N_FIGURES];
	bool		isnull;

	types[0] = INT8OID;
	figure_types(types + 1, false);
	if (account_plan == NULL)
	{
		(void) kept_plan(&account_plan, apply_one_sql("accounts", "patron_id", true), 1 + N_FIGURES, types);
		(void) kept_plan(&group_plan, apply_one_sql("groups", "group_id", false), 1 + N_FIGURES, types);
	}
	run_kept(account_plan, args, NULL, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		return;					/* not a patron of the attached table */
	args[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;					/* not in a group */
	run_kept(group_plan, args, NULL, false, SPI_OK_UPDATE);
}

/*
 * Apply deltas given as arrays (patron ids sorted ascending, then each
 * figure) to accounts and then groups, in the lock order.
 */
static void
apply_many_deltas(Datum *args, const int64 *patrons, int n)
{
	static SPIPlanPtr accounts_plan = NULL;
	static SPIPlanPtr groups_plan = NULL;
	Oid			types[1 + N_FIGURES];
	uint64		ngroups;
	int64	   *groups;
	Datum	   *cols[1 + N_FIGURES];

	types[0] = INT8ARRAYOID;
	figure_types(types + 1, true);
	if (accounts_plan == NULL)
	{
		(void) kept_plan(&accounts_plan, apply_many_accounts_sql(), 1 + N_FIGURES, types);
		(void) kept_plan(&groups_plan, apply_many_groups_sql(), 1 + N_FIGURES, types);
	}
	(void) lock_accounts(patrons, n, NULL);
	run_kept(accounts_plan, args, NULL, false, SPI_OK_SELECT);

	ngroups = SPI_processed;
	if (ngroups == 0)
		return;
	/* the per-group sums, in group_id order, as arrays again */
	groups = palloc(sizeof(int64) * ngroups);
	for (int c = 0; c < 1 + N_FIGURES; c++)
		cols[c] = palloc(sizeof(Datum) * ngroups);
	for (uint64 r = 0; r < ngroups; r++)
	{
		bool		isnull;

		for (int c = 0; c < 1 + N_FIGURES; c++)
			cols[c][r] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &isnull);
		groups[r] = DatumGetInt64(cols[0][r]);
	}
	for (int c = 0; c < 1 + N_FIGURES; c++)
		args[c] = make_array(cols[c], (int) ngroups, c <= N_COUNTS ? INT8OID : NUMERICOID);
	if (ngroups > 1)
		lock_groups(groups, (int) ngroups);
	run_kept(groups_plan, args, NULL, false, SPI_OK_UPDATE);
}

/* The deltas through SQL: the caller is connected to SPI as the extension owner. */
static void
apply_deltas_sql(PatronDelta **deltas, int n)
{
	Datum		args[1 + N_FIGURES];
	Datum	   *cols[1 + N_FIGURES];
	int64	   *patrons;

	if (n == 1)
	{
		args[0] = Int64GetDatum(deltas[0]->key);
		delta_values(deltas[0], args + 1);
		apply_one_delta(args);
		return;
	}
	patrons = palloc(sizeof(int64) * n);
	for (int c = 0; c < 1 + N_FIGURES; c++)
		cols[c] = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		Datum		v[N_FIGURES];

		/* the lock order: nonzero_deltas() sorted them, one per patron */
		Assert(i == 0 || deltas[i - 1]->key < deltas[i]->key);
		patrons[i] = deltas[i]->key;
		cols[0][i] = Int64GetDatum(deltas[i]->key);
		delta_values(deltas[i], v);
		for (int f = 0; f < N_FIGURES; f++)
			cols[1 + f][i] = v[f];
	}
	for (int c = 0; c < 1 + N_FIGURES; c++)
		args[c] = make_array(cols[c], n, c <= N_COUNTS ? INT8OID : NUMERICOID);
	apply_many_deltas(args, patrons, n);
}

/*
 * Apply deltas sorted by patron (nonzero_deltas() sorts them) to accounts
 * and groups: directly (direct.c) when nothing but the figures concerns
 * the update, which needs neither SPI nor the owner; otherwise through SQL,
 * connected to SPI (a level of its own when the caller already is) as the
 * extension owner.
 */
void
apply_deltas(PatronDelta **deltas, int n)
{
	OwnerContext oc;

	if (n == 0 || direct_apply(deltas, n))
		return;
	refuse_if_replicated();
	SPI_connect();
	become_extension_owner(&oc);
	apply_deltas_sql(deltas, n);
	restore_user(&oc);
	SPI_finish();
}

static SPIPlanPtr group_adjust_plan = NULL;

/* The kept plan that adds a member, a lead and figures to a group. */
static SPIPlanPtr
group_adjust(void)
{
	Oid			types[3 + N_FIGURES] = {INT8OID, INT4OID, INT4OID};

	figure_types(types + 3, false);
	return kept_plan(&group_adjust_plan, adjust_group_sql(), 3 + N_FIGURES, types);
}

/*
 * Add a member (sign 1) or take one away (sign -1) from a group's counts
 * and totals, carrying the member's figures (counts int8, amounts numeric,
 * in figure order); remove the group once it is empty.  The caller holds
 * the account's and the group's locks.
 */
void
adjust_group(int64 group_id, int sign, bool lead, const Datum *figures)
{
	static SPIPlanPtr drop_plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		values[3 + N_FIGURES];
	bool		isnull;

	values[0] = Int64GetDatum(group_id);
	values[1] = Int32GetDatum(sign);
	values[2] = Int32GetDatum(lead ? sign : 0);
	for (int f = 0; f < N_FIGURES; f++)
		values[3 + f] = f < N_COUNTS ? Int64GetDatum(sign * DatumGetInt64(figures[f])) :
			(sign > 0 ? figures[f] : DirectFunctionCall1(numeric_uminus, figures[f]));
	run_kept(group_adjust(), values, NULL, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "group " INT64_FORMAT " vanished", group_id);
	if (DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) == 0)
		run_kept(kept_plan(&drop_plan,
						   "DELETE FROM " PG_SCHEMA ".groups WHERE group_id OPERATOR(pg_catalog.=) $1",
						   1, types),
				 values, NULL, false, SPI_OK_DELETE);
}

/* Change a group's lead count alone. */
void
adjust_leads(int64 group_id, int leads)
{
	Datum		values[3 + N_FIGURES];

	/* no member added or taken, no totals moved */
	values[0] = Int64GetDatum(group_id);
	values[1] = Int32GetDatum(0);
	values[2] = Int32GetDatum(leads);
	for (int f = 0; f < N_FIGURES; f++)
		values[3 + f] = f < N_COUNTS ? Int64GetDatum(0) : NumericGetDatum(zero_amount());
	run_kept(group_adjust(), values, NULL, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "group " INT64_FORMAT " vanished", group_id);
}

/*
 * Set the totals of the patrons in patron_ids (NULL: all) to what
 * expected_sql (expected_totals_sql(), filtered by $1 when patron_ids is
 * given) counts, then those patrons' groups to the sums of their members.
 * Returns the number of account and group rows that were wrong.  The caller
 * holds the locks (recount.c) and runs as the extension owner.
 */
uint64
write_recount(const char *expected_sql, ArrayType *patron_ids)
{
	bool		filtered = patron_ids != NULL;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {PointerGetDatum(patron_ids)};
	uint64		fixed;

	run_sql(recount_accounts_sql(expected_sql, filtered), filtered ? 1 : 0, types, values, NULL,
			false, SPI_OK_UPDATE);
	fixed = SPI_processed;
	run_sql(recount_groups_sql(filtered), filtered ? 1 : 0, types, values, NULL, false, SPI_OK_UPDATE);
	return fixed + SPI_processed;
}
