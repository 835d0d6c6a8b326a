/*
 * patron_group.h
 *		Declarations shared by the patron_group C files.
 */
#ifndef PATRON_GROUP_H
#define PATRON_GROUP_H

#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "nodes/primnodes.h"
#include "utils/array.h"

#define PG_SCHEMA "patron_group"

/* The version of the extension this library is for (patron_group.control). */
#define PATRON_GROUP_VERSION "1.2"

/*
 * SQL: the consent of kind (circulations, bills) of the account aliased
 * alias is in force.  Compared with the time the statement started, not the
 * transaction's: no statement that starts after a consent ends sees under it.
 */
#define CONSENT_IN_FORCE(alias, kind) \
	"(" alias ".share_" kind " AND (" alias ".share_" kind "_until IS NULL OR " \
	alias ".share_" kind "_until OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp()))"

/* The kinds of attached table. */
typedef enum MappingKind
{
	MAP_PATRONS,
	MAP_CARDS,
	MAP_CIRCULATIONS,
	MAP_MONEY
} MappingKind;

/* What attaching a table says about how to read it (mapping.c). */
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
	const char *due_column;		/* circulations */
	const char *money_kind;		/* charge, payment, signed */
	const char *amount_column;	/* money */
	bool		via;			/* money names a transaction, not a patron */
} MappingSpec;

/* The row values of a mapping: key, items out, items lost, billed, paid. */
#define MAPPING_VALUES 5

/* The patron table mapping, as read from patron_group.attachments. */
typedef struct PatronMap
{
	Oid			relid;
	char	   *relname;		/* schema-qualified, quoted */
	char	   *id_column;		/* quoted */
	char	   *barcode_column; /* quoted, or NULL */
	List	   *name_columns;	/* of quoted char * */
	List	   *clone_columns;	/* of unquoted char * */
	char	   *mapping;		/* the mapping view, qualified */
	/* the card table, when attached */
	Oid			card_relid;
	char	   *card_relname;
	char	   *card_patron_column;
	char	   *card_barcode_column;
	char	   *card_mapping;	/* its mapping view, qualified */
} PatronMap;

/* An attached circulation or money table, as read from attachments. */
typedef struct TotalsSource
{
	Oid			relid;
	char	   *relname;		/* schema-qualified, quoted */
	bool		is_money;
	char	   *patron_column;	/* quoted: the patron, or the transaction */
	char	   *money_kind;		/* charge, payment, signed */
	Oid			mapping;		/* the mapping view */
	char	   *mapping_name;	/* qualified */
	Oid			via_relid;		/* InvalidOid: patron_column names the patron */
	char	   *via_relname;
	char	   *via_id_name;	/* unquoted */
	char	   *via_patron_name;	/* unquoted */
	char	   *via_id_column;	/* quoted */
	char	   *via_patron_column;	/* quoted */
} TotalsSource;

/* Saved user and security context while running as the extension owner. */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel; /* GUC nest level of the pinned search_path */
} OwnerContext;

/* patron_group.c */
extern void become_extension_owner(OwnerContext *ctx);
extern void restore_user(OwnerContext *ctx);
extern void history_context_set(const char *action, const char *reason);
extern void history_context_clear(void);
extern const char *history_context_action(void);
extern const char *history_context_reason(void);
extern const char *history_app_user(void);
extern Oid	extension_owner(void);
extern void require_arg(FunctionCallInfo fcinfo, int argno, const char *what);
extern SPIPlanPtr kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes);

/* A kept plan together with the SQL text it was prepared from. */
typedef struct TextPlan
{
	char	   *sql;
	SPIPlanPtr	plan;
} TextPlan;
extern SPIPlanPtr kept_plan_for_text(TextPlan *slot, const char *sql, int nargs, Oid *argtypes);
extern void recount_at_commit(int64 patron);

/* accounts.c */
extern void record_group_event(const char *action, bool group_null, int64 group,
							   const char *reason, const char *detail);
extern void record_history_reason(const char *action, int64 patron, bool from_null, int64 from,
								  bool to_null, int64 to, const char *reason, const char *detail);

/* attach.c */
extern PatronMap *load_patron_map(bool missing_ok);
extern char *barcode_sql(PatronMap *map, const char *alias);
extern char *qualified_relname(Oid relid);

/* totals.c */
extern List *load_totals_sources(Oid via_relid);
extern char *expected_totals_sql(List *sources, bool filtered);
extern char *overdue_sql(List *sources, const char *patron_expr);
extern void apply_deltas_from_result(void);
extern int64 *new_open_loans(struct TriggerData *td, int *count);

/* verify.c */
extern uint64 rebuild_totals(ArrayType *patron_ids);

/* access.c */
extern void access_reset(void);
extern void access_subxact_end(bool commit, SubTransactionId mySubid,
							   SubTransactionId parentSubid);
extern bool acting_for(int64 *patron);
extern bool session_is_patron_facing(void);
extern void forget_patron_facing_cache(void);
extern bool patron_facing_about(int64 patron, int64 *viewer, const char *refusal);

/* policies.c */
extern void sync_protection(void);
extern void sync_protection_for(bool renew, List *released);
extern List *protected_by(Oid relid);
extern bool set_protected(Oid relid, bool on, bool *was);

/* guard.c */
extern void guard_init(void);

/* mapping.c */
extern Oid	create_mapping_view(MappingSpec *m);
extern void drop_mapping_view(Oid view);
extern const char *mapping_kind_name(MappingKind kind);
extern char *display_name_expr(List *name_columns, const char *id_column, const char *alias);
extern void compile_mapping(Oid viewid, Oid relid, Expr **exprs, Oid *key_type);

/* barcode.c */
extern int64 resolve_barcode_internal(PatronMap *map, text *barcode, bool missing_ok);

#endif							/* PATRON_GROUP_H */
