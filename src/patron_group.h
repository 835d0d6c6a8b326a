/*
 * patron_group.h
 *		Declarations shared by the patron_group C files, layer by layer from
 *		the bottom (module init and helpers) to the top (SQL-callable entry
 *		points, which need no declarations).  src/README.md describes the
 *		files and how a checkout flows through them.
 */
#ifndef PATRON_GROUP_H
#define PATRON_GROUP_H

#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"
#include "utils/array.h"
#include "utils/numeric.h"

#include "compat.h"

#define PG_SCHEMA "patron_group"

/* The version of the extension this library is for (patron_group.control). */
#define PATRON_GROUP_VERSION "1.3"

/* ---------------------------------------------------------------------------
 * patron_group.c: module init, running as the extension owner, helpers
 * ------------------------------------------------------------------------- */

/* Saved user, security context and search_path while running as the owner. */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel; /* GUC nest level of the pinned search_path */
} OwnerContext;

extern Oid	extension_owner(void);
extern void become_extension_owner(OwnerContext *ctx);
extern void restore_user(OwnerContext *ctx);
extern void require_arg(FunctionCallInfo fcinfo, int argno, const char *what);
extern void refuse_if_replicated(void);
extern void spi_exec(const char *sql);
extern SPIPlanPtr kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes);

extern void run_kept(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, int expect);
extern void run_sql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
					bool read_only, int expect);
extern void ils_exec(Oid relid, const char *sql, int nargs, Oid *types,
					 Datum *values, const char *nulls, bool read_only, int expect);
extern void forget_sql_plans(void);
extern void free_retired_sql_plans(void);
extern char *qualified_relname(Oid relid);
extern int	compare_int64(const void *a, const void *b);
extern Datum int8_array(const int64 *values, int n);
extern void sort_distinct_int64(int64 *values, int *n);
extern int64 int_datum_to_int64(Datum d, Oid type);
extern bool tuple_int64(HeapTuple tup, TupleDesc desc, AttrNumber attnum, int64 *value);
extern struct TriggerData *trigger_data(FunctionCallInfo fcinfo, const char *name, bool statement);

/* ---------------------------------------------------------------------------
 * history.c: the history and what its next rows say
 * ------------------------------------------------------------------------- */

extern void history_context_set(const char *action, const char *reason);
extern void history_context_clear(void);
extern const char *history_context_action(void);
extern void record_history(const char *action, int64 patron, bool from_null, int64 from,
						   bool to_null, int64 to, const char *detail);
extern void record_history_reason(const char *action, int64 patron, bool from_null, int64 from,
								  bool to_null, int64 to, const char *reason, const char *detail);
extern void record_group_event(const char *action, bool group_null, int64 group,
							   const char *reason, const char *detail);
extern const char *history_app_user(void);
extern char *application_user;

/* ---------------------------------------------------------------------------
 * mapping.c: the one reader of patron_group.attachments, and the mapping views
 * ------------------------------------------------------------------------- */

/* The kinds of attached table. */
typedef enum MappingKind
{
	MAP_PATRONS,
	MAP_CARDS,
	MAP_CIRCULATIONS,
	MAP_MONEY
} MappingKind;

/* One attached table, as patron_group.attachments records it. */
typedef struct Attachment
{
	Oid			relid;
	char	   *relname;		/* schema-qualified, quoted */
	MappingKind kind;
	bool		dropped;		/* the table, its mapping view or its via table is gone */
	char	   *id_column;		/* patrons: quoted */
	char	   *patron_column;	/* others: quoted (the patron, or the transaction) */
	char	   *barcode_column; /* patrons (optional), cards: quoted, or NULL */
	char	   *id_name;		/* the same three, unquoted */
	char	   *patron_name;
	char	   *barcode_name;
	char	   *group_name;		/* patrons: the library system's household column, unquoted, or NULL */
	char	   *lead_name;		/* patrons: its household lead column, unquoted, or NULL */
	char	   *card_id_name;	/* cards: the card's id column, unquoted, or NULL */
	char	   *primary_card_name;	/* cards: the patron table's primary card column, unquoted, or NULL */
	List	   *name_columns;	/* patrons: unquoted char * */
	List	   *clone_columns;	/* patrons: unquoted char * */
	char	   *due_column;		/* circulations: unquoted */
	char	   *money_kind;		/* money: charge, payment, signed */
	char	   *amount_column;	/* money: unquoted */
	char	   *outstanding_column; /* money: unquoted, or NULL */
	List	   *out_includes;	/* circulations: char * */
	Oid			via_relid;		/* money naming a transaction: its table */
	char	   *via_relname;
	char	   *via_id_name;	/* unquoted */
	char	   *via_patron_name;
	char	   *via_id_column;	/* quoted */
	char	   *via_patron_column;
	char	   *barcode_index;	/* qualified name, or NULL */
	bool		protected;
	Oid			mapping;		/* the mapping view */
	char	   *mapping_name;	/* qualified */
	List	   *tree;			/* the table, its children and partitions (Oids) */
	List	   *via_tree;		/* the same of the transaction table, or NIL */
} Attachment;

