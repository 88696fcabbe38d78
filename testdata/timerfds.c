// timerfds: holds timerfds and a signalfd for the checkpoint/restore tests
// of internal/files, waits for a trigger and then checks they still work.
//
// Protocol: timerfds TRIGGER [cancel]
//   3  timerfd CLOCK_MONOTONIC, TFD_NONBLOCK, every 10 ms (relative);
//      never read before the trigger, so expirations pile up unread;
//   4  timerfd CLOCK_MONOTONIC, TFD_NONBLOCK, one-shot in 1 ms: expired,
//      one expiration unread;
//   5  timerfd CLOCK_MONOTONIC, TFD_CLOEXEC, one-shot TFD_TIMER_ABSTIME
//      at E = now + 60 s;
//   6  signalfd for SIGUSR1 (blocked), SFD_NONBLOCK|SFD_CLOEXEC;
//   7  with "cancel": timerfd CLOCK_REALTIME armed with
//      TFD_TIMER_ABSTIME|TFD_TIMER_CANCEL_ON_SET (the dump refuses it).
// After 1 s it calls timerfd_gettime on fd 3 (which counts the missed
// expirations, as a read would) and reads the unread count P from
// /proc/self/fdinfo/3 (at least 50), writes "ready\n" to stdout and polls
// every 1 ms until the file TRIGGER exists. Then it checks, printing
// "OK\n" and exiting 0 when all hold, "FAIL: reason\n" and exiting 1
// otherwise:
//   - fd 3 has O_NONBLOCK, an interval of 10 ms, and its first read
//     returns at least P; it keeps firing: five more expirations arrive
//     (each within 10 s), no sooner than the interval allows;
//   - fd 4 reads 1, then fails EAGAIN;
//   - fd 5 has FD_CLOEXEC, no interval, and now + time left is E within
//     0.5 s (the test waits 1.5 s between dump and restore: a timer
//     restored relative to its time left would expire that much later);
//   - fd 6 has O_NONBLOCK and FD_CLOEXEC and reads a SIGUSR1 (the test
//     sends it after the trigger) within 10 s.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL

static void die(const char *what)
{
	fprintf(stderr, "timerfds: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why, long long a, long long b)
{
	printf("FAIL: %s (%lld, %lld)\n", why, a, b);
	exit(1);
}

static void expect_fd(int got, int want)
{
	if (got != want) {
		fprintf(stderr, "timerfds: got fd %d, want %d\n", got, want);
		exit(2);
	}
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long ns(struct timespec ts)
{
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec ts_of(long long v)
{
	struct timespec ts = { .tv_sec = v / 1000000000LL, .tv_nsec = v % 1000000000LL };
	return ts;
}

static void arm(int fd, int flags, long long value, long long interval)
{
	struct itimerspec its = { .it_interval = ts_of(interval), .it_value = ts_of(value) };
	if (timerfd_settime(fd, flags, &its, NULL) != 0)
		die("timerfd_settime");
}

// unread returns the "ticks" line of /proc/self/fdinfo/FD.
static long long unread(int fd)
{
	char path[64], line[256];
	long long ticks = -1;
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		die("open fdinfo");
	while (fgets(line, sizeof line, f))
		sscanf(line, "ticks: %lld", &ticks);
	fclose(f);
	return ticks;
}

// wait_read waits up to 10 s for fd to be readable and reads 8 bytes.
static uint64_t wait_read(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v;
	if (poll(&p, 1, 10000) != 1)
		fail(what, fd, 0);
	if (read(fd, &v, 8) != 8)
		fail(what, fd, errno);
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: timerfds TRIGGER [cancel]\n");
		return 2;
	}
	const long long interval = 10 * MS;
	expect_fd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 3);
	arm(3, 0, interval, interval);
	expect_fd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 4);
	arm(4, 0, 1 * MS, 0);
	expect_fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), 5);
	long long expiry = now_ns() + 60000 * MS;
	arm(5, TFD_TIMER_ABSTIME, expiry, 0);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL) != 0)
		die("sigprocmask");
	expect_fd(signalfd(-1, &usr1, SFD_NONBLOCK | SFD_CLOEXEC), 6);
	if (argc > 2 && strcmp(argv[2], "cancel") == 0) {
		expect_fd(timerfd_create(CLOCK_REALTIME, 0), 7);
		struct timespec rt;
		clock_gettime(CLOCK_REALTIME, &rt);
		arm(7, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, ns(rt) + 60000 * MS, 0);
	}
	struct timespec second = { .tv_sec = 1 };
	while (nanosleep(&second, &second) != 0 && errno == EINTR)
		;
	struct itimerspec cur;
	if (timerfd_gettime(3, &cur) != 0)
		die("timerfd_gettime");
	long long pending = unread(3);
	if (pending < 50) {
		fprintf(stderr, "timerfds: only %lld expirations after 1 s\n", pending);
		return 2;
	}
	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	struct timespec ms = { .tv_nsec = MS };
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);

	if (!(fcntl(3, F_GETFL) & O_NONBLOCK))
		fail("fd 3 lost O_NONBLOCK", fcntl(3, F_GETFL), 0);
	if (timerfd_gettime(3, &cur) != 0 || ns(cur.it_interval) != interval)
		fail("fd 3 interval", ns(cur.it_interval), interval);
	uint64_t first;
	/* t0 before the read: every expiration counted below comes after
	 * this read, so at most (t1 - t0) / interval + 1 of them, however
	 * long this process waits for a CPU between the calls. */
	long long t0 = now_ns();
	if (read(3, &first, 8) != 8)
		fail("fd 3 read", errno, 0);
	if ((long long)first < pending)
		fail("fd 3 lost unread expirations: read, want at least", (long long)first, pending);
	uint64_t more = 0;
	while (more < 5)
		more += wait_read(3, "fd 3 stopped firing");
	long long t1 = now_ns();
	if (t1 - t0 < (long long)(more - 1) * interval)
		fail("fd 3 fired faster than its interval: ns for expirations", t1 - t0, (long long)more);

	uint64_t v;
	if (read(4, &v, 8) != 8 || v != 1)
		fail("fd 4 did not read its one unread expiration", errno, (long long)v);
	if (read(4, &v, 8) != -1 || errno != EAGAIN)
		fail("fd 4 read again", (long long)v, errno);

	if (!(fcntl(5, F_GETFD) & FD_CLOEXEC))
		fail("fd 5 lost FD_CLOEXEC", fcntl(5, F_GETFD), 0);
	if (timerfd_gettime(5, &cur) != 0 || ns(cur.it_interval) != 0)
		fail("fd 5 interval", ns(cur.it_interval), 0);
	long long at = now_ns() + ns(cur.it_value);
	if (at - expiry > 500 * MS || expiry - at > 500 * MS)
		fail("fd 5 absolute expiry moved: ns from", at - expiry, expiry);

	if (!(fcntl(6, F_GETFL) & O_NONBLOCK) || !(fcntl(6, F_GETFD) & FD_CLOEXEC))
		fail("fd 6 flags", fcntl(6, F_GETFL), fcntl(6, F_GETFD));
	struct pollfd p = { .fd = 6, .events = POLLIN };
	struct signalfd_siginfo si;
	if (poll(&p, 1, 10000) != 1)
		fail("fd 6 got no SIGUSR1", 0, 0);
	if (read(6, &si, sizeof si) != sizeof si || si.ssi_signo != SIGUSR1)
		fail("fd 6 read", errno, si.ssi_signo);
	printf("OK\n");
	return 0;
}
