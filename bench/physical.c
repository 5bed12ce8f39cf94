/*
 * physical: the ceiling for any WebSocket bridge that sends each frame with
 * its own write() (issue 6).
 *
 * A bridge's delivery rate per CPU-second cannot beat what the kernel charges
 * for one small write() to a TCP socket; comparing wsnotify-bridge (or the
 * Node.js peer) against that number tells how much of their cost is their own
 * and how much is the system call and the loopback TCP stack underneath.
 * So this program does nothing but that: it writes the same small server-to-
 * client text frame (unmasked, a JSON body like {"t":...,"n":1}) round-robin
 * over N connected sockets, F times, one write() each, as a fan-out does, and
 * reports writes per CPU-second of the writing process (and, for a client-
 * side view, per CPU-second of writer and reader together).
 *
 * The other ends are held by a forked reader process that only reads and
 * discards (epoll), on the other core, so that the writer's CPU is the write
 * path alone; two processes also let each hold its own N descriptors under
 * the per-process open-file limit.  On loopback the receiver's share of TCP
 * processing runs in the sender's system call, exactly as it does for a bridge
 * benchmarked against local clients, so the number is the right ceiling for
 * those benchmarks.  Sockets get TCP_NODELAY because bridges set it (Nagle
 * would coalesce frames and make writes cheaper than any real bridge's).
 *
 * Run it on an otherwise idle machine: when other processes keep the reader
 * from sleeping, each write() skips the cost of waking it, and the writer
 * looks up to twice as cheap as it is.
 *
 * Usage: physical [--sockets N (1000)] [--frames F (2000000)] [--size B (40)]
 *                 [--sources K (one per 8,000 sockets)]
 * Prints one JSON object on stdout; exits non-zero if anything failed or the
 * reader did not receive every byte.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READER_IDLE_MS 10000 /* a reader with nothing to do this long: the writer is gone */
#define SOCKETS_PER_SOURCE 8000 /* well inside one address's 28,000 ephemeral ports */

struct options {
	long sockets, frames, size, sources;
};

/* What the reader tells the writer when it is done. */
struct reader_report {
	uint64_t bytes;
	uint64_t reads;
	double cpu_s;
};

static pid_t reader_pid;

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("physical: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (reader_pid > 0)
		kill(reader_pid, SIGTERM);
	exit(1);
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * CPU seconds used so far by the kernel's ksoftirqd threads.  Loopback
 * delivery normally runs inside the writer's write(), and is charged to it;
 * on a busy machine the kernel defers some of it to ksoftirqd, which would
 * make the writer look cheaper than it is, so that share is reported too.
 */
static double ksoftirqd_seconds(void)
{
	DIR *proc = opendir("/proc");
	struct dirent *de;
	double ticks = 0;

	if (!proc)
		return 0;
	while ((de = readdir(proc))) {
		char path[300], buf[512], *p;
		unsigned long ut, st;
		FILE *f;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		p = fgets(buf, sizeof buf, f) ? strstr(buf, " (ksoftirqd/") : NULL;
		fclose(f);
		/* after "(comm) ", fields 3..13 come before utime and stime */
		if (p && (p = strchr(p, ')')) &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			   &st) == 2)
			ticks += ut + st;
	}
	closedir(proc);
	return ticks / sysconf(_SC_CLK_TCK);
}

static long parse_count(const char *name, const char *value, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(value ? value : "", &end, 10);
	if (errno || !value || end == value || *end || v < min || v > max)
		die("%s wants a whole number from %ld to %ld, not \"%s\"", name, min, max,
		    value ? value : "");
	return v;
}

static struct options parse_options(int argc, char **argv)
{
	struct options o = { .sockets = 1000, .frames = 2000000, .size = 40, .sources = 0 };

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(arg, "--sockets"))
			o.sockets = parse_count(arg, val, 1, 1000000);
		else if (!strcmp(arg, "--frames"))
			o.frames = parse_count(arg, val, 1, 1L << 40);
		else if (!strcmp(arg, "--size"))
			o.size = parse_count(arg, val, 1, 65535);
		else if (!strcmp(arg, "--sources"))
			o.sources = parse_count(arg, val, 1, 254);
		else
			die("unknown argument \"%s\" (usage: physical [--sockets N] [--frames F] "
			    "[--size B] [--sources K])", arg);
		i++;
	}
	if (!o.sources)
		o.sources = (o.sockets + SOCKETS_PER_SOURCE - 1) / SOCKETS_PER_SOURCE;
	return o;
}

