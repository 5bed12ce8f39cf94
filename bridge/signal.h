/*
 * signal.h: signals (signal_ws and clients' signal actions) relayed by the
 * database's ordering worker as sealed NOTIFY payloads "s<n> <sealed>":
 * sent at once to this bridge's subscribers of the topic, never stored.
 * Uses db, the registry, seal, frame and payload.
 */
#ifndef WSNOTIFY_SIGNAL_H
#define WSNOTIFY_SIGNAL_H

#include <stdbool.h>

/* A NOTIFY payload: true when it is a signal's (taken, or dropped and counted). */
bool signal_on_notify(const char *payload);

#endif
