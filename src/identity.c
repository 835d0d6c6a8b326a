/*
 * identity.c
 *		Which patron a patron-facing session acts for.
 *
 * A patron-facing application connects with a role the DBA registered
 * (register_patron_facing, policies.c).  In such a session the patron it
 * acts for is asserted per transaction, by act_as() (for a trusted role the
 * DBA grants it to) or by a proof that the transaction holds a signed,
 * expiring token.  The asserted patron lives in backend memory and is
 * forgotten when the transaction ends, so a pooled connection never carries
 * one patron into the next transaction; a subtransaction rolled back takes
 * back what it asserted; and no SET, set_config() or RESET can touch it: it
 * is not a setting.
 *
 * Tokens are "pg1.<patron>.<expires, Unix seconds>.<HMAC-SHA256 in hex>",
 * the HMAC taken over everything before the last dot with a 32-byte secret
 * that only the extension owner can read.  issue_token() gives one to the
 * service that signs patrons in; after that the token never travels to the
 * server again.  To assert its patron, a transaction takes a nonce
 * (token_nonce(): random, of this backend and transaction, spent by its
 * first use) and sends act_as_proof(patron, expires, HMAC-SHA256(token,
 * nonce)); the extension recomputes the token from its secret and the proof
 * from the token, and compares in constant time.  What travels is useless
 * in any other transaction or session, so it may appear in the query text,
 * in pg_stat_activity or in the log, and nothing is written, so standbys and
 * transaction poolers work.
 */
#include "postgres.h"

#include <time.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/fmgrprotos.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "patron_group.h"

PG_FUNCTION_INFO_V1(pg_act_as);
PG_FUNCTION_INFO_V1(pg_act_as_token);
PG_FUNCTION_INFO_V1(pg_token_nonce);
PG_FUNCTION_INFO_V1(pg_act_as_proof);
PG_FUNCTION_INFO_V1(pg_issue_token);
PG_FUNCTION_INFO_V1(pg_rotate_token_secret);
PG_FUNCTION_INFO_V1(pg_current_patron);

#define TOKEN_PREFIX "pg1"
#define SECRET_BYTES 32
#define MAC_BYTES 32

/* The patron this transaction acts for. */
static bool acting = false;
static int64 acting_patron = 0;

/*
 * What the identity was before a subtransaction first changed it, so that
 * ROLLBACK TO SAVEPOINT takes back an assertion made after the savepoint.
 * One entry per subtransaction that changed it, innermost last; in
 * TopTransactionContext, so it goes with the transaction.
 */
typedef struct SavedIdentity
{
	SubTransactionId subid;
	bool		acting;
	int64		patron;
} SavedIdentity;

static SavedIdentity *saved = NULL;
static int	nsaved = 0;
static int	maxsaved = 0;

/*
 * The nonce this transaction took with token_nonce(), or none: random, of
 * this backend and this transaction alone, and consumed by the first
 * act_as_proof() that names it, right or wrong.
 */
#define NONCE_BYTES 16
static char nonce[2 * NONCE_BYTES + 1];
static LocalTransactionId nonce_lxid = InvalidLocalTransactionId;

/* Forget the asserted patron and the nonce: called when a transaction ends. */
void
identity_reset(void)
{
	memset(nonce, 0, sizeof(nonce));
	nonce_lxid = InvalidLocalTransactionId;
	acting = false;
	acting_patron = 0;
	saved = NULL;				/* went with TopTransactionContext */
	nsaved = maxsaved = 0;
}

/*
 * A subtransaction ends.  Aborted: the identity it set is taken back.
 * Committed: what it saved becomes its parent's, unless the parent had
 * already saved an older value.
 */
void
identity_subxact_end(bool commit, SubTransactionId mySubid, SubTransactionId parentSubid)
{
	if (nsaved == 0 || saved[nsaved - 1].subid != mySubid)
		return;
	if (!commit)
	{
		acting = saved[nsaved - 1].acting;
		acting_patron = saved[nsaved - 1].patron;
		nsaved--;
	}
	else if ((nsaved >= 2 && saved[nsaved - 2].subid == parentSubid) ||
			 parentSubid == TopSubTransactionId)
		nsaved--;				/* the parent keeps the older value, or needs none */
	else
		saved[nsaved - 1].subid = parentSubid;
}

