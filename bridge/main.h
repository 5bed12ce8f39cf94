/*
 * main.h: process-wide state of the bridge (draining, shutdown).
 */
#ifndef WSNOTIFY_MAIN_H
#define WSNOTIFY_MAIN_H

#include <stdbool.h>

/* True once SIGTERM/SIGINT started the drain. */
bool main_draining(void);

#endif
