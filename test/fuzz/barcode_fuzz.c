/*
 * barcode_fuzz.c
 *		libFuzzer target for the barcode normalizer's ICU core
 *		(src/barcode_core.c), built without PostgreSQL.
 *
 * Any byte string is fed to barcode_normalize().  Invalid UTF-8 must come
 * back as an ICU error, never as a crash.  A result must be valid UTF-8 of
 * the reported length, hold no character the normalizer strips, and
 * normalize to itself: the index holds normalize(barcode), a lookup
 * compares normalize(input), and a barcode copied out of a report and
 * typed back must find the same patron.  A violated property aborts, which
 * libFuzzer records as a finding with the input that caused it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/ustring.h>

#include "barcode_core.h"

/* Report a violated property with the input, then abort. */
static void
fail(const char *what, const uint8_t *data, size_t size)
{
	fprintf(stderr, "barcode_fuzz: %s; input (%zu bytes):", what, size);
	for (size_t i = 0; i < size; i++)
		fprintf(stderr, " %02x", data[i]);
	fputc('\n', stderr);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32_t		outlen;
	int32_t		againlen;
	int			err;
	char	   *out;
	char	   *again;
	UErrorCode	status = U_ZERO_ERROR;
	UChar		buf[4096];
	int32_t		ulen;

	if (size > 1024 * 1024)
		return 0;
	out = barcode_normalize((const char *) data, (int32_t) size, &outlen, &err);
	if (out == NULL)
	{
		if (barcode_error_name(err) == NULL)
			fail("error without a name", data, size);
		return 0;
	}
	if (outlen < 0 || strlen(out) != (size_t) outlen)
		fail("result length differs from the reported length", data, size);

	/* valid UTF-8, and nothing the normalizer strips is left */
	u_strFromUTF8(NULL, 0, &ulen, out, outlen, &status);
	if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status))
		fail("result is not valid UTF-8", data, size);
	if (ulen < (int32_t) (sizeof(buf) / sizeof(buf[0])))
	{
		status = U_ZERO_ERROR;
		u_strFromUTF8(buf, ulen, &ulen, out, outlen, &status);
		for (int32_t i = 0; i < ulen;)
		{
			UChar32		c;

			U16_NEXT(buf, i, ulen, c);
			if (u_isUWhiteSpace(c) || u_iscntrl(c) ||
				u_charType(c) == U_FORMAT_CHAR ||
				u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT))
				fail("result holds a character that should have been stripped", data, size);
		}
	}

	/* normalizing a normalized barcode changes nothing */
	again = barcode_normalize(out, outlen, &againlen, &err);
	if (again == NULL)
		fail("a normalized barcode does not normalize", data, size);
	if (againlen != outlen || memcmp(again, out, outlen) != 0)
		fail("normalizing twice differs from normalizing once", data, size);
	free(again);
	free(out);
	return 0;
}
