/*
 * barcode_core.h
 *		The barcode normalizer without PostgreSQL: ICU only, so that it can be
 *		fuzzed and tested on its own.
 */
#ifndef BARCODE_CORE_H
#define BARCODE_CORE_H

#include <stdint.h>

/*
 * Normalize a UTF-8 barcode: NFKC case folding, then drop white space,
 * control, format and default-ignorable characters.  Returns a malloc'd,
 * NUL-terminated UTF-8 string and its length in *outlen, or NULL with
 * *icu_error set to the ICU error code (see barcode_error_name()).
 */
extern char *barcode_normalize(const char *in, int32_t inlen, int32_t *outlen,
							   int *icu_error);

/* The ICU name of an error code returned by barcode_normalize(). */
extern const char *barcode_error_name(int icu_error);

#endif							/* BARCODE_CORE_H */