/* Set the identity, remembering the old one for ROLLBACK TO SAVEPOINT. */
static void
set_identity(bool on, int64 patron)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	if (subid != TopSubTransactionId &&
		(nsaved == 0 || saved[nsaved - 1].subid != subid))
	{
		if (nsaved == maxsaved)
		{
			int			newmax = maxsaved ? maxsaved * 2 : 4;

			saved = saved ?
				repalloc(saved, sizeof(SavedIdentity) * newmax) :
				MemoryContextAlloc(TopTransactionContext, sizeof(SavedIdentity) * newmax);
			maxsaved = newmax;
		}
		saved[nsaved].subid = subid;
		saved[nsaved].acting = acting;
		saved[nsaved].patron = acting_patron;
		nsaved++;
	}
	acting = on;
	acting_patron = patron;
}

/* The asserted patron, or false. */
bool
acting_for(int64 *patron)
{
	if (acting)
		*patron = acting_patron;
	return acting;
}

/*
 * Is the current user one of the registered patron-facing roles (or a
 * member with its privileges)?  Superusers and roles with BYPASSRLS are
 * not: row-level security does not apply to them, and they hold the
 * privileges of every role.  The caller is connected to SPI.
 */
static Oid	facing_cache_user = InvalidOid;
static LocalTransactionId facing_cache_lxid = InvalidLocalTransactionId;
static bool facing_cache_result = false;

bool
session_is_patron_facing(void)
{
	Oid			me = GetUserId();
	OwnerContext oc;
	bool		result = false;

	/* the answer for a user is kept for the rest of the transaction */
	if (me == facing_cache_user && PG_LXID() == facing_cache_lxid)
		return facing_cache_result;
	if (superuser_arg(me) || has_bypassrls_privilege(me))
		return false;

	become_extension_owner(&oc);
	run_sql("SELECT role_name::pg_catalog.oid FROM " PG_SCHEMA ".patron_facing_roles",
			0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	restore_user(&oc);
	for (uint64 r = 0; r < SPI_processed && !result; r++)
	{
		bool		isnull;
		Oid			role = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r],
														  SPI_tuptable->tupdesc, 1, &isnull));

		result = has_privs_of_role(me, role);
	}
	facing_cache_user = me;
	facing_cache_lxid = PG_LXID();
	facing_cache_result = result;
	return result;
}

/* The registry changed: ask again. */
void
forget_patron_facing_cache(void)
{
	facing_cache_lxid = InvalidLocalTransactionId;
}

/* Fail unless the patron has an account; the caller runs as owner, in SPI. */
static void
require_account(int64 patron)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(patron)};

	run_sql("SELECT FROM " PG_SCHEMA ".accounts WHERE patron_id OPERATOR(pg_catalog.=) $1",
			1, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("patron " INT64_FORMAT " does not exist", patron)));
}

/* Start acting for a patron, for the rest of the transaction. */
static void
assert_patron(int64 patron)
{
	OwnerContext oc;

	become_extension_owner(&oc);
	SPI_connect();
	require_account(patron);
	SPI_finish();
	restore_user(&oc);
	set_identity(true, patron);
}

/* act_as(bigint): assert the patron, for roles granted this function. */
Datum
pg_act_as(PG_FUNCTION_ARGS)
{
	require_arg(fcinfo, 0, "patron_id");
	assert_patron(PG_GETARG_INT64(0));
	PG_RETURN_VOID();
}

/* The token secret, creating it when asked to and missing; NULL if none. */
static bytea *
token_secret(bool create)
{
	OwnerContext oc;
	bytea	   *secret = NULL;

	become_extension_owner(&oc);
	SPI_connect();
	/* only when there is none yet: a standby or a read-only transaction can sign with it */
	if (create)
	{
		run_sql("SELECT FROM " PG_SCHEMA ".token_secret WHERE id OPERATOR(pg_catalog.=) 1",
				0, NULL, NULL, NULL, true, SPI_OK_SELECT);
		create = (SPI_processed == 0);
	}
	if (create)
	{
		uint8		bytes[SECRET_BYTES];
		Oid			types[1] = {BYTEAOID};
		Datum		values[1];
		bytea	   *b = palloc(VARHDRSZ + SECRET_BYTES);

		if (!pg_strong_random(bytes, SECRET_BYTES))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random token secret")));
		SET_VARSIZE(b, VARHDRSZ + SECRET_BYTES);
		memcpy(VARDATA(b), bytes, SECRET_BYTES);
		values[0] = PointerGetDatum(b);
		run_sql("INSERT INTO " PG_SCHEMA ".token_secret (id, secret) VALUES (1, $1) "
				"ON CONFLICT (id) DO NOTHING",
				1, types, values, NULL, false, SPI_OK_INSERT);
	}
	run_sql("SELECT secret FROM " PG_SCHEMA ".token_secret WHERE id OPERATOR(pg_catalog.=) 1",
			0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		secret = (bytea *) SPI_datumTransfer(d, false, -1);
	}
	SPI_finish();
	restore_user(&oc);
	return secret;
}