/* Room for N sockets plus stdio, pipes, epoll and the listener. */
static void raise_fd_limit(long sockets)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("getrlimit: %s", strerror(errno));
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		die("setrlimit: %s", strerror(errno));
	if ((rlim_t)sockets + 16 > rl.rlim_cur)
		die("%ld sockets need %ld open files per process; the limit is %ju", sockets,
		    sockets + 16, (uintmax_t)rl.rlim_cur);
}

/*
 * A server-to-client text frame (FIN, opcode 1, no mask) whose JSON body is
 * `size` bytes, padded with a "p" member, or with blanks if too small for one.
 */
static size_t build_frame(unsigned char *buf, long size)
{
	char body[65536];
	int n = snprintf(body, sizeof body, "{\"t\":1700000000000000,\"n\":1");
	size_t h = 0;

	if (size >= n + 8) {
		n += snprintf(body + n, sizeof body - n, ",\"p\":\"");
		while (n < size - 2)
			body[n++] = 'x';
		body[n++] = '"';
	}
	while (n < size - 1)
		body[n++] = ' ';
	body[n++] = '}';

	buf[h++] = 0x81;
	if (n < 126) {
		buf[h++] = (unsigned char)n;
	} else {
		buf[h++] = 126;
		buf[h++] = (unsigned char)(n >> 8);
		buf[h++] = (unsigned char)n;
	}
	memcpy(buf + h, body, n);
	return h + n;
}

static int listen_loopback(long backlog, struct sockaddr_in *addr)
{
	socklen_t len = sizeof *addr;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	memset(addr, 0, sizeof *addr);
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)addr, sizeof *addr) < 0 ||
	    listen(fd, (int)(backlog < 65535 ? backlog : 65535)) < 0 ||
	    getsockname(fd, (struct sockaddr *)addr, &len) < 0)
		die("listening on 127.0.0.1: %s", strerror(errno));
	return fd;
}

/* ---- reader process ---- */

static void add_to_epoll(int ep, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("reader: epoll_ctl: %s", strerror(errno));
}

/* Accepts until the backlog is empty; returns how many connections it took. */
static long accept_pending(int ep, int lfd)
{
	long n = 0;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return n;
			die("reader: accept: %s", strerror(errno));
		}
		add_to_epoll(ep, fd);
		n++;
	}
}

/* Reads one socket dry; false once the peer has closed it. */
static int drain(int fd, struct reader_report *r)
{
	static char buf[1 << 16];

	for (;;) {
		ssize_t got = read(fd, buf, sizeof buf);

		if (got > 0) {
			r->bytes += got;
			r->reads++;
			continue;
		}
		if (got < 0 && errno == EAGAIN)
			return 1;
		if (got < 0 && errno == EINTR)
			continue;
		return 0; /* EOF or reset: the writer is done with it */
	}
}

/*
 * Accepts `sockets` connections, says so on `ready`, then discards everything
 * until `expect` bytes have arrived (or the writer closed every socket, or
 * nothing happened for READER_IDLE_MS), and sends its report on `done`.
 */
static void run_reader(int lfd, long sockets, uint64_t expect, int ready, int done)
{
	static struct epoll_event evs[1024];
	struct reader_report r = { 0 };
	long accepted = 0, open_socks = 0;
	double cpu0 = 0;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		die("reader: epoll_create1: %s", strerror(errno));
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	add_to_epoll(ep, lfd);
	while (r.bytes < expect) {
		int n = epoll_wait(ep, evs, 1024, READER_IDLE_MS);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				long got = accept_pending(ep, lfd);

				accepted += got;
				open_socks += got;
				if (got && accepted == sockets) {
					close(lfd);
					cpu0 = cpu_seconds(); /* count the reading, not the accepting */
					if (write(ready, "R", 1) != 1)
						die("reader: telling the writer: %s", strerror(errno));
				}
			} else if (!drain(fd, &r)) {
				close(fd);
				open_socks--;
			}
		}
		if (accepted == sockets && open_socks == 0)
			break;
	}
	r.cpu_s = cpu_seconds() - cpu0;
	if (write(done, &r, sizeof r) != (ssize_t)sizeof r)
		die("reader: sending the report: %s", strerror(errno));
	_exit(0);
}

/* ---- writer process ---- */

static int connect_one(const struct sockaddr_in *dst, long source)
{
	struct sockaddr_in src = { .sin_family = AF_INET };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	/* Without IP_BIND_ADDRESS_NO_PORT, bind() would reserve a port that no
	 * other socket on this address may use; with it, the port is chosen at
	 * connect() for the whole 4-tuple, as an unbound client's would be. */
	src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + source);
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
		die("binding to 127.0.0.%ld: %s", source + 1, strerror(errno));
	if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0)
		die("connecting from 127.0.0.%ld: %s", source + 1, strerror(errno));
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		die("TCP_NODELAY: %s", strerror(errno));
	/* Non-blocking so that a full socket is seen (EAGAIN) and counted. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		die("O_NONBLOCK: %s", strerror(errno));
	return fd;
}

struct write_stats {
	uint64_t waits;    /* EAGAIN: the socket was full, poll() until it is not */
	uint64_t partials; /* a write() that took only part of the frame */
};

