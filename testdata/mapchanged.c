// mapchanged: one file mapped MAP_SHARED or MAP_PRIVATE, no page copied,
// for the restore checks of mapped files that changed.
//
// Protocol: mapchanged TRIGGER FILE shared|private
// FILE is 64 KiB, byte i == (i*7) & 0xff. The program maps all of it
// read-only, prints "addr 0x...\n" (where the mapping starts) and
// "ready\n", polls every 1 ms until TRIGGER exists, then checks the
// mapping still shows the pattern and prints "OK\n" (exit 0) or
// "FAIL at N\n" (exit 1).
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE (64 * 1024)

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int fd = open(argv[2], O_RDONLY);
	if (fd < 0)
		return 2;
	int flags = strcmp(argv[3], "shared") == 0 ? MAP_SHARED : MAP_PRIVATE;
	unsigned char *m = mmap(NULL, SIZE, PROT_READ, flags, fd, 0);
	if (m == MAP_FAILED)
		return 2;
	close(fd);
	printf("addr %p\nready\n", (void *)m);
	fflush(stdout);
	struct timespec ms = { 0, 1000000 };
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	for (int i = 0; i < SIZE; i++)
		if (m[i] != (unsigned char)(i * 7)) {
			printf("FAIL at %d\n", i);
			return 1;
		}
	printf("OK\n");
	return 0;
}
