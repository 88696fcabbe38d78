// opathlink: an O_PATH fd on a symbolic link itself, for the restore of
// such an fd.
//
// Protocol: opathlink TRIGGER
// In its working directory it creates the file "target" and the symbolic
// link "link" to it, opens "link" with O_PATH|O_NOFOLLOW (fd 3), writes
// "ready\n" and polls every 1 ms until TRIGGER exists. Then it checks that
// fd 3 is O_PATH and names the link (fstat: a symbolic link; readlinkat:
// "target"), printing "OK\n" and exiting 0, or "FAIL: reason\n" and
// exiting 1.
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
	struct stat st;
	char buf[64];
	ssize_t n;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: opathlink TRIGGER\n");
		return 2;
	}
	fd = open("target", O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || close(fd) < 0)
		fail("create target");
	if (symlink("target", "link") < 0)
		fail("symlink");
	if (open("link", O_PATH | O_NOFOLLOW) != 3)
		fail("open the link at fd 3");
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (!(fcntl(3, F_GETFL) & O_PATH))
		fail("fd 3 is not O_PATH");
	if (fstatat(3, "", &st, AT_EMPTY_PATH) < 0 || !S_ISLNK(st.st_mode))
		fail("fd 3 is not a symbolic link");
	n = readlinkat(3, "", buf, sizeof(buf));
	if (n != 6 || memcmp(buf, "target", 6) != 0)
		fail("fd 3 does not read as a link to \"target\"");
	printf("OK\n");
	return 0;
}
