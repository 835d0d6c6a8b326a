/*
 * patron_group.h
 *		Declarations shared by the patron_group C files.
 */
#ifndef PATRON_GROUP_H
#define PATRON_GROUP_H

#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/array.h"

#define PG_SCHEMA "patron_group"

/* The patron table mapping, as read from patron_group.attachments. */
typedef struct PatronMap
{
	Oid			relid;
	char	   *relname;		/* schema-qualified, quoted */
	char	   *id_column;		/* quoted */
	char	   *barcode_column; /* quoted, or NULL */
	List	   *name_columns;	/* of quoted char * */
	List	   *clone_columns;	/* of unquoted char * */
	/* the card table, when attached */
	Oid			card_relid;
	char	   *card_relname;
	char	   *card_patron_column;
	char	   *card_barcode_column;
	char	   *card_condition; /* NULL or a validated boolean expression */
} PatronMap;

/* An attached circulation or money table, as read from attachments. */
typedef struct TotalsSource
{
	Oid			relid;
	char	   *relname;		/* schema-qualified, quoted */
	bool		is_money;
	char	   *patron_column;	/* quoted: the patron, or the transaction */
	char	   *due_column;		/* quoted; circulations */
	char	   *condition;		/* open_when or counts_when */
	char	   *lost_condition; /* circulations */
	char	   *money_kind;		/* charge, payment, signed */
	char	   *amount_column;	/* quoted */
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
extern void record_history_reason(const char *action, int64 patron, bool from_null, int64 from,
								  bool to_null, int64 to, const char *reason, const char *detail);

/* attach.c */
extern PatronMap *load_patron_map(bool missing_ok);
extern char *display_name_sql(PatronMap *map, const char *alias);
extern char *barcode_sql(PatronMap *map, const char *alias);
extern char *qualified_relname(Oid relid);

/* totals.c */
extern List *load_totals_sources(Oid via_relid);
extern char *expected_totals_sql(List *sources, const char *patron_filter);
extern char *overdue_sql(List *sources, const char *patron_expr);
extern void apply_deltas_from_result(void);

/* verify.c */
extern uint64 rebuild_totals(ArrayType *patron_ids);

/* access.c */
extern void access_reset(void);
extern bool acting_for(int64 *patron);
extern bool session_is_patron_facing(void);
extern bool patron_facing_about(int64 patron, int64 *viewer, const char *refusal);

/* barcode.c */
extern int64 resolve_barcode_internal(PatronMap *map, text *barcode, bool missing_ok);

#endif							/* PATRON_GROUP_H */
