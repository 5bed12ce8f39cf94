/*
 * policy.c: per-address token buckets for the gate (see policy.h).
 *
 * A bucket holds up to `limit` tokens and refills at `limit` per period
 * (one second for connects, one minute for failed authentications), so the
 * limit is also the burst.  A refused client is told how many seconds until
 * one token is back (Retry-After).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "config.h"
#include "policy.h"

struct bucket {
	double tokens;
	uint64_t ms; /* last refill; 0: never used (full) */
};

struct addr_entry {
	char addr[64];
	struct bucket conn, fail;
	UT_hash_handle hh;
};

static struct addr_entry *addrs;

/* Refill b for a limit of `limit` per period_ms; returns the tokens now held. */
static double
policy_refill(struct bucket *b, long long limit, double period_ms, uint64_t now)
{
	if (!b->ms) {
		b->tokens = (double) limit;
	} else if (now > b->ms) {
		b->tokens += (double) (now - b->ms) * (double) limit / period_ms;
		if (b->tokens > (double) limit)
			b->tokens = (double) limit;
	}
	b->ms = now;
	return b->tokens;
}

/* Seconds until the bucket holds one token again (at least 1). */
static int
policy_retry_after(const struct bucket *b, long long limit, double period_ms)
{
	double s = (1.0 - b->tokens) * period_ms / (double) limit / 1000.0;

	return s < 1.0 ? 1 : (int) ceil(s);
}

/* The entry of addr, created when create is set; NULL otherwise. */
static struct addr_entry *
policy_entry(const char *addr, bool create)
{
	struct addr_entry *e;
	char key[64];

	/* the key is the fixed-size, NUL-padded address: HASH_FIND over 64 bytes */
	memset(key, 0, sizeof(key));
	snprintf(key, sizeof(key), "%s", addr);
	HASH_FIND(hh, addrs, key, sizeof(key), e);
	if (e || !create)
		return e;
	e = calloc(1, sizeof(*e));
	memcpy(e->addr, key, sizeof(key));
	HASH_ADD(hh, addrs, addr, sizeof(e->addr), e);
	return e;
}

/* One upgrade attempt from addr: false (and *retry_after) past connect_rate_limit. */
bool
policy_connect_ok(const char *addr, uint64_t now, int *retry_after)
{
	long long limit = cf_connect_rate_limit;
	struct addr_entry *e;

	if (limit <= 0)
		return true;
	e = policy_entry(addr, true);
	if (policy_refill(&e->conn, limit, 1000.0, now) < 1.0) {
		*retry_after = policy_retry_after(&e->conn, limit, 1000.0);
		return false;
	}
	e->conn.tokens -= 1.0;
	return true;
}

/* May addr still try to authenticate?  false (and *retry_after) past the limit. */
bool
policy_auth_ok(const char *addr, uint64_t now, int *retry_after)
{
	long long limit = cf_auth_failure_rate_limit;
	struct addr_entry *e;

	if (limit <= 0 || !(e = policy_entry(addr, false)))
		return true;
	if (policy_refill(&e->fail, limit, 60000.0, now) < 1.0) {
		*retry_after = policy_retry_after(&e->fail, limit, 60000.0);
		return false;
	}
	return true;
}

/* Count one failed authentication of addr. */
void
policy_auth_failed(const char *addr, uint64_t now)
{
	long long limit = cf_auth_failure_rate_limit;
	struct addr_entry *e;

	if (limit <= 0)
		return;
	e = policy_entry(addr, true);
	policy_refill(&e->fail, limit, 60000.0, now);
	e->fail.tokens = e->fail.tokens >= 1.0 ? e->fail.tokens - 1.0 : 0.0;
}

/* Is this bucket full again (or unused) at now? */
static bool
policy_full(struct bucket *b, long long limit, double period_ms, uint64_t now)
{
	return !b->ms || limit <= 0 || policy_refill(b, limit, period_ms, now) >= (double) limit;
}

unsigned
policy_sweep(uint64_t now)
{
	struct addr_entry *e, *tmp;

	HASH_ITER(hh, addrs, e, tmp)
	{
		if (policy_full(&e->conn, cf_connect_rate_limit, 1000.0, now) &&
		    policy_full(&e->fail, cf_auth_failure_rate_limit, 60000.0, now)) {
			HASH_DEL(addrs, e);
			free(e);
		}
	}
	return HASH_COUNT(addrs);
}
