// victim: a memory writer that checks itself, for the tests that SIGKILL
// rtcr at random moments of a dump.
//
// Exercises: a process that is almost always inside nanosleep (so a dump
// finds it in an interrupted system call), writes its memory all the time,
// catches SIGUSR1, and notices when it comes back wrong.
//
// Protocol: victim MIB [THREADS [PROCS]]
// It fills MIB MiB with a known pattern, forks PROCS-1 (default 0)
// children that run the same checks on their copy of it silently (they die
// with the victim; one that exits makes the victim print "CHILD" and exit
// with status 8), starts THREADS-1 (default 0)
// worker threads that run the same checks on 64 pages of their own, prints
// "ready", then loops: each
// iteration checks and rewrites one 8-byte word per page in turn, checks
// that its signal mask is still empty, sleeps 1 ms, and checks the sleep's
// result (EINTR only when a SIGUSR1 arrived). Every 64 iterations it prints "tick N". On SIGUSR1 it prints
// "usr1 K" (K counts the signals). Anything wrong is printed ("CORRUPT",
// "MASK", "SLEEP") and the program exits with status 3, 4 or 5; a
// resumption with a bad register state shows as a crash (SIGTRAP, SIGSEGV).
// A tick is printed only when every worker made progress since the last
// one; a worker stuck for 10 s prints "STALL" and exits with status 7.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1++;
}

static void say(const char *fmt, long v)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), fmt, v);
	if (write(1, buf, (size_t)n) < 0)
		_exit(6);
}

#define MAXW 16

static volatile long progress[MAXW];

// check runs one round on region mem of pages pages: check and rewrite a
// word, check the mask, sleep 1 ms (EINTR only from our SIGUSR1).
static void check(uint64_t *mem, size_t pages, uint64_t i, const sigset_t *none)
{
	size_t p = i % pages;
	uint64_t want = i < pages ? p * 1000003 : i - pages;
	if (mem[p * 512] != want) {
		say("CORRUPT page %ld\n", (long)p);
		_exit(3);
	}
	mem[p * 512] = i;
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	for (int s = 1; s < 65; s++) {
		if (sigismember(&cur, s) != sigismember(none, s)) {
			say("MASK %ld\n", (long)i);
			_exit(4);
		}
	}
	struct timespec ts = {0, 1000000};
	sig_atomic_t before = usr1;
	if (nanosleep(&ts, NULL) != 0 && (errno != EINTR || usr1 == before)) {
		// EINTR only from our SIGUSR1: a checkpoint must not cut a
		// sleep short.
		say("SLEEP errno %ld\n", (long)errno);
		_exit(5);
	}
}

static uint64_t *region(size_t pages)
{
	uint64_t *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		_exit(2);
	for (size_t p = 0; p < pages; p++)
		for (size_t w = 0; w < 512; w++)
			mem[p * 512 + w] = p * 1000003 + w;
	return mem;
}

static void *worker(void *arg)
{
	long id = (long)arg;
	uint64_t *mem = region(64);
	sigset_t none;
	sigemptyset(&none);
	for (uint64_t i = 0;; i++) {
		check(mem, 64, i, &none);
		progress[id]++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 1;
	long threads = argc > 2 ? atol(argv[2]) : 1;
	long procs = argc > 3 ? atol(argv[3]) : 1;
	if (threads < 1 || threads > MAXW || procs < 1 || procs > 64)
		return 2;
	size_t pages = (size_t)mib * 256;
	uint64_t *mem = region(pages);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	pid_t self = getpid();
	for (long c = 1; c < procs; c++) {
		pid_t pid = fork();
		if (pid < 0)
			return 2;
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != self)
				_exit(0);
			for (uint64_t i = 0;; i++)
				check(mem, pages, i, &none);
		}
	}
	for (long w = 1; w < threads; w++) {
		pthread_t th;
		if (pthread_create(&th, NULL, worker, (void *)w) != 0)
			return 2;
	}
	say("ready %ld\n", mib);

	long seen = 0, last[MAXW] = {0};
	struct timespec since;
	clock_gettime(CLOCK_MONOTONIC, &since);
	for (uint64_t i = 0;; i++) {
		check(mem, pages, i, &none);
		int st;
		pid_t gone = procs > 1 ? waitpid(-1, &st, WNOHANG) : 0;
		if (gone > 0) {
			say("CHILD status %ld\n", (long)st);
			_exit(8);
		}
		if (usr1 != seen) {
			seen = usr1;
			say("usr1 %ld\n", seen);
		}
		if (i % 64 != 0)
			continue;
		int all = 1;
		for (long w = 1; w < threads; w++)
			all = all && progress[w] != last[w];
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (all) {
			for (long w = 1; w < threads; w++)
				last[w] = progress[w];
			since = now;
			say("tick %ld\n", (long)i);
		} else if (now.tv_sec - since.tv_sec > 10) {
			say("STALL %ld\n", (long)i);
			_exit(7);
		}
	}
}
