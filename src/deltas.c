/*
 * deltas.c
 *		The changes of totals a statement makes, summed per patron (or per
 *		transaction, or per group) in C before anything is written.
 *
 * The totals triggers (totals.c) turn a statement into one delta per patron
 * (or per transaction, for money naming one): a small array searched
 * linearly for the usual statement of one patron or a few, a hash table for
 * a bulk statement.  nonzero_deltas() hands them over sorted by key, the
 * lock order; apply.c writes them.
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

/* Numeric zero, made once per backend (the amounts' NULL means it). */
Numeric
zero_amount(void)
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
										  NumericGetDatum(zero_amount()))) != 0;
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
delta_for(DeltaSet *set, int64 key)
{
	PatronDelta *d;
	bool		found;

	Assert(set->cxt != NULL);

	if (set->hash == NULL)
	{
		HASHCTL		ctl;

		for (int i = 0; i < set->n; i++)
			if (set->small[i].key == key)
				return &set->small[i];
		if (set->n < DELTA_ARRAY_SIZE)
		{
			d = &set->small[set->n++];
			memset(d, 0, sizeof(PatronDelta));
			d->key = key;
			return d;
		}
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(PatronDelta);
		ctl.hcxt = set->cxt;
		set->hash = hash_create("patron_group deltas", 1024, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < set->n; i++)
		{
			d = hash_search(set->hash, &set->small[i].key, HASH_ENTER, NULL);
			memcpy(d, &set->small[i], sizeof(PatronDelta));
		}
	}
	d = hash_search(set->hash, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset(d, 0, sizeof(PatronDelta));
		d->key = key;
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
	Numeric		base = *sum ? *sum : zero_amount();
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
	int64		x = (*(PatronDelta *const *) a)->key;
	int64		y = (*(PatronDelta *const *) b)->key;

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

