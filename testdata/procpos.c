// procpos: a file of /proc (size 0) read, so that its position is past
// its size, for the restore test of such a position.
//
// Protocol: procpos TRIGGER
// The program opens /proc/sys/fs/nr_open as fd 3 and reads it (its
// position is then the bytes read), writes "ready\n" and polls every
// 1 ms until TRIGGER exists; then it writes "OK\n" and exits 0 if fd 3's
// position is still what it read, else "FAIL: …" and exits 1.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec ts = {0, 1000000};
	char buf[64];

	if (argc != 2)
		return 2;
	if (open("/proc/sys/fs/nr_open", O_RDONLY) != 3)
		return 2;
	ssize_t n = read(3, buf, sizeof(buf));
	if (n <= 0)
		return 2;
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ts, NULL);
	off_t pos = lseek(3, 0, SEEK_CUR);
	if (pos != n) {
		printf("FAIL: position %ld, was %ld\n", (long)pos, (long)n);
		return 1;
	}
	printf("OK\n");
	return 0;
}
