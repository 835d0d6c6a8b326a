/*
 * barcode_core.c
 *		ICU core of the barcode normalizer.  This is the one file that
 *		includes ICU headers.  It never raises a PostgreSQL error: every ICU
 *		object and buffer is released before it returns, and the caller
 *		reports failures, so nothing leaks when an error is raised.
 */
#include <stdlib.h>
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include "barcode_core.h"

/* Is this code point something a barcode never contains? */
static int
is_noise(UChar32 c)
{
	switch (u_charType(c))
	{
		case U_CONTROL_CHAR:
		case U_FORMAT_CHAR:
		case U_SPACE_SEPARATOR:
		case U_LINE_SEPARATOR:
		case U_PARAGRAPH_SEPARATOR:
		case U_SURROGATE:
			return 1;
		default:
			break;
	}
	return u_isUWhiteSpace(c) ||
		u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT);
}

/* UTF-8 to a malloc'd UTF-16 buffer; NULL on error. */
static UChar *
utf8_to_utf16(const char *in, int32_t inlen, int32_t *len, UErrorCode *status)
{
	UChar	   *buf;
	int32_t		need = 0;

	u_strFromUTF8(NULL, 0, &need, in, inlen, status);
	if (*status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(*status))
		return NULL;
	*status = U_ZERO_ERROR;
	buf = malloc(((size_t) need + 1) * sizeof(UChar));
	if (buf == NULL)
	{
		*status = U_MEMORY_ALLOCATION_ERROR;
		return NULL;
	}
	u_strFromUTF8(buf, need + 1, len, in, inlen, status);
	if (U_FAILURE(*status))
	{
		free(buf);
		return NULL;
	}
	return buf;
}

/* Apply NFKC_Casefold; returns a malloc'd buffer or NULL on error. */
static UChar *
casefold(const UChar *src, int32_t srclen, int32_t *len, UErrorCode *status)
{
	const UNormalizer2 *nfkc_cf = unorm2_getNFKCCasefoldInstance(status);
	UChar	   *buf;
	int32_t		need;

	if (U_FAILURE(*status))
		return NULL;
	need = unorm2_normalize(nfkc_cf, src, srclen, NULL, 0, status);
	if (*status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(*status))
		return NULL;
	*status = U_ZERO_ERROR;
	buf = malloc(((size_t) need + 1) * sizeof(UChar));
	if (buf == NULL)
	{
		*status = U_MEMORY_ALLOCATION_ERROR;
		return NULL;
	}
	*len = unorm2_normalize(nfkc_cf, src, srclen, buf, need + 1, status);
	if (U_FAILURE(*status))
	{
		free(buf);
		return NULL;
	}
	return buf;
}

/* Drop noise characters in place; returns the new length. */
static int32_t
strip_noise(UChar *s, int32_t len)
{
	int32_t		i = 0;
	int32_t		out = 0;

	while (i < len)
	{
		int32_t		start = i;
		UChar32		c;

		U16_NEXT(s, i, len, c);
		if (!is_noise(c))
		{
			while (start < i)
				s[out++] = s[start++];
		}
	}
	return out;
}

/*
 * At most this many rounds of folding and stripping.  Two suffice for every
 * input known: a round strips what folding produced (U+00A8 DIAERESIS folds
 * to a space and a combining mark), and the next composes what the removal
 * brought together.
 */
#define MAX_ROUNDS 8

char *
barcode_normalize(const char *in, int32_t inlen, int32_t *outlen, int *icu_error)
{
	UErrorCode	status = U_ZERO_ERROR;
	UChar	   *wide = NULL;
	UChar	   *folded = NULL;
	char	   *out = NULL;
	int32_t		widelen = 0;
	int32_t		foldedlen = 0;
	int32_t		need = 0;

	*outlen = 0;
	wide = utf8_to_utf16(in, inlen, &widelen, &status);
	if (wide == NULL)
		goto done;

	/*
	 * Strip before folding too: a control or format character between a
	 * letter and a combining mark would keep them from composing, and
	 * removing it afterwards would leave a result that is not normalized,
	 * so that normalizing it again would give something else.  Then fold
	 * and strip until nothing more is stripped: the result is then folded
	 * and clean, and normalizes to itself.
	 */
	widelen = strip_noise(wide, widelen);
	for (int round = 0; round < MAX_ROUNDS; round++)
	{
		int32_t		stripped;

		folded = casefold(wide, widelen, &foldedlen, &status);
		if (folded == NULL)
			goto done;
		stripped = strip_noise(folded, foldedlen);
		free(wide);
		wide = folded;
		folded = NULL;
		if (stripped == foldedlen)
		{
			widelen = stripped;
			break;
		}
		widelen = stripped;
	}

	u_strToUTF8(NULL, 0, &need, wide, widelen, &status);
	if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status))
		goto done;
	status = U_ZERO_ERROR;
	out = malloc((size_t) need + 1);
	if (out == NULL)
	{
		status = U_MEMORY_ALLOCATION_ERROR;
		goto done;
	}
	u_strToUTF8(out, need + 1, outlen, wide, widelen, &status);
	if (U_FAILURE(status))
	{
		free(out);
		out = NULL;
	}

done:
	free(wide);
	free(folded);
	*icu_error = (int) status;
	return out;
}

const char *
barcode_error_name(int icu_error)
{
	return u_errorName((UErrorCode) icu_error);
}
