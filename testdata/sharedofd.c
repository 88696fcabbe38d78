// sharedofd: holds one open file description on several fds and in a
// forked child, for the checkpoint/restore test of shared open files.
//
// Protocol: sharedofd TRIGGER
// In its working directory the program creates "data" holding
// "0123456789", opens it O_RDWR as fd 3 at offset 2, dups it to fd 4 and
// forks a child holding both. It writes "ready\n" to stdout and both
// processes poll every 1 ms until the file TRIGGER exists. Then the parent
// checks, through one open file: fd 3 is at offset 2; reading 2 bytes from
// fd 4 gives "23" and moves fd 3 to 4; O_NONBLOCK set on fd 4 shows on
// fd 3. It creates "go"; the child, once "go" exists, checks its fd 3 is at
// 4 with O_NONBLOCK (the parent's open file), seeks its fd 4 to 7 and
// exits. The parent waits for it and checks its fd 3 is at 7. It prints
// "OK\n" and exits 0 when all hold, "FAIL: reason\n" and exits 1
// otherwise.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "sharedofd: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *who, const char *why, long got)
{
	printf("FAIL: %s: %s (got %ld)\n", who, why, got);
	fflush(stdout);
	exit(1);
}

static void wait_for(const char *path)
{
	struct timespec ts = {0, 1000000};
	while (access(path, F_OK) != 0)
		nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sharedofd TRIGGER\n");
		return 2;
	}
	if (open("data", O_RDWR | O_CREAT | O_TRUNC, 0600) != 3)
		die("open data");
	if (write(3, "0123456789", 10) != 10 || lseek(3, 2, SEEK_SET) != 2)
		die("fill data");
	if (dup2(3, 4) != 4)
		die("dup2");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		wait_for(argv[1]);
		wait_for("go");
		long pos = lseek(3, 0, SEEK_CUR);
		if (pos != 4)
			fail("child", "fd 3 offset is not the parent's 4", pos);
		if (!(fcntl(3, F_GETFL) & O_NONBLOCK))
			fail("child", "fd 3 lacks the O_NONBLOCK the parent set", fcntl(3, F_GETFL));
		if (lseek(4, 7, SEEK_SET) != 7)
			fail("child", "seek fd 4", errno);
		exit(0);
	}
	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	wait_for(argv[1]);

	long pos = lseek(3, 0, SEEK_CUR);
	if (pos != 2)
		fail("parent", "fd 3 offset", pos);
	char buf[2];
	if (read(4, buf, 2) != 2 || memcmp(buf, "23", 2) != 0)
		fail("parent", "read fd 4", errno);
	pos = lseek(3, 0, SEEK_CUR);
	if (pos != 4)
		fail("parent", "fd 3 offset did not follow the read on fd 4", pos);
	if (fcntl(4, F_SETFL, O_NONBLOCK) != 0)
		die("F_SETFL");
	if (!(fcntl(3, F_GETFL) & O_NONBLOCK))
		fail("parent", "O_NONBLOCK set on fd 4 not on fd 3", fcntl(3, F_GETFL));
	int g = open("go", O_WRONLY | O_CREAT, 0600);
	if (g < 0)
		die("create go");
	close(g);
	int status;
	if (waitpid(child, &status, 0) != child)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("parent", "child failed", status);
	pos = lseek(3, 0, SEEK_CUR);
	if (pos != 7)
		fail("parent", "fd 3 offset did not follow the child's seek", pos);
	printf("OK\n");
	return 0;
}
