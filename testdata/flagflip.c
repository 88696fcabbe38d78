// flagflip: one private anonymous region whose VmFlags change on a
// trigger, for the check that VmFlags read before a freeze are checked in
// it (internal/mem/preread_linux.go).
//
// Protocol: flagflip TRIGGER
// Maps 16 pages (a mapping of their own between PROT_NONE pages), fills
// them, prints "region START END\n" (hex, END
// exclusive) and "ready\n", then polls every 1 ms until TRIGGER exists;
// then marks the region MADV_DONTDUMP (a flag on the whole mapping: no
// line of /proc/PID/maps changes), prints "flipped\n" and sleeps forever.
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE (16 * 4096)

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	// Between two PROT_NONE pages: a mapping of its own, which the flag
	// changes without splitting it or merging it with a neighbour.
	unsigned char *g = mmap(NULL, SIZE + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED)
		return 2;
	unsigned char *m = g + 4096;
	if (mprotect(m, SIZE, PROT_READ | PROT_WRITE) != 0)
		return 2;
	memset(m, 'f', SIZE);
	printf("region %lx %lx\nready\n", (unsigned long)m, (unsigned long)m + SIZE);
	fflush(stdout);
	struct timespec ms = { 0, 1000000 };
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (madvise(m, SIZE, MADV_DONTDUMP) != 0)
		return 3;
	printf("flipped\n");
	fflush(stdout);
	for (;;)
		pause();
}
