// counter: prints n = 0, 1, 2, ... one per line, forever.
//
// Exercises: the simplest possible target (registers, stack, a file-backed
// stdout, a task sleeping in nanosleep). Must also build with -static.
//
// Protocol: counter [interval_ms]   (default 10)
// Each iteration writes "%d\n" of n to stdout with write(2) and then sleeps
// interval_ms. It never exits. Tests check that after a restore the lines
// continue with no gap and no restart: each line == previous line + 1.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		buf += n;
		len -= (size_t)n;
	}
}

int main(int argc, char **argv)
{
	long interval_ms = argc > 1 ? atol(argv[1]) : 10;
	struct timespec ts = {
		.tv_sec = interval_ms / 1000,
		.tv_nsec = (interval_ms % 1000) * 1000000L,
	};
	char buf[32];

	for (long n = 0;; n++) {
		int len = snprintf(buf, sizeof(buf), "%ld\n", n);
		write_all(1, buf, (size_t)len);
		// An EINTR (e.g. from a checkpoint) only shortens one sleep.
		nanosleep(&ts, NULL);
	}
}
