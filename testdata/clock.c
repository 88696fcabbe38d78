// clock: measures elapsed CLOCK_MONOTONIC and CLOCK_BOOTTIME time across a
// checkpoint, and checks the pids it saw before it.
//
// Protocol: clock <trigger>
// Every 1 ms it reads both clocks and keeps the largest step between two
// readings of each, and notes any step backwards. It prints "ready pid P\n"
// (P = getpid()) after 50 ms, then waits for the trigger file. Then it
// prints "mono_max_ms M boot_max_ms B backwards K pid P\n", where P is
// getpid() now, and exits 0, or 1 when a clock went backwards or the pid
// changed.
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	pid_t pid = getpid();
	long long pm = now(CLOCK_MONOTONIC), pb = now(CLOCK_BOOTTIME);
	long long mmax = 0, bmax = 0, start = pm;
	int back = 0, ready = 0;
	struct timespec ms = { 0, 1000000 };
	char buf[160];
	for (;;) {
		nanosleep(&ms, NULL);
		long long m = now(CLOCK_MONOTONIC), b = now(CLOCK_BOOTTIME);
		if (m < pm || b < pb)
			back++;
		if (m - pm > mmax)
			mmax = m - pm;
		if (b - pb > bmax)
			bmax = b - pb;
		pm = m, pb = b;
		if (!ready && m - start > 50000000LL) {
			snprintf(buf, sizeof buf, "ready pid %d\n", pid);
			(void)!write(1, buf, strlen(buf));
			ready = 1;
		}
		if (ready && access(argv[1], F_OK) == 0)
			break;
	}
	snprintf(buf, sizeof buf, "mono_max_ms %lld boot_max_ms %lld backwards %d pid %d\n",
		 mmax / 1000000, bmax / 1000000, back, getpid());
	(void)!write(1, buf, strlen(buf));
	return back || getpid() != pid;
}
