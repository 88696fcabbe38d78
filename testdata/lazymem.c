// cflags: -pthread
// lazymem: fills a large anonymous mapping with a pattern and, once
// triggered, checks it: for lazy restore, where the pages arrive while it
// runs.
//
// Protocol: lazymem MiB MODE   (MODE: check, nodeath, fork, forks, tforks, daemon, remap, threads or loop)
// Fills MiB megabytes with a pattern, writes "ready\n", then polls every
// 1 ms until the file "trigger" in its working directory exists. Then:
//   check: checks every word in address order, writing "checked N\n"
//          after each 64 MiB, then "OK\n"; exits 0 (1 and "FAIL at N\n"
//          on a wrong word).
//   fork:  forks; the child checks every word (from the top down) and
//          exits 0 or 1; the parent checks every word too, waits for the
//          child and writes "OK\n" (or "FAIL ...") and exits 0 (or 1).
//   forks: forks three children one after another; the last one forks
//          a grandchild first. Each of them writes "child PID\n", then
//          checks every word (every other one from the top down), writing
//          "child PID checked N\n" after each 64 MiB, and exits 0 (1 and
//          "FAIL ..." on a wrong word); the third waits for the grandchild
//          (exit 1 unless it exited 0). The parent checks every word too,
//          waits for its children and writes "OK\n" and exits 0 (or
//          "FAIL ..." and 1).
//   tforks: four threads fork at the same moment (a barrier); each child
//          is a child of the forks mode, each thread waits for its own;
//          then the parent checks every word and writes "OK\n" (exit 0)
//          or "FAIL ..." (exit 1).
//   daemon: forks a child that forks a grandchild and exits at once; the
//          grandchild (reparented) is a child of the forks mode. The
//          parent waits for the child, checks every word and writes
//          "OK\n" (exit 0) or "FAIL ..." (exit 1).
//   nodeath: clears its parent-death signal (prctl), then as check.
//   remap: moves the top half elsewhere (mremap), drops 1 MiB at a
//          quarter (MADV_DONTNEED: must read zero), unmaps the MiB after
//          it, then checks the rest where it now is: "OK\n" and exit 0,
//          or "FAIL ..." and exit 1.
//   threads: four threads check a quarter each while SIGALRM arrives
//          every millisecond (setitimer), its handler checking one word
//          too; "OK\n" and exit 0 (at least one signal handled), or
//          "FAIL ..." and exit 1.
//   loop:  checks the whole mapping again and again, writing "pass N\n"
//          after each pass, until killed; "FAIL at N\n" and exit 1 on a
//          wrong word.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = write(1, s, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		s += n;
		len -= (size_t)n;
	}
}

static uint64_t word(uint64_t i)
{
	uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL;
	return x ^ (x >> 29);
}

static uint64_t *mem;
static uint64_t words;
static const char *who = ""; // what check's reports begin with

// check checks words [0, words) upwards (down: downwards) and returns -1,
// or the index of the first wrong word. every: report each that many
// words (0: never).
static int64_t check(int down, uint64_t every)
{
	char line[64];
	for (uint64_t k = 0; k < words; k++) {
		uint64_t i = down ? words - 1 - k : k;
		if (mem[i] != word(i))
			return (int64_t)i;
		if (every && (k + 1) % every == 0) {
			snprintf(line, sizeof line, "%schecked %llu\n", who, (unsigned long long)((k + 1) * 8 >> 20));
			say(line);
		}
	}
	return -1;
}

static void fail(const char *who, int64_t i)
{
	char line[96];
	snprintf(line, sizeof line, "FAIL %s at %lld: %#llx\n", who, (long long)i, (unsigned long long)mem[i]);
	say(line);
	_exit(1);
}

// child runs a child of the forks mode: check (down or up), then exit.
static void child(int down)
{
	char line[64], tag[48];
	snprintf(line, sizeof line, "child %d\n", (int)getpid());
	say(line);
	snprintf(tag, sizeof tag, "child %d ", (int)getpid());
	who = tag;
	int64_t bad = check(down, 64ULL << 17);
	if (bad >= 0)
		fail(tag, bad);
}

