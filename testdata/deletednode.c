// deletednode: a deleted FIFO and a deleted device node held open, for
// their restore.
//
// Protocol: deletednode TRIGGER
// In its working directory it makes the FIFO "fifo", opens it read-write
// (fd 3) and a second time write-only through /proc/self/fd/3 (fd 4),
// writes "queued" into it, makes the device node "null" (/dev/null's
// number, mode 0640) and opens it read-write (fd 5), removes both names
// and forks a child that keeps them. The parent writes "ready\n"; both
// poll every 1 ms until TRIGGER exists. Then the child checks that fd 3
// reads "queued" (once: the FIFO is one, shared), then each checks,
// printing "OK\n" (the parent, after the child exited 0) or "FAIL:
// reason\n": fds 3 and 4 are one FIFO with no name left, what fd 4 writes
// fd 3 reads; fd 5 is a device node with /dev/null's number, mode 0640,
// no name left, that takes writes and reads end of file.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *who, const char *why)
{
	printf("FAIL: %s: %s (errno %s)\n", who, why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void check(const char *who)
{
	struct stat s3, s4, s5;
	char buf[16];

	if (fstat(3, &s3) < 0 || fstat(4, &s4) < 0 || fstat(5, &s5) < 0)
		fail(who, "fstat");
	if (!S_ISFIFO(s3.st_mode) || s3.st_nlink != 0 || s3.st_ino != s4.st_ino || s3.st_dev != s4.st_dev)
		fail(who, "fds 3 and 4 are not one deleted FIFO");
	if (write(4, "more", 4) != 4 || read(3, buf, sizeof(buf)) != 4 || memcmp(buf, "more", 4) != 0)
		fail(who, "fd 3 does not read what fd 4 writes");
	if (!S_ISCHR(s5.st_mode) || s5.st_rdev != makedev(1, 3) || (s5.st_mode & 07777) != 0640 || s5.st_nlink != 0)
		fail(who, "fd 5 is not the deleted null device node");
	if (write(5, "x", 1) != 1 || read(5, buf, sizeof(buf)) != 0)
		fail(who, "fd 5 does not behave as /dev/null");
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	char buf[16];
	pid_t child;
	int status;

	if (argc != 2) {
		fprintf(stderr, "usage: deletednode TRIGGER\n");
		return 2;
	}
	if (mkfifo("fifo", 0600) < 0 || open("fifo", O_RDWR | O_NONBLOCK) != 3)
		fail("parent", "make the FIFO at fd 3");
	if (open("/proc/self/fd/3", O_WRONLY) != 4 || write(4, "queued", 6) != 6)
		fail("parent", "open the FIFO again at fd 4");
	if (mknod("null", S_IFCHR | 0600, makedev(1, 3)) < 0 || chmod("null", 0640) < 0 || open("null", O_RDWR) != 5)
		fail("parent", "make the device node at fd 5");
	if (unlink("fifo") < 0 || unlink("null") < 0)
		fail("parent", "unlink");
	child = fork();
	if (child < 0)
		fail("parent", "fork");
	if (child > 0) {
		printf("ready\n");
		fflush(stdout);
	}
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (child == 0) {
		if (read(3, buf, sizeof(buf)) != 6 || memcmp(buf, "queued", 6) != 0)
			fail("child", "fd 3 does not read \"queued\"");
		check("child");
		return 0;
	}
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("parent", "child failed");
	check("parent");
	printf("OK\n");
	return 0;
}
