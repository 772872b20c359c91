/*-------------------------------------------------------------------------
 *
 * json_text.h
 *	  JSON string decoding shared by libharbor and the harbor tool.
 *
 * Internal to the client: this header is not installed, and the symbol is
 * kept out of libharbor.so's exported interface, so it may change freely.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_JSON_TEXT_H
#define HARBOR_JSON_TEXT_H

#if defined(__GNUC__)
#define HARBOR_INTERNAL __attribute__((visibility("hidden")))
#else
#define HARBOR_INTERNAL
#endif

/*
 * Decode the JSON string whose opening quote *p points at into malloc'd
 * UTF-8 (NULL when out of memory), and move *p past the closing quote, or
 * onto the terminating NUL of truncated input.
 */
extern HARBOR_INTERNAL char *harbor_json_decode_string(const char **p);

#endif							/* HARBOR_JSON_TEXT_H */
