// novdso: a process that unmapped its vdso (and vvar), for the dump and
// restore of a process without one.
//
// Protocol: novdso TRIGGER
// It unmaps its [vdso], [vvar] and [vvar_vclock] (found in
// /proc/self/maps), writes "ready\n" and polls every 1 ms (nanosleep, a
// system call: nothing of the vdso is used after the unmap) until TRIGGER
// exists. Then it checks that /proc/self/maps shows none of the three,
// printing "OK\n" and exiting 0, or "FAIL: reason\n" and exiting 1.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

// special returns whether a maps line is one of the vdso areas.
static int special(const char *line)
{
	return strstr(line, "[vdso]") || strstr(line, "[vvar]") || strstr(line, "[vvar_vclock]");
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	unsigned long start[8], end[8];
	char line[512];
	int i, n = 0;
	FILE *f;

	if (argc != 2) {
		fprintf(stderr, "usage: novdso TRIGGER\n");
		return 2;
	}
	f = fopen("/proc/self/maps", "r");
	if (f == NULL)
		fail("open maps");
	while (n < 8 && fgets(line, sizeof(line), f))
		if (special(line) && sscanf(line, "%lx-%lx", &start[n], &end[n]) == 2)
			n++;
	fclose(f);
	if (n == 0)
		fail("no vdso to unmap");
	for (i = 0; i < n; i++)
		if (syscall(SYS_munmap, start[i], end[i] - start[i]) != 0)
			fail("munmap");
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	f = fopen("/proc/self/maps", "r");
	if (f == NULL)
		fail("open maps");
	while (fgets(line, sizeof(line), f))
		if (special(line))
			fail("a vdso area is mapped again");
	fclose(f);
	printf("OK\n");
	return 0;
}
