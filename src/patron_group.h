/*
 * patron_group.h
 *		Declarations shared by the patron_group C files.
 */
#ifndef PATRON_GROUP_H
#define PATRON_GROUP_H

#include "fmgr.h"
#include "nodes/pg_list.h"

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

/* attach.c */
extern PatronMap *load_patron_map(bool missing_ok);
extern char *display_name_sql(PatronMap *map, const char *alias);
extern char *barcode_sql(PatronMap *map, const char *alias);
extern char *qualified_relname(Oid relid);

/* barcode.c */
extern int64 resolve_barcode_internal(PatronMap *map, text *barcode, bool missing_ok);

#endif							/* PATRON_GROUP_H */
