// relinked: a file open under a name it no longer has, linked under
// another, for the restore through that other name.
//
// Protocol: relinked TRIGGER
// In its working directory it writes "data" to the file "file", links it
// as "file.link", opens "file" read-write (fd 3) at position 2 and removes
// the name "file". It writes "ready\n" and polls every 1 ms until TRIGGER
// exists. Then it checks, printing "OK\n" and exiting 0, or "FAIL:
// reason\n" and exiting 1: fd 3 is the file "file.link" (same inode, one
// link), at position 2, and what it writes shows in "file.link".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	struct stat f3, fl;
	char buf[16];
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: relinked TRIGGER\n");
		return 2;
	}
	fd = open("file", O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || write(fd, "data", 4) != 4 || close(fd) < 0)
		fail("write file");
	if (link("file", "file.link") < 0)
		fail("link");
	if (open("file", O_RDWR) != 3 || lseek(3, 2, SEEK_SET) != 2)
		fail("open file at fd 3");
	if (unlink("file") < 0)
		fail("unlink");
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (fstat(3, &f3) < 0 || stat("file.link", &fl) < 0)
		fail("stat");
	if (f3.st_ino != fl.st_ino || f3.st_dev != fl.st_dev || f3.st_nlink != 1)
		fail("fd 3 is not file.link");
	if (lseek(3, 0, SEEK_CUR) != 2)
		fail("fd 3 is not at position 2");
	if (write(3, "TA", 2) != 2)
		fail("write fd 3");
	fd = open("file.link", O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof(buf)) != 4 || memcmp(buf, "daTA", 4) != 0)
		fail("file.link does not read \"daTA\"");
	printf("OK\n");
	return 0;
}
