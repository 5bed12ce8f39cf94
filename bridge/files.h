/*
 * files.h: the static file server (--static DIR): which file a request
 * target names, and its media type.
 *
 * Only regular files inside DIR are served: "..", NUL bytes and symbolic
 * links that lead outside DIR are refused; a directory serves its
 * index.html.  Files are opened here and sent by the gate with sendfile(2).
 */
#ifndef WSNOTIFY_FILES_H
#define WSNOTIFY_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "response.h"

/*
 * The path below the root that target names: %-decoded, query and fragment
 * dropped, "." and empty segments skipped, no leading slash.  False (the
 * request is refused) for "..", a NUL, or a path longer than n.
 */
bool files_path(const char *target, char *out, size_t n);
/* The media type of a file name, by its extension. */
const char *files_type(const char *name);
/* Answer a GET/HEAD for target from root into *resp (200 with a file, or 404). */
void files_respond(const char *root, const char *target, struct response *resp);

#endif