// forks runs the forks mode (see the top).
static int forks(void)
{
	pid_t kids[3];
	for (int k = 0; k < 3; k++) {
		kids[k] = fork();
		if (kids[k] < 0) {
			say("fork failed\n");
			return 2;
		}
		if (kids[k] != 0)
			continue;
		if (k < 2) {
			child(k % 2);
			_exit(0);
		}
		pid_t grand = fork();
		if (grand < 0) {
			say("fork failed\n");
			_exit(2);
		}
		if (grand == 0) {
			child(1);
			_exit(0);
		}
		child(0);
		int st;
		if (waitpid(grand, &st, 0) != grand || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			say("FAIL grandchild status\n");
			_exit(1);
		}
		_exit(0);
	}
	int64_t bad = check(0, 0);
	if (bad >= 0)
		fail("parent", bad);
	for (int k = 0; k < 3; k++) {
		int st;
		if (waitpid(kids[k], &st, 0) != kids[k] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			say("FAIL child status\n");
			return 1;
		}
	}
	say("OK\n");
	return 0;
}

static pthread_barrier_t forkers;

// forker is a thread of the tforks mode: it forks with the others, and
// waits for its child (the result: non-NULL when it failed).
static void *forker(void *arg)
{
	int k = (int)(uintptr_t)arg;
	pthread_barrier_wait(&forkers);
	pid_t kid = fork();
	if (kid < 0)
		return (void *)1;
	if (kid == 0) {
		child(k % 2);
		_exit(0);
	}
	int st;
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return (void *)1;
	return NULL;
}

// tforks runs the tforks mode (see the top).
static int tforks(void)
{
	pthread_t th[4];
	pthread_barrier_init(&forkers, NULL, 4);
	for (uintptr_t k = 0; k < 4; k++)
		if (pthread_create(&th[k], NULL, forker, (void *)k) != 0) {
			say("FAIL pthread_create\n");
			return 1;
		}
	int bad = 0;
	for (int k = 0; k < 4; k++) {
		void *r;
		pthread_join(th[k], &r);
		if (r != NULL)
			bad = 1;
	}
	int64_t i = check(0, 0);
	if (i >= 0)
		fail("parent", i);
	if (bad) {
		say("FAIL child status\n");
		return 1;
	}
	say("OK\n");
	return 0;
}

// daemon runs the daemon mode (see the top).
static int daemonize(void)
{
	pid_t kid = fork();
	if (kid < 0) {
		say("fork failed\n");
		return 2;
	}
	if (kid == 0) {
		pid_t grand = fork();
		if (grand == 0) {
			child(0);
			_exit(0);
		}
		_exit(grand < 0 ? 2 : 0);
	}
	int st;
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		say("FAIL child status\n");
		return 1;
	}
	int64_t i = check(0, 0);
	if (i >= 0)
		fail("parent", i);
	say("OK\n");
	return 0;
}

static volatile sig_atomic_t alarms, alarm_bad;

static void on_alarm(int sig)
{
	(void)sig;
	uint64_t i = ((uint64_t)alarms * 4099 * 512) % words;
	if (mem[i] != word(i))
		alarm_bad = 1;
	alarms++;
}

static void *quarter(void *arg)
{
	uint64_t q = (uint64_t)(uintptr_t)arg, n = words / 4;
	for (uint64_t k = 0; k < n; k++) {
		uint64_t i = q * n + (q % 2 ? n - 1 - k : k);
		if (mem[i] != word(i))
			return (void *)(uintptr_t)(i + 1);
	}
	return NULL;
}