/* The whole frame onto fd; waits (and counts waits) while the socket is full. */
static void write_frame(int fd, const unsigned char *frame, size_t len, struct write_stats *st)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, frame + off, len - off);

		if (n > 0) {
			off += n;
			if (off < len)
				st->partials++;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			st->waits++;
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				die("poll: %s", strerror(errno));
			continue;
		}
		die("write: %s", n < 0 ? strerror(errno) : "wrote nothing");
	}
}

static void read_exactly(int fd, void *buf, size_t len, const char *what)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);

		if (n > 0)
			off += n;
		else if (n < 0 && errno == EINTR)
			continue;
		else
			die("waiting for %s: %s", what, n < 0 ? strerror(errno) : "the reader exited");
	}
}

static pid_t start_reader(int lfd, long sockets, uint64_t expect, int *ready, int *done)
{
	int rp[2], dp[2];
	pid_t pid;

	if (pipe2(rp, O_CLOEXEC) < 0 || pipe2(dp, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(rp[0]);
		close(dp[0]);
		run_reader(lfd, sockets, expect, rp[1], dp[1]);
	}
	close(rp[1]);
	close(dp[1]);
	close(lfd);
	*ready = rp[0];
	*done = dp[0];
	return pid;
}

int main(int argc, char **argv)
{
	struct options o = parse_options(argc, argv);
	unsigned char frame[65536 + 4];
	size_t flen = build_frame(frame, o.size);
	uint64_t expect = (uint64_t)o.frames * flen;
	struct write_stats st = { 0 };
	struct reader_report rep;
	struct sockaddr_in dst;
	int ready, done, status;
	int *fds;
	char ok;
	double wall0, cpu0, soft0, wall, cpu, soft;

	signal(SIGPIPE, SIG_IGN); /* a dead reader shows as EPIPE, reported once */
	raise_fd_limit(o.sockets);
	fds = calloc(o.sockets, sizeof *fds);
	if (!fds)
		die("no memory for %ld sockets", o.sockets);
	reader_pid = start_reader(listen_loopback(o.sockets, &dst), o.sockets, expect, &ready,
				  &done);

	for (long i = 0; i < o.sockets; i++)
		fds[i] = connect_one(&dst, i % o.sources);
	read_exactly(ready, &ok, 1, "the reader to accept every connection");

	soft0 = ksoftirqd_seconds();
	wall0 = now_seconds();
	cpu0 = cpu_seconds();
	for (long f = 0, s = 0; f < o.frames; f++) {
		write_frame(fds[s], frame, flen, &st);
		if (++s == o.sockets)
			s = 0;
	}
	cpu = cpu_seconds() - cpu0;
	wall = now_seconds() - wall0;
	soft = ksoftirqd_seconds() - soft0;

	read_exactly(done, &rep, sizeof rep, "the reader's report");
	for (long i = 0; i < o.sockets; i++)
		close(fds[i]);
	if (waitpid(reader_pid, &status, 0) < 0)
		die("waitpid: %s", strerror(errno));
	reader_pid = 0;
	if (rep.bytes != expect)
		die("the reader got %" PRIu64 " of %" PRIu64 " bytes", rep.bytes, expect);

	printf("{\"sockets\":%ld,\"writes\":%ld,\"wall_s\":%.3f,\"writer_cpu_s\":%.3f,"
	       "\"writes_per_cpu_s\":%.0f,\"writes_per_s\":%.0f,\"frame_bytes\":%zu,"
	       "\"sources\":%ld,\"eagain_waits\":%" PRIu64 ",\"partial_writes\":%" PRIu64 ","
	       "\"reader_cpu_s\":%.3f,\"reader_reads\":%" PRIu64 ","
	       "\"writes_per_cpu_s_with_reader\":%.0f,\"ksoftirqd_cpu_s\":%.2f}\n",
	       o.sockets, o.frames, wall, cpu, cpu > 0 ? round(o.frames / cpu) : 0.0,
	       wall > 0 ? round(o.frames / wall) : 0.0, flen, o.sources, st.waits, st.partials,
	       rep.cpu_s, rep.reads, round(o.frames / (cpu + rep.cpu_s)), soft);
	free(fds);
	return 0;
}