/* Everything attached, read once per backend until it changes. */
typedef struct Mapping
{
	List	   *all;			/* Attachment *, in relid order */
	Attachment *patrons;		/* NULL: none (or dropped) */
	Attachment *cards;
	List	   *totals;			/* circulations and money that still exist */
	uint64		generation;		/* a new number each time it is read again */
} Mapping;

/* What attaching a table says about how to read it. */
typedef struct MappingSpec
{
	MappingKind kind;
	Oid			relid;
	const char *id_column;		/* patrons */
	const char *patron_column;	/* cards, circulations, money: patron or transaction */
	const char *barcode_column; /* patrons (optional), cards */
	List	   *name_columns;	/* patrons: char * */
	const char *condition;		/* active_when, open_when, counts_when; NULL: always */
	const char *lost_condition; /* circulations; NULL: never */
	const char *claims_returned_condition;	/* circulations; NULL: never */
	const char *long_overdue_condition; /* circulations; NULL: never */
	const char *renewal_condition;	/* circulations: a new loan that renews one; NULL: never */
	List	   *out_includes;	/* circulations: the states counted as out (char *) */
	const char *deleted_condition;	/* patrons: deleted in the library system; NULL: never */
	const char *group_column;	/* patrons: the library system's household column, or NULL */
	const char *card_id_column; /* cards: the card's id, or NULL */
	const char *primary_card_column;	/* cards: the patron table's column naming the primary card */
	const char *lead_column;	/* patrons: its household lead column, or NULL */
	const char *outstanding_column; /* money: what is still owed on the row, or NULL */
	const char *due_column;		/* circulations */
	const char *money_kind;		/* charge, payment, signed */
	const char *amount_column;	/* money */
	bool		via;			/* money names a transaction, not a patron */
} MappingSpec;

/*
 * The figures kept per account and group, in the order of the mapping
 * views' columns: counts of loans (bigint in the accounts, integer per row),
 * then amounts (numeric).
 */
/* The states of an open loan counted apart from out (sqlgen.c names them). */
typedef enum LoanState
{
	LOAN_LOST,
	LOAN_CLAIMS_RETURNED,
	LOAN_LONG_OVERDUE,
	N_LOAN_STATES
} LoanState;
extern const char *const loan_states[N_LOAN_STATES];

#define N_COUNTS (1 + N_LOAN_STATES)	/* items_out, then items_<state> of each state */
#define N_AMOUNTS 3				/* amount_billed, amount_paid, balance_owed */
#define N_FIGURES (N_COUNTS + N_AMOUNTS)
#define FIGURE_OUT 0
#define FIGURE_LOST 1
#define FIGURE_BILLED N_COUNTS
#define FIGURE_PAID (N_COUNTS + 1)
#define FIGURE_OWED (N_COUNTS + 2)
extern const char *const figure_names[N_FIGURES];

/* The row values of a mapping: the key (patron or transaction), then the figures. */
#define MAPPING_VALUES (1 + N_FIGURES)

