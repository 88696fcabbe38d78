// victim: a memory writer that checks itself, for the tests that SIGKILL
// rtcr at random moments of a dump.
//
// Exercises: a process that is almost always inside nanosleep (so a dump
// finds it in an interrupted system call), writes its memory all the time,
// catches SIGUSR1, and notices when it comes back wrong.
//
// Protocol: victim MIB
// It fills MIB MiB with a known pattern, prints "ready", then loops: each
// iteration checks and rewrites one 8-byte word per page in turn, checks
// that its signal mask is still empty, sleeps 1 ms, and checks the sleep's
// result (EINTR only when a SIGUSR1 arrived). Every 64 iterations it prints "tick N". On SIGUSR1 it prints
// "usr1 K" (K counts the signals). Anything wrong is printed ("CORRUPT",
// "MASK", "SLEEP") and the program exits with status 3, 4 or 5; a
// resumption with a bad register state shows as a crash (SIGTRAP, SIGSEGV).
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 1;
	size_t pages = (size_t)mib * 256;
	uint64_t *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 2;
	for (size_t p = 0; p < pages; p++)
		for (size_t w = 0; w < 512; w++)
			mem[p * 512 + w] = p * 1000003 + w;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t none, cur;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	say("ready %ld\n", mib);

	struct timespec ts = {0, 1000000};
	long seen = 0;
	for (uint64_t i = 0;; i++) {
		size_t p = i % pages;
		uint64_t want = i < pages ? p * 1000003 : i - pages;
		if (mem[p * 512] != want) {
			say("CORRUPT page %ld\n", (long)p);
			_exit(3);
		}
		mem[p * 512] = i;
		sigprocmask(SIG_BLOCK, NULL, &cur);
		if (memcmp(&cur, &none, sizeof(cur)) != 0) {
			say("MASK %ld\n", (long)i);
			_exit(4);
		}
		sig_atomic_t before = usr1;
		if (nanosleep(&ts, NULL) != 0 && (errno != EINTR || usr1 == before)) {
			// EINTR only from our SIGUSR1: a checkpoint must not cut a
			// sleep short.
			say("SLEEP errno %ld\n", (long)errno);
			_exit(5);
		}
		if (usr1 != seen) {
			seen = usr1;
			say("usr1 %ld\n", seen);
		}
		if (i % 64 == 0)
			say("tick %ld\n", (long)i);
	}
}
