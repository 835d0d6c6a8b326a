/*
 * deltas.c
 *		The one writer of account and group totals.
 *
 * The totals triggers (totals.c) turn a statement into one delta per patron
 * (or per transaction, for money naming one), summed here in C: a small
 * array searched linearly for the usual statement of one patron or a few, a
 * hash table for a bulk statement.  apply_deltas() then writes them in the
 * lock order (locks.c): the account rows, in patron_id order, each UPDATE
 * returning the patron's current group (the row lock makes a concurrent move
 * wait for us, or us for it, and READ COMMITTED then sees the group the move
 * left), then the group rows, in group_id order.  direct.c does this
 * through the table access method whenever nothing but the figures concerns
 * such an update; otherwise a statement that concerns one patron takes two
 * single-row UPDATEs with scalar parameters, the second only for a member of
 * a group.
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

/* Numeric zero, made once per backend. */
static Numeric
numeric_zero(void)
{
	static Numeric zero = NULL;

	if (zero == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		zero = int64_to_numeric(0);
		MemoryContextSwitchTo(old);
	}
	return zero;
}

/* Is a delta amount (NULL: zero) other than zero? */
static bool
numeric_nonzero(Numeric n)
{
	return n != NULL &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(numeric_zero()))) != 0;
}

/* Start an empty set of deltas, in a memory context of its own. */
void
deltas_init(DeltaSet *set, const char *name)
{
	memset(set, 0, sizeof(*set));
	set->cxt = AllocSetContextCreate(CurrentMemoryContext, "patron_group deltas", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSetIdentifier(set->cxt, name);	/* a string constant of the caller's */
}

/* Free a set of deltas. */
void
deltas_free(DeltaSet *set)
{
	MemoryContextDelete(set->cxt);
	set->cxt = NULL;
}

/* The delta of a patron (or transaction), added when missing. */
PatronDelta *
delta_for(DeltaSet *set, int64 patron)
{
	PatronDelta *d;
	bool		found;

	Assert(set->cxt != NULL);

	if (set->hash == NULL)
	{
		HASHCTL		ctl;

		for (int i = 0; i < set->n; i++)
			if (set->small[i].patron == patron)
				return &set->small[i];
		if (set->n < DELTA_ARRAY_SIZE)
		{
			d = &set->small[set->n++];
			memset(d, 0, sizeof(PatronDelta));
			d->patron = patron;
			return d;
		}
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(PatronDelta);
		ctl.hcxt = set->cxt;
		set->hash = hash_create("patron_group deltas", 1024, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < set->n; i++)
		{
			d = hash_search(set->hash, &set->small[i].patron, HASH_ENTER, NULL);
			memcpy(d, &set->small[i], sizeof(PatronDelta));
		}
	}
	d = hash_search(set->hash, &patron, HASH_ENTER, &found);
	if (!found)
	{
		memset(d, 0, sizeof(PatronDelta));
		d->patron = patron;
	}
	return d;
}

/*
 * *sum += value (or -= when negate), reusing *sum's buffer when it fits, so
 * that a million-row statement does not pile up garbage.
 */
void
delta_add_amount(DeltaSet *set, Numeric *sum, Size *room, Datum value, bool negate)
{
	Numeric		base = *sum ? *sum : numeric_zero();
	Numeric		r;
	Size		len;

	r = negate ? numeric_sub_opt_error(base, DatumGetNumeric(value), NULL)
		: numeric_add_opt_error(base, DatumGetNumeric(value), NULL);
	len = VARSIZE(r);
	if (len > *room)
	{
		if (*sum)
			pfree(*sum);
		*room = Max(len, 32);
		*sum = MemoryContextAlloc(set->cxt, *room);
	}
	memcpy(*sum, r, len);
}

/* d += from (or -= when negate); d belongs to set. */
void
delta_add(DeltaSet *set, PatronDelta *d, const PatronDelta *from, bool negate)
{
	for (int c = 0; c < N_COUNTS; c++)
		d->count[c] += negate ? -from->count[c] : from->count[c];
	for (int a = 0; a < N_AMOUNTS; a++)
		if (from->amount[a])
			delta_add_amount(set, &d->amount[a], &d->room[a], NumericGetDatum(from->amount[a]), negate);
}

/*
 * d += the figures of a row (or -= when negate): N_FIGURES values in
 * figure order, counts as int4 (a mapping view's row) or int8 (a sum), a
 * NULL value meaning zero.
 */
void
delta_add_values(DeltaSet *set, PatronDelta *d, const Datum *values, const bool *isnull,
				 bool counts_int8, bool negate)
{
	for (int c = 0; c < N_COUNTS; c++)
		if (!isnull[c])
		{
			int64		v = counts_int8 ? DatumGetInt64(values[c]) : DatumGetInt32(values[c]);

			d->count[c] += negate ? -v : v;
		}
	for (int a = 0; a < N_AMOUNTS; a++)
		if (!isnull[N_COUNTS + a])
			delta_add_amount(set, &d->amount[a], &d->room[a], values[N_COUNTS + a], negate);
}

/* Does a delta change anything? */
static bool
delta_nonzero(const PatronDelta *d)
{
	for (int c = 0; c < N_COUNTS; c++)
		if (d->count[c] != 0)
			return true;
	for (int a = 0; a < N_AMOUNTS; a++)
		if (numeric_nonzero(d->amount[a]))
			return true;
	return false;
}

/* qsort comparator of PatronDelta pointers, by patron. */
int
compare_deltas(const void *a, const void *b)
{
	int64		x = (*(PatronDelta *const *) a)->patron;
	int64		y = (*(PatronDelta *const *) b)->patron;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The deltas that are not zero, sorted by patron (the lock order).  An
 * UPDATE that changes nothing that counts nets to zero and yields none.
 */
PatronDelta **
nonzero_deltas(DeltaSet *set, int *count)
{
	int			total = set->hash ? (int) hash_get_num_entries(set->hash) : set->n;
	PatronDelta **out = palloc(sizeof(PatronDelta *) * Max(total, 1));
	int			n = 0;

	if (set->hash)
	{
		HASH_SEQ_STATUS status;
		PatronDelta *d;

		hash_seq_init(&status, set->hash);
		while ((d = hash_seq_search(&status)) != NULL)
			if (delta_nonzero(d))
				out[n++] = d;
	}
	else
		for (int i = 0; i < set->n; i++)
		{
			PatronDelta *d = &set->small[i];

			if (delta_nonzero(d))
				out[n++] = d;
		}
	if (n > 1)
		qsort(out, n, sizeof(PatronDelta *), compare_deltas);
	*count = n;
	return out;
}

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
	Datum		zero = NumericGetDatum(numeric_zero());

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
		args[0] = Int64GetDatum(deltas[0]->patron);
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
		Assert(i == 0 || deltas[i - 1]->patron < deltas[i]->patron);
		patrons[i] = deltas[i]->patron;
		cols[0][i] = Int64GetDatum(deltas[i]->patron);
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
		values[3 + f] = f < N_COUNTS ? Int64GetDatum(0) : NumericGetDatum(numeric_zero());
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
