// seq: the two ends of a shell pipeline, `seq produce | seq consume`.
//
// Exercises: a process tree made by a shell (sh and its two children), a
// pipe between two processes with bytes buffered in it, a reader blocked
// in read and a writer blocked in write or nanosleep.
//
// produce: writes "0\n", "1\n", … to stdout, one line every 200 µs.
// consume: reads lines from stdin and checks each is the previous plus
// one; every 500 lines it prints "ok N\n" (N = lines so far) to stdout; on
// a gap it prints "FAIL got X after Y\n" and exits 1.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "produce") == 0) {
		struct timespec t = { 0, 200000 };
		char buf[32];
		for (long n = 0;; n++) {
			int len = snprintf(buf, sizeof buf, "%ld\n", n);
			if (write(1, buf, len) != len)
				return 1;
			nanosleep(&t, NULL);
		}
	}
	if (argc == 2 && strcmp(argv[1], "consume") == 0) {
		char line[64];
		long want = 0;
		setvbuf(stdout, NULL, _IONBF, 0);
		while (fgets(line, sizeof line, stdin)) {
			long got = atol(line);
			if (got != want) {
				printf("FAIL got %ld after %ld\n", got, want - 1);
				return 1;
			}
			want++;
			if (want % 500 == 0)
				printf("ok %ld\n", want);
		}
		printf("FAIL end of input after %ld\n", want);
		return 1;
	}
	fprintf(stderr, "usage: seq produce|consume\n");
	return 2;
}