/* HMAC-SHA256 of msg with a key, as 64 lowercase hex digits. */
static void
hmac_hex(const uint8 *key, size_t keylen, const char *msg, char *hex)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		mac[MAC_BYTES];
	bool		ok;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ok = pg_hmac_init(ctx, key, keylen) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) msg, strlen(msg)) == 0 &&
		pg_hmac_final(ctx, mac, sizeof(mac)) == 0;
	pg_hmac_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the token signature")));
	for (int i = 0; i < MAC_BYTES; i++)
		sprintf(hex + 2 * i, "%02x", mac[i]);
	hex[2 * MAC_BYTES] = '\0';
}

/* The signature of a token's body with the secret. */
static void
token_mac(bytea *secret, const char *msg, char *hex)
{
	hmac_hex((uint8 *) VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret), msg, hex);
}

/* issue_token(bigint, interval): a signed, expiring token for a patron. */
Datum
pg_issue_token(PG_FUNCTION_ARGS)
{
	int64		patron;
	Interval   *valid_for;
	TimestampTz expires;
	int64		expires_unix;
	char	   *body;
	char		hex[2 * MAC_BYTES + 1];
	OwnerContext oc;

	require_arg(fcinfo, 0, "patron_id");
	require_arg(fcinfo, 1, "valid_for");
	patron = PG_GETARG_INT64(0);
	valid_for = PG_GETARG_INTERVAL_P(1);
	expires = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													  TimestampTzGetDatum(GetCurrentTimestamp()),
													  IntervalPGetDatum(valid_for)));
	if (expires <= GetCurrentTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("valid_for must be a positive interval")));

	become_extension_owner(&oc);
	SPI_connect();
	require_account(patron);
	SPI_finish();
	restore_user(&oc);

	expires_unix = (int64) timestamptz_to_time_t(expires);
	body = psprintf(TOKEN_PREFIX "." INT64_FORMAT "." INT64_FORMAT, patron, expires_unix);
	token_mac(token_secret(true), body, hex);
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s.%s", body, hex)));
}

/* token_nonce(): a new nonce for this transaction, replacing any other. */
Datum
pg_token_nonce(PG_FUNCTION_ARGS)
{
	uint8		bytes[NONCE_BYTES];

	if (!pg_strong_random(bytes, NONCE_BYTES))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random nonce")));
	for (int i = 0; i < NONCE_BYTES; i++)
		sprintf(nonce + 2 * i, "%02x", bytes[i]);
	nonce_lxid = PG_LXID();
	PG_RETURN_TEXT_P(cstring_to_text(nonce));
}

/*
 * act_as_proof(bigint, bigint, text): act for the patron of a token that
 * this transaction proves it holds, without the token travelling: proof is
 * HMAC-SHA256 with the token as the key over the nonce token_nonce() gave
 * this transaction, in hex.  The extension recomputes the token from its
 * secret, the patron and the expiry, and the proof from the token and the
 * nonce.  A proof is worth nothing in any other transaction or session,
 * since its nonce is spent by the first attempt, so it may be logged,
 * pasted into the query text by a driver or read in pg_stat_activity.
 */
