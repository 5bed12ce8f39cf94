/*
 * policy.h: per-address rate limits of the gate (connect_rate_limit,
 * auth_failure_rate_limit).
 *
 * Token buckets keyed by the client address, held only while an address is
 * being limited: an entry whose buckets are full again is dropped by
 * policy_sweep, so the table holds the addresses active in the last minute
 * at most.  Pure (no lws, no database): unit-tested on its own (test_units.c).
 */
#ifndef WSNOTIFY_POLICY_H
#define WSNOTIFY_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/* One upgrade attempt from addr: false (and *retry_after, seconds) past connect_rate_limit. */
bool policy_connect_ok(const char *addr, uint64_t now_ms, int *retry_after);
/* May addr still try to authenticate?  false (and *retry_after) past auth_failure_rate_limit. */
bool policy_auth_ok(const char *addr, uint64_t now_ms, int *retry_after);
/* Count one failed authentication (401, 403) of addr. */
void policy_auth_failed(const char *addr, uint64_t now_ms);
/* Drop the entries whose buckets are full again; returns how many remain. */
unsigned policy_sweep(uint64_t now_ms);

#endif
