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
 * left), then the group rows, in group_id order.  A statement that concerns
 * one patron takes two single-row UPDATEs with scalar parameters, the second
 * only for a member of a group.
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
	d->out += negate ? -from->out : from->out;
	d->lost += negate ? -from->lost : from->lost;
	if (from->billed)
		delta_add_amount(set, &d->billed, &d->billed_room, NumericGetDatum(from->billed), negate);
	if (from->paid)
		delta_add_amount(set, &d->paid, &d->paid_room, NumericGetDatum(from->paid), negate);
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
			if (d->out != 0 || d->lost != 0 || numeric_nonzero(d->billed) || numeric_nonzero(d->paid))
				out[n++] = d;
	}
	else
		for (int i = 0; i < set->n; i++)
		{
			PatronDelta *d = &set->small[i];

			if (d->out != 0 || d->lost != 0 || numeric_nonzero(d->billed) || numeric_nonzero(d->paid))
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

/*
 * The common case, a statement that concerns one patron (a checkout, a
 * payment): two single-row UPDATEs with scalar parameters, account then
 * group.  Lock order needs no sorting with one row of each.  args holds the
 * patron, items out, items lost, billed and paid.
 */
static void
apply_one_delta(Datum *args)
{
	static SPIPlanPtr account_plan = NULL;
	static SPIPlanPtr group_plan = NULL;
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, NUMERICOID, NUMERICOID};
	bool		isnull;

	run_kept(kept_plan(&account_plan,
					   "UPDATE " PG_SCHEMA ".accounts SET "
					   "items_out = items_out OPERATOR(pg_catalog.+) $2, "
					   "items_lost = items_lost OPERATOR(pg_catalog.+) $3, "
					   "amount_billed = amount_billed OPERATOR(pg_catalog.+) $4, "
					   "amount_paid = amount_paid OPERATOR(pg_catalog.+) $5 "
					   "WHERE patron_id OPERATOR(pg_catalog.=) $1 RETURNING group_id",
					   5, types),
			 args, NULL, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		return;					/* not a patron of the attached table */
	args[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return;					/* not in a group */
	run_kept(kept_plan(&group_plan,
					   "UPDATE " PG_SCHEMA ".groups SET "
					   "items_out = items_out OPERATOR(pg_catalog.+) $2, "
					   "items_lost = items_lost OPERATOR(pg_catalog.+) $3, "
					   "amount_billed = amount_billed OPERATOR(pg_catalog.+) $4, "
					   "amount_paid = amount_paid OPERATOR(pg_catalog.+) $5 "
					   "WHERE group_id OPERATOR(pg_catalog.=) $1",
					   5, types),
			 args, NULL, false, SPI_OK_UPDATE);
}

/*
 * Apply deltas given as five arrays (patron ids sorted ascending, items out,
 * items lost, billed, paid) to accounts and then groups, in the lock order.
 */
static void
apply_many_deltas(Datum *args, const int64 *patrons, int n)
{
	static SPIPlanPtr accounts_plan = NULL;
	static SPIPlanPtr groups_plan = NULL;
	Oid			types[5] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, NUMERICARRAYOID, NUMERICARRAYOID};
	uint64		ngroups;
	int64	   *groups;
	Datum	   *cols[5];

	(void) lock_accounts(patrons, n, NULL);
	run_kept(kept_plan(&accounts_plan,
					   "WITH d AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
					   "pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5)) AS d(p, o, l, b, y)), "
					   "u AS (UPDATE " PG_SCHEMA ".accounts a SET "
					   "items_out = a.items_out OPERATOR(pg_catalog.+) d.o, "
					   "items_lost = a.items_lost OPERATOR(pg_catalog.+) d.l, "
					   "amount_billed = a.amount_billed OPERATOR(pg_catalog.+) d.b, "
					   "amount_paid = a.amount_paid OPERATOR(pg_catalog.+) d.y "
					   "FROM d WHERE a.patron_id OPERATOR(pg_catalog.=) d.p "
					   "RETURNING a.group_id, d.o, d.l, d.b, d.y) "
					   "SELECT u.group_id, pg_catalog.sum(u.o)::pg_catalog.int8, pg_catalog.sum(u.l)::pg_catalog.int8, "
					   "pg_catalog.sum(u.b), pg_catalog.sum(u.y) FROM u WHERE u.group_id IS NOT NULL "
					   "GROUP BY u.group_id ORDER BY u.group_id",
					   5, types),
			 args, NULL, false, SPI_OK_SELECT);

	ngroups = SPI_processed;
	if (ngroups == 0)
		return;
	/* the per-group sums, in group_id order, as five arrays again */
	groups = palloc(sizeof(int64) * ngroups);
	for (int c = 0; c < 5; c++)
		cols[c] = palloc(sizeof(Datum) * ngroups);
	for (uint64 r = 0; r < ngroups; r++)
	{
		bool		isnull;

		for (int c = 0; c < 5; c++)
			cols[c][r] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1, &isnull);
		groups[r] = DatumGetInt64(cols[0][r]);
	}
	args[0] = make_array(cols[0], (int) ngroups, INT8OID);
	args[1] = make_array(cols[1], (int) ngroups, INT8OID);
	args[2] = make_array(cols[2], (int) ngroups, INT8OID);
	args[3] = make_array(cols[3], (int) ngroups, NUMERICOID);
	args[4] = make_array(cols[4], (int) ngroups, NUMERICOID);
	if (ngroups > 1)
		lock_groups(groups, (int) ngroups);
	run_kept(kept_plan(&groups_plan,
					   "UPDATE " PG_SCHEMA ".groups g SET "
					   "items_out = g.items_out OPERATOR(pg_catalog.+) d.o, "
					   "items_lost = g.items_lost OPERATOR(pg_catalog.+) d.l, "
					   "amount_billed = g.amount_billed OPERATOR(pg_catalog.+) d.b, "
					   "amount_paid = g.amount_paid OPERATOR(pg_catalog.+) d.y "
					   "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
					   "pg_catalog.unnest($4), pg_catalog.unnest($5)) AS d(g, o, l, b, y) "
					   "WHERE g.group_id OPERATOR(pg_catalog.=) d.g",
					   5, types),
			 args, NULL, false, SPI_OK_UPDATE);
}