Datum
pg_act_as_proof(PG_FUNCTION_ARGS)
{
	int64		patron;
	int64		expires;
	char	   *proof;
	char		used[2 * NONCE_BYTES + 1];
	bytea	   *secret;
	char	   *token;
	char		mac[2 * MAC_BYTES + 1];
	char		expected[2 * MAC_BYTES + 1];
	bool		valid;

	require_arg(fcinfo, 0, "patron_id");
	require_arg(fcinfo, 1, "expires");
	require_arg(fcinfo, 2, "proof");
	patron = PG_GETARG_INT64(0);
	expires = PG_GETARG_INT64(1);
	proof = text_to_cstring(PG_GETARG_TEXT_PP(2));

	/* the nonce is spent now, whatever the outcome */
	if (nonce_lxid != PG_LXID() || nonce[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no patron_group nonce is outstanding in this transaction"),
				 errdetail("A proof answers the nonce that patron_group.token_nonce() returned in the same transaction, once."),
				 errhint("In one transaction: SELECT patron_group.token_nonce(); then send "
						 "SELECT patron_group.act_as_proof(patron_id, expires, proof).")));
	memcpy(used, nonce, sizeof(used));
	memset(nonce, 0, sizeof(nonce));
	nonce_lxid = InvalidLocalTransactionId;

	valid = patron > 0 && expires > 0 && strlen(proof) == 2 * MAC_BYTES;
	secret = valid ? token_secret(false) : NULL;
	if (secret != NULL)
	{
		char	   *body = psprintf(TOKEN_PREFIX "." INT64_FORMAT "." INT64_FORMAT, patron, expires);

		token_mac(secret, body, mac);
		token = psprintf("%s.%s", body, mac);
		hmac_hex((const uint8 *) token, strlen(token), used, expected);
		for (char *c = proof; *c; c++)
			*c = pg_ascii_tolower((unsigned char) *c);
		valid = timingsafe_bcmp(expected, proof, 2 * MAC_BYTES) == 0;
		explicit_bzero(token, strlen(token));
	}
	else
		valid = false;
	if (!valid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("invalid patron token proof"),
				 errdetail("The proof is HMAC-SHA256 in hex, keyed with the whole token, over the nonce of this transaction."),
				 errhint("Take a new nonce with patron_group.token_nonce(): this one is spent.")));
	if ((int64) timestamptz_to_time_t(GetCurrentTimestamp()) >= expires)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("patron token has expired"),
				 errhint("Ask the service that signs patrons in for a new token.")));
	assert_patron(patron);
	PG_RETURN_INT64(patron);
}

/*
 * act_as_token(text): withdrawn.  The token itself travelled with every
 * transaction, where other sessions of the role could read it; a proof
 * answering a nonce replaces it.
 */
Datum
pg_act_as_token(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("patron_group.act_as_token() is withdrawn: a token must not be sent to the server"),
			 errdetail("Sent tokens can be read by other sessions of the same role, in pg_stat_activity or the server log."),
			 errhint("In one transaction: SELECT patron_group.token_nonce(); then "
					 "SELECT patron_group.act_as_proof(patron_id, expires, proof) with the proof "
					 "HMAC-SHA256(key => token, message => nonce) in hex.")));
	PG_RETURN_NULL();
}

/* rotate_token_secret(): a new secret; older tokens stop working. */
Datum
pg_rotate_token_secret(PG_FUNCTION_ARGS)
{
	OwnerContext oc;

	become_extension_owner(&oc);
	SPI_connect();
	run_sql("DELETE FROM " PG_SCHEMA ".token_secret", 0, NULL, NULL, NULL, false, SPI_OK_DELETE);
	SPI_finish();
	restore_user(&oc);
	(void) token_secret(true);
	PG_RETURN_VOID();
}

/* current_patron(): the asserted patron, or NULL. */
Datum
pg_current_patron(PG_FUNCTION_ARGS)
{
	if (!acting)
		PG_RETURN_NULL();
	PG_RETURN_INT64(acting_patron);
}

/*
 * For the functions a patron-facing session may call only about the patron
 * it acts for (the member list, a payment plan): false for any other
 * session; for a patron-facing one, true with the asserted patron in
 * *viewer, or an error when none is asserted or it is another patron
 * ('refusal' says what such a session may do).  The caller is connected to
 * SPI.
 */
bool
patron_facing_about(int64 patron, int64 *viewer, const char *refusal)
{
	if (!session_is_patron_facing())
		return false;
	if (!acting_for(viewer))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("no patron is asserted in this transaction"),
				 errhint("Call patron_group.act_as_proof() (after patron_group.token_nonce()) or patron_group.act_as() first, in the same transaction.")));
	if (*viewer != patron)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s", refusal)));
	return true;
}
