// inodeleted: an inotify watch on a file deleted while the program holds
// it open, for the restore of such a watch.
//
// Protocol: inodeleted TRIGGER
// In its working directory it makes the file "file", opens it read-write
// (fd 4), watches it for IN_MODIFY (wd 1 of the inotify instance at fd 3,
// IN_NONBLOCK) and removes it. It writes "ready\n" and polls every 1 ms
// until TRIGGER exists. Then it writes to fd 4 and requires an IN_MODIFY
// event on wd 1, printing "OK\n" and exiting 0, or "FAIL: reason\n" and
// exiting 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
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
	char buf[4096] __attribute__((aligned(8)));
	struct inotify_event *ev;
	struct pollfd p = {3, POLLIN, 0};
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: inodeleted TRIGGER\n");
		return 2;
	}
	if (inotify_init1(IN_NONBLOCK) != 3)
		fail("inotify at fd 3");
	if (open("file", O_CREAT | O_RDWR, 0644) != 4)
		fail("open file at fd 4");
	if (inotify_add_watch(3, "file", IN_MODIFY) != 1)
		fail("inotify wd 1 on file");
	if (unlink("file") < 0)
		fail("unlink");
	while (read(3, buf, sizeof(buf)) > 0)
		;
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (write(4, "x", 1) != 1)
		fail("write fd 4");
	if (poll(&p, 1, 10000) != 1)
		fail("no event within 10 s");
	n = read(3, buf, sizeof(buf));
	ev = (struct inotify_event *)buf;
	if (n < (ssize_t)sizeof(*ev) || ev->wd != 1 || !(ev->mask & IN_MODIFY))
		fail("the event is not IN_MODIFY on wd 1");
	printf("OK\n");
	return 0;
}
