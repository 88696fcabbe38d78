// timers: sets up interval and POSIX timers for the round-trip tests of
// internal/timer (and the checkpoint/restore tests), waits for a trigger
// and then checks that its timers still work as set up.
//
// Protocol: timers TRIGGER
// The program creates, with raw timer_create calls (so the timer_t values
// are the kernel ids: 0, 1, 2 in a fresh process), in this order:
//   id 0  CLOCK_MONOTONIC, SIGEV_SIGNAL SIGUSR1, sigev_value 0x1234, every
//         5 ms (first expiry in 5 ms); SIGUSR1 counts ticks;
//   id 1  CLOCK_BOOTTIME, SIGEV_NONE, never armed;
//   id 2  CLOCK_REALTIME, SIGEV_THREAD_ID SIGUSR2 to the main thread,
//         sigev_value 0xabcd, one-shot in 10 s; SIGUSR2 is counted;
// and setitimer(ITIMER_REAL) first in 3 s, then every 2 s (SIGALRM is
// counted). It keeps a copy of /proc/self/timers, writes "ready\n" to stdout
// and polls every 1 ms (nanosleep, EINTR tolerated) until the file TRIGGER
// exists. Then it checks, printing "OK\n" and exiting 0 when all hold,
// "FAIL: reason\n" and exiting 1 otherwise:
//   - at least 50 expirations of timer 0 (signals plus their si_overrun)
//     arrive within 0.5 s (100 are due);
//   - timer_gettime with the ids it stored: timer 0 has a 5 ms interval
//     and 0 < value <= 5 ms, timer 1 is still disarmed, timer 2 is a
//     one-shot with at most 10 s left (0 once SIGUSR2 came);
//   - getitimer(ITIMER_REAL) has a 2 s interval and a non-zero value;
//   - /proc/self/timers reads as it did at the start (same ids, signals,
//     sigev_values, notification targets and clocks).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks, usr2s, alarms;
static char before[4096], after[4096];

// on_usr1 counts the expirations of timer 0: one per signal plus those
// that came while it was pending (si_overrun). A process that waits for
// its CPU on a loaded machine gets fewer signals, not fewer expirations.
static void on_usr1(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	ticks += 1 + si->si_overrun;
}
static void on_usr2(int sig) { (void)sig; usr2s++; }
static void on_alrm(int sig) { (void)sig; alarms++; }

static void die(const char *what)
{
	fprintf(stderr, "timers: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why, long a, long b)
{
	printf("FAIL: %s (%ld, %ld)\n", why, a, b);
	exit(1);
}

static int create(clockid_t clock, int notify, int signo, long value)
{
	struct sigevent sev;
	int id = -1;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = signo;
	sev.sigev_value.sival_ptr = (void *)value;
	if (notify == SIGEV_THREAD_ID)
		sev._sigev_un._tid = gettid();
	if (syscall(SYS_timer_create, clock, &sev, &id))
		die("timer_create");
	return id;
}

static void arm(int id, long value_ns, long interval_ns)
{
	struct itimerspec its = {
		.it_interval = { interval_ns / 1000000000, interval_ns % 1000000000 },
		.it_value = { value_ns / 1000000000, value_ns % 1000000000 },
	};
	if (syscall(SYS_timer_settime, id, 0, &its, NULL))
		die("timer_settime");
}

static long gettime(int id, long *interval_ns)
{
	struct itimerspec its;

	if (syscall(SYS_timer_gettime, id, &its))
		fail("timer_gettime with a stored id failed: errno, id", errno, id);
	*interval_ns = its.it_interval.tv_sec * 1000000000L + its.it_interval.tv_nsec;
	return its.it_value.tv_sec * 1000000000L + its.it_value.tv_nsec;
}

static void read_timers(char *buf, size_t size)
{
	int fd = open("/proc/self/timers", O_RDONLY);
	size_t n = 0;
	ssize_t r;

	if (fd < 0)
		die("open /proc/self/timers");
	while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) != 0) {
		if (r < 0 && errno != EINTR)
			die("read /proc/self/timers");
		if (r > 0)
			n += r;
	}
	buf[n] = 0;
	close(fd);
}

static long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct timespec ms = { 0, 1000000 };
	struct itimerval itv = { { 2, 0 }, { 3, 0 } };
	long start, n0, interval, value;
	int ids[3];

	if (argc != 2) {
		fprintf(stderr, "usage: timers TRIGGER\n");
		return 2;
	}
	struct sigaction sa = { .sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGUSR2, on_usr2);
	signal(SIGALRM, on_alrm);
	ids[0] = create(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, 0x1234);
	ids[1] = create(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0);
	ids[2] = create(CLOCK_REALTIME, SIGEV_THREAD_ID, SIGUSR2, 0xabcd);
	if (ids[0] != 0 || ids[1] != 1 || ids[2] != 2)
		fail("timer ids are not 0, 1, 2: first two", ids[0], ids[1]);
	arm(ids[0], 5000000, 5000000);
	arm(ids[2], 10000000000L, 0);
	if (setitimer(ITIMER_REAL, &itv, NULL))
		die("setitimer");
	read_timers(before, sizeof(before));
	printf("ready\n");
	fflush(stdout);

	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL); // EINTR (a tick): just poll again

	n0 = ticks;
	for (start = now_ns(); now_ns() - start < 500000000L;)
		nanosleep(&ms, NULL);
	if (ticks - n0 < 50)
		fail("fewer than 50 ticks in 0.5 s: ticks, before", ticks - n0, n0);
	value = gettime(ids[0], &interval);
	if (interval != 5000000 || value <= 0 || value > 5000000)
		fail("timer 0 is not a 5 ms interval timer: interval, value", interval, value);
	value = gettime(ids[1], &interval);
	if (interval != 0 || value != 0)
		fail("timer 1 is armed: interval, value", interval, value);
	value = gettime(ids[2], &interval);
	if (interval != 0 || value > 10000000000L || (value == 0 && !usr2s))
		fail("timer 2 is not a 10 s one-shot: interval, value", interval, value);
	if (getitimer(ITIMER_REAL, &itv))
		die("getitimer");
	if (itv.it_interval.tv_sec != 2 || itv.it_interval.tv_usec != 0 ||
	    (itv.it_value.tv_sec == 0 && itv.it_value.tv_usec == 0))
		fail("ITIMER_REAL lost its 2 s interval or value: sec, usec",
		     itv.it_interval.tv_sec, itv.it_value.tv_usec);
	read_timers(after, sizeof(after));
	if (strcmp(before, after) != 0) {
		printf("FAIL: /proc/self/timers changed\nbefore:\n%safter:\n%s", before, after);
		return 1;
	}
	printf("OK\n");
	return 0;
}