extern const Mapping *get_mapping(void);
extern uint64 mapping_generation(void);
extern const Attachment *mapping_patrons(bool missing_ok);
extern const Attachment *attachment_of(Oid relid);
extern const Attachment *attachment_covering(Oid relid);
extern List *totals_via(Oid relid);
extern List *ancestors_of(Oid relid);
extern void mapping_trees_changed(void);
extern void mapping_changed(void);
extern const char *mapping_kind_name(MappingKind kind);
extern MappingKind mapping_kind_of(const char *name);
extern Oid	create_mapping_view(MappingSpec *m);
extern void drop_mapping_view(Oid view);
extern bool dropping_mapping_view;	/* the extension itself is dropping one */
extern void replace_mapping_view(Oid old_view, Oid new_view);
extern void compile_mapping(Oid viewid, Oid relid, Oid member, Expr **exprs, Oid *key_type,
							Expr **renewal);
extern char *mapping_condition(const Attachment *a, const char *column);
extern Expr *compile_view_column(const Attachment *a, Oid member, const char *column);
extern bool patrons_deleted_when(const Attachment *a);

/* ---------------------------------------------------------------------------
 * sqlgen.c: every SQL text built from the mapping
 * ------------------------------------------------------------------------- */

/* What patron_group.ils_rows() reads of an attachment (ils_rows.c). */
typedef enum IlsSource
{
	ILS_MAPPING,				/* the mapping view's rows */
	ILS_VIA,					/* its transaction table: xact_id, patron_id */
	ILS_PRIMARY_CARD			/* its patron table: patron_id, primary_card */
} IlsSource;

extern char *ils_rows_sql(const Attachment *a, IlsSource source, const char *alias,
						  const char *by_patron, const char *by_xact);
extern char *mapping_view_sql(const MappingSpec *m, const char *relname);
extern char *display_name_sql(List *name_columns, const char *id_column, const char *alias);
extern char *expected_totals_sql(List *sources, bool filtered);
extern char *overdue_sql(List *sources, const char *patron_expr, bool as_owner);
extern char *barcode_sql(const Mapping *m, const char *alias, bool as_owner);
extern char *barcode_lookup_sql(const Mapping *m);
extern char *money_of_xacts_sql(List *sources);
extern char *violations_sql(List *sources);
extern char *payment_lines_sql(List *sources);
extern char *group_members_sql(const Mapping *m, bool as_owner);
extern char *patron_details_sql(const Mapping *m, bool as_owner);
extern char *find_patron_sql(const Mapping *m, bool as_owner);
extern char *consent_sql(const char *alias, const char *kind);

/* The statements of the library system's households (households.c). */
typedef enum HouseholdSql
{
	HH_OF_PATRON,
	HH_WRITE,
	HH_RESET,
	HH_WRITE_LEAD,
	HH_LEAD_OF_PATRON,
	HH_CHANGES,
	HH_ACCOUNT,
	HH_OTHERS,
	HH_IMPORT
} HouseholdSql;

extern char *household_sql(const Attachment *a, HouseholdSql which);
extern char *recount_accounts_sql(const char *expected_sql, bool filtered);
extern char *recount_groups_sql(bool filtered);
extern char *verify_sql(const char *expected_sql);
extern char *apply_one_sql(const char *table, const char *key, bool returning_group);
extern char *apply_many_accounts_sql(void);
extern char *apply_many_groups_sql(void);
extern char *adjust_group_sql(void);
extern char *member_summary_sql(const Mapping *m);
extern char *group_summary_sql(const Mapping *m);
extern char *membership_history_sql(const Mapping *m);

/* ---------------------------------------------------------------------------
 * locks.c: the lock order
 * ------------------------------------------------------------------------- */

extern void lock_patron_rows(const Attachment *patrons_table, const int64 *patrons, int n);
extern uint64 lock_accounts(const int64 *patrons, int n, int64 *groups);
extern void lock_groups(const int64 *groups, int n);
extern void lock_groups_of_accounts(const int64 *patrons, int n);
extern void lock_everyone(void);
extern void lock_accounts_of_xacts(Oid xact_relid, const char *resolve_sql, Datum ids);
extern void lock_limits(Datum group, bool isnull);
extern bool lock_group_key(int64 group);

/* ---------------------------------------------------------------------------
 * deltas.c: a statement's changes of totals, summed in C
 * ------------------------------------------------------------------------- */

