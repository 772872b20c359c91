/*-------------------------------------------------------------------------
 *
 * json_text.c
 *	  JSON string decoding shared by libharbor and the harbor tool.
 *
 * The text comes from the server (json_build_object, to_jsonb, the change
 * notification payload), so it is well formed; still, truncated or odd
 * escapes must never make the decoder read past the terminating NUL.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "json_text.h"

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Read the hex digits of a \u escape, s pointing at the 'u'; stops at the
 * first non-digit so that a short escape cannot run past the NUL.
 * Returns how many digits were read (at most 4).
 */
static int
read_hex4(const char *s, unsigned *cp)
{
	int			i;

	*cp = 0;
	for (i = 0; i < 4 && hexval(s[i + 1]) >= 0; i++)
		*cp = *cp * 16 + (unsigned) hexval(s[i + 1]);
	return i;
}

static void
put_utf8(char **o, unsigned cp)
{
	if (cp < 0x80)
		*(*o)++ = (char) cp;
	else if (cp < 0x800)
	{
		*(*o)++ = (char) (0xC0 | (cp >> 6));
		*(*o)++ = (char) (0x80 | (cp & 0x3F));
	}
	else if (cp < 0x10000)
	{
		*(*o)++ = (char) (0xE0 | (cp >> 12));
		*(*o)++ = (char) (0x80 | ((cp >> 6) & 0x3F));
		*(*o)++ = (char) (0x80 | (cp & 0x3F));
	}
	else
	{
		*(*o)++ = (char) (0xF0 | (cp >> 18));
		*(*o)++ = (char) (0x80 | ((cp >> 12) & 0x3F));
		*(*o)++ = (char) (0x80 | ((cp >> 6) & 0x3F));
		*(*o)++ = (char) (0x80 | (cp & 0x3F));
	}
}

char *
harbor_json_decode_string(const char **p)
{
	const char *s = *p + 1;

	/* decoding never lengthens the text: \uXXXX (6 bytes) gives at most 4 */
	char	   *out = malloc(strlen(s) + 1),
			   *o = out;

	if (out == NULL)
		return NULL;
	for (; *s && *s != '"'; s++)
	{
		if (*s != '\\')
		{
			*o++ = *s;
			continue;
		}
		s++;
		switch (*s)
		{
			case 'n':
				*o++ = '\n';
				break;
			case 't':
				*o++ = '\t';
				break;
			case 'r':
				*o++ = '\r';
				break;
			case 'b':
				*o++ = '\b';
				break;
			case 'f':
				*o++ = '\f';
				break;
			case 'u':
				{
					unsigned	cp,
								lo;

					s += read_hex4(s, &cp);
					/* a surrogate pair is one code point of four UTF-8 bytes */
					if (cp >= 0xD800 && cp < 0xDC00 && s[1] == '\\' && s[2] == 'u' &&
						read_hex4(s + 2, &lo) == 4 && lo >= 0xDC00 && lo < 0xE000)
					{
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						s += 6;
					}
					put_utf8(&o, cp);
					break;
				}
			case '\0':
				/* a lone backslash at the end: stop on the NUL */
				s--;
				break;
			default:
				*o++ = *s;
		}
	}
	*o = '\0';
	*p = *s ? s + 1 : s;
	return out;
}