/*
 * Apply deltas sorted by patron (nonzero_deltas() sorts them) to accounts
 * and groups.  The caller is connected to SPI and runs as the extension
 * owner.
 */
void
apply_deltas(PatronDelta **deltas, int n)
{
	Datum		args[5];
	Datum		zero = NumericGetDatum(numeric_zero());
	Datum	   *cols[5];
	int64	   *patrons;

	if (n == 0)
		return;
	refuse_if_replicated();
	if (n == 1)
	{
		args[0] = Int64GetDatum(deltas[0]->patron);
		args[1] = Int64GetDatum(deltas[0]->out);
		args[2] = Int64GetDatum(deltas[0]->lost);
		args[3] = deltas[0]->billed ? NumericGetDatum(deltas[0]->billed) : zero;
		args[4] = deltas[0]->paid ? NumericGetDatum(deltas[0]->paid) : zero;
		apply_one_delta(args);
		return;
	}
	patrons = palloc(sizeof(int64) * n);
	for (int c = 0; c < 5; c++)
		cols[c] = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		/* the lock order: nonzero_deltas() sorted them, one per patron */
		Assert(i == 0 || deltas[i - 1]->patron < deltas[i]->patron);
		patrons[i] = deltas[i]->patron;
		cols[0][i] = Int64GetDatum(deltas[i]->patron);
		cols[1][i] = Int64GetDatum(deltas[i]->out);
		cols[2][i] = Int64GetDatum(deltas[i]->lost);
		cols[3][i] = deltas[i]->billed ? NumericGetDatum(deltas[i]->billed) : zero;
		cols[4][i] = deltas[i]->paid ? NumericGetDatum(deltas[i]->paid) : zero;
	}
	args[0] = make_array(cols[0], n, INT8OID);
	args[1] = make_array(cols[1], n, INT8OID);
	args[2] = make_array(cols[2], n, INT8OID);
	args[3] = make_array(cols[3], n, NUMERICOID);
	args[4] = make_array(cols[4], n, NUMERICOID);
	apply_many_deltas(args, patrons, n);
}

#define GROUP_ADJUST_SQL \
	"UPDATE " PG_SCHEMA ".groups SET member_count = member_count OPERATOR(pg_catalog.+) $2, " \
	"lead_count = lead_count OPERATOR(pg_catalog.+) $3, " \
	"items_out = items_out OPERATOR(pg_catalog.+) $4, " \
	"items_lost = items_lost OPERATOR(pg_catalog.+) $5, " \
	"amount_billed = amount_billed OPERATOR(pg_catalog.+) $6, " \
	"amount_paid = amount_paid OPERATOR(pg_catalog.+) $7 " \
	"WHERE group_id OPERATOR(pg_catalog.=) $1 RETURNING member_count"

static SPIPlanPtr group_adjust_plan = NULL;

/*
 * Add a member (sign 1) or take one away (sign -1) from a group's counts
 * and totals, carrying the member's totals; remove the group once it is
 * empty.  The caller holds the account's and the group's locks.
 */
void
adjust_group(int64 group_id, int sign, bool lead, int64 items_out, int64 items_lost,
			 Datum billed, Datum paid)
{
	static SPIPlanPtr drop_plan = NULL;
	Oid			types[7] = {INT8OID, INT4OID, INT4OID, INT8OID, INT8OID, NUMERICOID, NUMERICOID};
	Datum		values[7];
	bool		isnull;

	values[0] = Int64GetDatum(group_id);
	values[1] = Int32GetDatum(sign);
	values[2] = Int32GetDatum(lead ? sign : 0);
	values[3] = Int64GetDatum(sign * items_out);
	values[4] = Int64GetDatum(sign * items_lost);
	values[5] = sign > 0 ? billed : DirectFunctionCall1(numeric_uminus, billed);
	values[6] = sign > 0 ? paid : DirectFunctionCall1(numeric_uminus, paid);
	run_kept(kept_plan(&group_adjust_plan, GROUP_ADJUST_SQL, 7, types),
			 values, NULL, false, SPI_OK_UPDATE_RETURNING);
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
	Datum		zero = NumericGetDatum(numeric_zero());
	Oid			types[7] = {INT8OID, INT4OID, INT4OID, INT8OID, INT8OID, NUMERICOID, NUMERICOID};

	/* no member added or taken, no totals moved */
	Datum		values[7] = {Int64GetDatum(group_id), Int32GetDatum(0), Int32GetDatum(leads),
	Int64GetDatum(0), Int64GetDatum(0), zero, zero};

	run_kept(kept_plan(&group_adjust_plan, GROUP_ADJUST_SQL, 7, types),
			 values, NULL, false, SPI_OK_UPDATE_RETURNING);
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
