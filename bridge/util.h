/*
 * util.h: the bottom layer of the bridge: the clock, allocation, base64,
 * hexadecimal digits and HOST:PORT splitting.  Uses no other module.
 *
 * Out of memory: util_alloc and friends never return NULL; a failed
 * allocation writes one line to stderr and aborts.  A bridge that cannot
 * allocate a connection or a queue item cannot keep the delivery rules, and
 * a restart (systemd) puts it back faster than any partial recovery; code
 * that can refuse a single request instead (a response, a head buffer) uses
 * plain malloc and checks it.
 */
#ifndef WSNOTIFY_UTIL_H
#define WSNOTIFY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic milliseconds. */
uint64_t now_ms(void);

/* malloc, calloc, realloc and strdup that abort instead of returning NULL. */
void *util_alloc(size_t n);
void *util_calloc(size_t count, size_t n);
void *util_realloc(void *p, size_t n);
char *util_strdup(const char *s);
/* The policy itself, for allocations made elsewhere (jansson): say so and abort. */
void util_out_of_memory(size_t n) __attribute__((noreturn));

/* The value of one hexadecimal digit, or -1 when c is none. */
int util_hex_value(char c);

/*
 * Decode one line of standard base64 (padding optional) into out, which
 * holds at least len * 3 / 4 + 1 bytes; false when a character is not
 * base64.  *out_len gets the decoded length; out[*out_len] is set to NUL.
 */
bool util_base64_decode(const char *b64, size_t len, char *out, size_t *out_len);

/*
 * Split "host:port", ":port" or "[v6]:port" into host (without brackets,
 * "" for every address) and port; false when there is no port.
 */
bool util_split_hostport(const char *s, char *host, size_t hn, char *port, size_t pn);

#endif
