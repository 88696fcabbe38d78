// locks: holds file locks of each kind for the checkpoint/restore test of
// file locks.
//
// Protocol: locks TRIGGER
// In its working directory the program creates three files of 100 bytes
// and locks them:
//   3  "flock", O_RDWR: flock(LOCK_EX);
//   4  "posix", O_RDWR: POSIX locks (F_SETLK), a write lock on bytes
//      10-19 and a read lock from byte 30 to the end;
//   5  "ofd", O_RDWR: an OFD write lock (F_OFD_SETLK) on the whole file.
// It writes "ready\n" to stdout and polls every 1 ms until the file
// TRIGGER exists. Then it checks it still holds the locks as their owner
// (it can convert each without waiting: flock LOCK_SH|LOCK_NB, F_SETLK and
// F_OFD_SETLK read locks over the same ranges), prints "OK\n" and exits 0,
// or prints "FAIL: reason\n" and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "locks: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int create(const char *name, int want)
{
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd != want) {
		fprintf(stderr, "locks: %s opened as fd %d, want %d\n", name, fd, want);
		exit(2);
	}
	char buf[100];
	memset(buf, 'x', sizeof(buf));
	if (write(fd, buf, sizeof(buf)) != sizeof(buf))
		die("write");
	return fd;
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	return fcntl(fd, cmd, &fl);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: locks TRIGGER\n");
		return 2;
	}
	create("flock", 3);
	create("posix", 4);
	create("ofd", 5);
	if (flock(3, LOCK_EX) != 0)
		die("flock");
	if (setlk(4, F_SETLK, F_WRLCK, 10, 10) != 0 || setlk(4, F_SETLK, F_RDLCK, 30, 0) != 0)
		die("F_SETLK");
	if (setlk(5, F_OFD_SETLK, F_WRLCK, 0, 0) != 0)
		die("F_OFD_SETLK");
	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	struct timespec ms = { 0, 1000000 };
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (flock(3, LOCK_SH | LOCK_NB) != 0) {
		printf("FAIL: flock LOCK_SH on fd 3: %s\n", strerror(errno));
		return 1;
	}
	if (setlk(4, F_SETLK, F_RDLCK, 10, 10) != 0) {
		printf("FAIL: F_SETLK read on fd 4: %s\n", strerror(errno));
		return 1;
	}
	if (setlk(5, F_OFD_SETLK, F_RDLCK, 0, 0) != 0) {
		printf("FAIL: F_OFD_SETLK read on fd 5: %s\n", strerror(errno));
		return 1;
	}
	printf("OK\n");
	return 0;
}