/* One patron's, transaction's or group's change of totals. */
typedef struct PatronDelta
{
	int64		key;			/* the patron, transaction or group id; hash key */
	int64		count[N_COUNTS];
	Numeric		amount[N_AMOUNTS];	/* NULL: zero */
	Size		room[N_AMOUNTS];
} PatronDelta;

#define DELTA_ARRAY_SIZE 16

/* Deltas being summed: a small array, or a hash table for a bulk statement. */
typedef struct DeltaSet
{
	MemoryContext cxt;
	int			n;
	PatronDelta small[DELTA_ARRAY_SIZE];
	struct HTAB *hash;
} DeltaSet;

extern Numeric zero_amount(void);
extern void deltas_init(DeltaSet *set, const char *name);
extern void deltas_free(DeltaSet *set);
extern PatronDelta *delta_for(DeltaSet *set, int64 key);
extern void delta_add_amount(DeltaSet *set, Numeric *sum, Size *room, Datum value, bool negate);
extern void delta_add(DeltaSet *set, PatronDelta *d, const PatronDelta *from, bool negate);
extern void delta_add_values(DeltaSet *set, PatronDelta *d, const Datum *values, const bool *isnull,
							 bool counts_int8, bool negate);
extern PatronDelta **nonzero_deltas(DeltaSet *set, int *count);
extern int	compare_deltas(const void *a, const void *b);

/* ---------------------------------------------------------------------------
 * direct.c: the deltas written through the table access method
 * ------------------------------------------------------------------------- */

extern bool direct_apply(PatronDelta **deltas, int n);

/* ---------------------------------------------------------------------------
 * apply.c: the one writer of account and group totals
 * ------------------------------------------------------------------------- */

extern void apply_deltas(PatronDelta **deltas, int n);
extern void adjust_group(int64 group_id, int sign, bool lead, const Datum *figures);
extern void adjust_leads(int64 group_id, int leads);
extern uint64 write_recount(const char *expected_sql, ArrayType *patron_ids);

/* ---------------------------------------------------------------------------
 * triggers.c: which triggers each table needs
 * ------------------------------------------------------------------------- */

extern void sync_triggers(void);

/* ---------------------------------------------------------------------------
 * totals.c, recount.c: keeping and checking the totals
 * ------------------------------------------------------------------------- */

extern int64 *new_open_loans(struct TriggerData *td, int *count);
extern uint64 rebuild_totals(ArrayType *patron_ids);
extern void recount_at_commit(int64 patron);
extern void recount_before_commit(void);
extern void recount_reset(void);

/* ---------------------------------------------------------------------------
 * groups.c: the group operations
 * ------------------------------------------------------------------------- */

extern int64 move_patrons(int64 *movers, int n, int64 target, const char *reason);
extern void set_accounts_group(const int64 *patrons, int n, int64 group);

/* ---------------------------------------------------------------------------
 * households.c: the library system's households, both ways
 * ------------------------------------------------------------------------- */

extern void import_households(void);
extern void household_follows(int64 patron, bool grouped, int64 group, bool group_changed, bool lead);
extern void follow_households(struct TriggerData *td, const Attachment *a);

/* ---------------------------------------------------------------------------
 * identity.c, consent.c, policies.c, guard.c: lead access
 * ------------------------------------------------------------------------- */

extern void identity_reset(void);
extern void identity_subxact_end(bool commit, SubTransactionId mySubid,
								 SubTransactionId parentSubid);
extern bool acting_for(int64 *patron);
extern bool session_is_patron_facing(void);
extern void forget_patron_facing_cache(void);
extern bool patron_facing_about(int64 patron, int64 *viewer, const char *refusal);
extern void sync_protection(void);
extern void sync_protection_for(bool renew, List *released);
extern List *protected_by(Oid relid);
extern bool set_protected(Oid relid, bool on, bool *was);
extern void guard_init(void);

/* ---------------------------------------------------------------------------
 * barcode.c
 * ------------------------------------------------------------------------- */

extern int64 resolve_barcode_internal(const Mapping *m, text *barcode, bool missing_ok, bool as_owner);
extern bool reads_as_owner(void);

#endif							/* PATRON_GROUP_H */
