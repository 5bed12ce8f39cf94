/*
 * fuzz_config.c: libFuzzer target for the bridge's config parser
 * (bridge/config.c): the input is an INI file given with -c, loaded as at
 * start and then re-read as on SIGHUP.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

/* Load the input as the -c file, reload it, free everything. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	char *argv[] = {"wsnotify-bridge", "-c", path, NULL};
	FILE *f;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/fuzz_config.%d.ini", (int) getpid());
	f = fopen(path, "w");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	if (config_load(3, argv))
		config_reload();
	config_free();
	return 0;
}
