/*
 * physical_rounds: bench/physical's ceiling, paced like bench/fanout.py.
 *
 * bench/physical streams frames round-robin without a pause, so its readers
 * fall behind and most writes find a reader already awake (several frames per
 * read).  bench/fanout.py delivers one frame per socket per round and waits
 * about 0.3 s for the clients in between, so nearly every write wakes a
 * sleeping reader, which on loopback is charged to the writer's write().
 * This probe writes the same way: per round, one write() of a small text
 * frame to each of N loopback TCP sockets (TCP_NODELAY), then a 0.3 s pause;
 * 4 reader processes (as fanout.py's 4 client processes, from 127.0.0.2-5)
 * read with epoll.  It prints the writer's writes per CPU-second
 * (getrusage).
 *
 * bench/run.py's clients are laid out differently: bench/loadgen processes of
 * up to 18,000 connections each, every process spreading its connections over
 * the sources 127.0.0.1-8.  --per-reader 18000 --sources 8 gives the probe the
 * same readers (one per loadgen process, each holding the same share), so
 * that the wake-ups the writer pays land on as many sleeping processes as in
 * run.py's rounds.
 *
 * Build: make -C bench physical_rounds
 * Run:   bench/physical_rounds SOCKETS ROUNDS [--per-reader N] [--sources S]
 *   --per-reader N  reader processes of N sockets each, the last one the rest
 *                   (default: the sockets split over 4 readers)
 *   --sources S     each reader binds its j-th socket to 127.0.0.(1 + j % S)
 *                   (default: reader k uses 127.0.0.(2 + k) alone)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_READERS 4

/* utime + stime of this process, in seconds. */
static double
cpu_seconds(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double) (r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
		(double) (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

/*
 * A reader: connect its `count` sockets, then read.  Source address: its own
 * (127.0.0.(2 + k)) when sources is 0, else spread over 127.0.0.1..sources as
 * bench/loadgen --sources does.
 */
static void
reader(int k, int count, int sources, const struct sockaddr_in *to)
{
	struct epoll_event ev[256];
	char buf[4096];
	int ep = epoll_create1(0);

	for (int j = 0; j < count; j++) {
		uint32_t host = sources ? 0x7f000001 + (uint32_t) (j % sources)
					: 0x7f000002 + (uint32_t) k;
		struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(host)};
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};

		/* the port is chosen at connect() for the whole 4-tuple, as loadgen's are */
		if (fd < 0 ||
		    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) != 0 ||
		    bind(fd, (const void *) &src, sizeof(src)) != 0 ||
		    connect(fd, (const void *) to, sizeof(*to)) != 0) {
			perror("reader");
			_exit(1);
		}
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
	}
	for (;;) {
		int m = epoll_wait(ep, ev, 256, -1);

		for (int j = 0; j < m; j++)
			if (read(ev[j].data.fd, buf, sizeof(buf)) <= 0)
				_exit(0);
	}
}

int
main(int argc, char **argv)
{
	static const char frame[] = "\x81\x24{\"round\": 1, \"kind\": \"broadcast_ws\"}";
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int n, rounds, l, *fds, per_reader = 0, sources = 0, readers;
	pid_t *kids;
	long writes = 0;
	double c0, c;

	if (argc < 3 || (n = atoi(argv[1])) < 1 || (rounds = atoi(argv[2])) < 1)
		goto usage;
	for (int i = 3; i < argc; i += 2) {
		if (i + 1 >= argc)
			goto usage;
		if (!strcmp(argv[i], "--per-reader") && (per_reader = atoi(argv[i + 1])) >= 1)
			continue;
		if (!strcmp(argv[i], "--sources") && (sources = atoi(argv[i + 1])) >= 1 &&
		    sources <= 254)
			continue;
		goto usage;
	}
	if (!per_reader)
		per_reader = (n + DEFAULT_READERS - 1) / DEFAULT_READERS;
	readers = (n + per_reader - 1) / per_reader;
	kids = calloc((size_t) readers, sizeof(*kids));
	fds = malloc(sizeof(int) * (size_t) n);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (!kids || !fds || l < 0 || bind(l, (void *) &a, sizeof(a)) != 0 || listen(l, 4096) != 0 ||
	    getsockname(l, (void *) &a, &al) != 0) {
		perror("listen");
		return 1;
	}
	for (int k = 0; k < readers; k++)
		if ((kids[k] = fork()) == 0)
			reader(k, k < readers - 1 ? per_reader : n - per_reader * (readers - 1),
			       sources, &a);
	for (int i = 0; i < n; i++) {
		int one = 1;

		if ((fds[i] = accept(l, NULL, NULL)) < 0) {
			perror("accept");
			return 1;
		}
		setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	sleep(1);
	c0 = cpu_seconds();
	for (int r = 0; r < rounds; r++) {
		struct timespec pause = {0, 300000000};

		for (int i = 0; i < n; i++)
			if (write(fds[i], frame, sizeof(frame) - 1) == (ssize_t) sizeof(frame) - 1)
				writes++;
		nanosleep(&pause, NULL);
	}
	c = cpu_seconds() - c0;
	printf("%d sockets, %d rounds: %ld writes in %.3f CPU s: %.0f writes per CPU-second\n",
	       n, rounds, writes, c, (double) writes / c);
	for (int k = 0; k < readers; k++)
		kill(kids[k], SIGKILL);
	while (wait(NULL) > 0)
		;
	return writes == (long) n * rounds ? 0 : 1;

usage:
	fprintf(stderr, "usage: physical_rounds SOCKETS ROUNDS [--per-reader N] [--sources S]\n");
	return 2;
}