static int threads(void)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	struct itimerval it = { .it_interval = { 0, 1000 }, .it_value = { 0, 1000 } };
	if (sigaction(SIGALRM, &sa, NULL) != 0 || setitimer(ITIMER_REAL, &it, NULL) != 0) {
		say("FAIL timer\n");
		return 1;
	}
	pthread_t th[4];
	for (uintptr_t q = 0; q < 4; q++)
		if (pthread_create(&th[q], NULL, quarter, (void *)q) != 0) {
			say("FAIL pthread_create\n");
			return 1;
		}
	int bad = 0;
	for (int q = 0; q < 4; q++) {
		void *r;
		pthread_join(th[q], &r);
		if (r != NULL) {
			char line[64];
			snprintf(line, sizeof line, "FAIL thread %d at %llu\n", q, (unsigned long long)((uintptr_t)r - 1));
			say(line);
			bad = 1;
		}
	}
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	if (alarm_bad) {
		say("FAIL in the signal handler\n");
		return 1;
	}
	if (bad)
		return 1;
	char line[64];
	snprintf(line, sizeof line, "OK %d signals\n", (int)alarms);
	say(line);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 64;
	const char *mode = argc > 2 ? argv[2] : "check";
	words = mib << 17;
	mem = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		say("mmap failed\n");
		return 2;
	}
	for (uint64_t i = 0; i < words; i++)
		mem[i] = word(i);
	say("ready\n");
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
	while (access("trigger", F_OK) != 0)
		nanosleep(&ts, NULL);
	int64_t bad;
	if (strcmp(mode, "fork") == 0) {
		pid_t child = fork();
		if (child < 0) {
			say("fork failed\n");
			return 2;
		}
		if (child == 0) {
			if ((bad = check(1, 0)) >= 0)
				fail("child", bad);
			_exit(0);
		}
		if ((bad = check(0, 0)) >= 0)
			fail("parent", bad);
		int st;
		if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			say("FAIL child status\n");
			return 1;
		}
		say("OK\n");
		return 0;
	}
	if (strcmp(mode, "threads") == 0)
		return threads();
	if (strcmp(mode, "forks") == 0)
		return forks();
	if (strcmp(mode, "tforks") == 0)
		return tforks();
	if (strcmp(mode, "daemon") == 0)
		return daemonize();
	if (strcmp(mode, "nodeath") == 0 && prctl(PR_SET_PDEATHSIG, 0) != 0) {
		say("FAIL prctl\n");
		return 1;
	}
	if (strcmp(mode, "remap") == 0) {
		uint64_t half = words / 2, quarter = words / 4, mw = 1 << 17; // words per MiB
		void *to = mmap(NULL, half * 8, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t *top = mremap(mem + half, half * 8, half * 8, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		if (to == MAP_FAILED || top == MAP_FAILED) {
			say("FAIL mremap\n");
			return 1;
		}
		if (madvise(mem + quarter, mw * 8, MADV_DONTNEED) != 0 || munmap(mem + quarter + mw, mw * 8) != 0) {
			say("FAIL madvise/munmap\n");
			return 1;
		}
		for (uint64_t i = 0; i < half; i++) {
			if (i >= quarter && i < quarter + mw) {
				if (mem[i] != 0)
					fail("dropped", (int64_t)i);
			} else if (i >= quarter + mw && i < quarter + 2 * mw) {
				continue;
			} else if (mem[i] != word(i)) {
				fail("kept", (int64_t)i);
			}
		}
		for (uint64_t i = 0; i < half; i++)
			if (top[i] != word(half + i)) {
				char line[96];
				snprintf(line, sizeof line, "FAIL moved at %llu\n", (unsigned long long)i);
				say(line);
				return 1;
			}
		say("OK\n");
		return 0;
	}
	if (strcmp(mode, "loop") == 0) {
		char line[32];
		for (unsigned long n = 1;; n++) {
			if ((bad = check(n % 2, 0)) >= 0)
				fail("loop", bad);
			snprintf(line, sizeof line, "pass %lu\n", n);
			say(line);
		}
	}
	if ((bad = check(0, 64ULL << 17)) >= 0)
		fail("check", bad);
	say("OK\n");
	return 0;
}
