/*
 * files.c: the static file server (see files.h).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"
#include "util.h"

/* Append one decoded segment to out (at *o); false when it is refused. */
static bool
files_segment(const char *seg, size_t len, char *out, size_t n, size_t *o)
{
	char dec[PATH_MAX];
	size_t d = 0;

	for (size_t i = 0; i < len && d < sizeof(dec) - 1; i++) {
		if (seg[i] == '%' && i + 2 < len && util_hex_value(seg[i + 1]) >= 0 &&
		    util_hex_value(seg[i + 2]) >= 0) {
			dec[d++] = (char) (util_hex_value(seg[i + 1]) * 16 +
					   util_hex_value(seg[i + 2]));
			i += 2;
		} else
			dec[d++] = seg[i];
	}
	dec[d] = '\0';
	if (memchr(dec, '\0', d) || strchr(dec, '/') || strchr(dec, '\\'))
		return false; /* an encoded slash or NUL hides a segment */
	if (d == 0 || !strcmp(dec, "."))
		return true;
	if (!strcmp(dec, ".."))
		return false;
	if (*o + d + 2 > n)
		return false;
	if (*o)
		out[(*o)++] = '/';
	memcpy(out + *o, dec, d);
	*o += d;
	out[*o] = '\0';
	return true;
}

/* The path below the root that target names. */
bool
files_path(const char *target, char *out, size_t n)
{
	size_t end = strcspn(target, "?#"), o = 0;
	const char *p = target;

	if (n == 0)
		return false;
	out[0] = '\0';
	while (p < target + end) {
		size_t l = strcspn(p, "/?#");

		if (p + l > target + end)
			l = (size_t) (target + end - p);
		if (!files_segment(p, l, out, n, &o))
			return false;
		p += l;
		if (*p == '/')
			p++;
	}
	return true;
}

const char *
files_type(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {{"html", "text/html; charset=utf-8"},
		     {"htm", "text/html; charset=utf-8"},
		     {"js", "text/javascript; charset=utf-8"},
		     {"mjs", "text/javascript; charset=utf-8"},
		     {"css", "text/css; charset=utf-8"},
		     {"json", "application/json"},
		     {"map", "application/json"},
		     {"txt", "text/plain; charset=utf-8"},
		     {"svg", "image/svg+xml"},
		     {"png", "image/png"},
		     {"jpg", "image/jpeg"},
		     {"jpeg", "image/jpeg"},
		     {"gif", "image/gif"},
		     {"webp", "image/webp"},
		     {"ico", "image/x-icon"},
		     {"wasm", "application/wasm"},
		     {"woff", "font/woff"},
		     {"woff2", "font/woff2"}};
	const char *dot = strrchr(name, '.');

	if (dot && !strchr(dot, '/'))
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (!strcasecmp(dot + 1, types[i].ext))
				return types[i].type;
	return "application/octet-stream";
}

/* Open path if it is a regular file whose real path lies inside root_real. */
static int
files_open_inside(const char *root_real, const char *path, struct stat *st)
{
	char real[PATH_MAX];
	size_t rl = strlen(root_real);
	int fd;

	if (!realpath(path, real) || strncmp(real, root_real, rl) != 0 ||
	    (real[rl] != '/' && real[rl] != '\0'))
		return -1;
	fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Answer a GET/HEAD for target from root into *resp. */
void
files_respond(const char *root, const char *target, struct response *resp)
{
	char rel[PATH_MAX], path[PATH_MAX * 2], root_real[PATH_MAX];
	struct stat st;
	int fd = -1;

	if (files_path(target, rel, sizeof(rel)) && realpath(root, root_real) &&
	    snprintf(path, sizeof(path), "%s/%s", root_real, rel) < (int) sizeof(path)) {
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
		    snprintf(path, sizeof(path), "%s/%s%sindex.html", root_real, rel,
			     rel[0] ? "/" : "") >= (int) sizeof(path))
			path[0] = '\0';
		fd = files_open_inside(root_real, path, &st);
	}
	if (fd < 0) {
		response_text(resp, 404, "text/plain; charset=utf-8", "not found\n", 10);
		return;
	}
	resp->status = 200;
	resp->content_type = files_type(path);
	resp->file_fd = fd;
	resp->file_len = st.st_size;
	resp->cacheable = true;
}
