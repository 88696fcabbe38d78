// inorelink: an inotify watch on a file whose watched name was removed
// while another link names it, for the restore of such a watch.
//
// Protocol: inorelink TRIGGER
// In its working directory it makes the file "file", watches it for
// IN_MODIFY (wd 1 of the inotify instance at fd 3, IN_NONBLOCK), links it
// as "file.link", removes "file" and reads the events that left. It writes
// "ready\n" and polls every 1 ms until TRIGGER exists. Then it writes to
// "file.link" and requires an IN_MODIFY event on wd 1, printing "OK\n"
// and exiting 0, or "FAIL: reason\n" and exiting 1.
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
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: inorelink TRIGGER\n");
		return 2;
	}
	fd = open("file", O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || close(fd) < 0)
		fail("create file");
	if (inotify_init1(IN_NONBLOCK) != 3 || inotify_add_watch(3, "file", IN_MODIFY) != 1)
		fail("inotify wd 1 on file at fd 3");
	if (link("file", "file.link") < 0 || unlink("file") < 0)
		fail("link and unlink");
	while (read(3, buf, sizeof(buf)) > 0)
		;
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	fd = open("file.link", O_WRONLY);
	if (fd < 0 || write(fd, "x", 1) != 1 || close(fd) < 0)
		fail("write file.link");
	if (poll(&p, 1, 10000) != 1)
		fail("no event within 10 s");
	n = read(3, buf, sizeof(buf));
	ev = (struct inotify_event *)buf;
	if (n < (ssize_t)sizeof(*ev) || ev->wd != 1 || !(ev->mask & IN_MODIFY))
		fail("the event is not IN_MODIFY on wd 1");
	printf("OK\n");
	return 0;
}
