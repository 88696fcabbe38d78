// deleteddir: removed directories held as the working directory and as
// fds, for the restore of removed directories.
//
// Protocol: deleteddir TRIGGER [nested]
// In its working directory it makes the directories "cwd" (mode 0750) and
// "sub", enters "cwd" and opens it as fd 3 too, opens "sub" as fd 4,
// removes both, and forks a child that keeps them. The parent writes
// "ready\n"; both poll every 1 ms until ../TRIGGER exists. Then each
// checks, printing "OK\n" (the parent, after the child exited 0) or
// "FAIL: reason\n": the working directory and fd 3 are one removed
// directory (same device and inode, no links, mode 0750, readlink of
// /proc/self/cwd is its path as it was with " (deleted)" after it,
// nothing can be created in it);
// fd 4 is another removed directory; the child's fd 3 and working
// directory are its parent's fd 3.
// With "nested" it only makes "a" and "a/b", opens "a/b" (fd 3), removes
// both, writes "ready\n", waits for TRIGGER and checks that fd 3 is a
// removed directory whose readlink is its old path with " (deleted)", and
// that no "a" is left in the working directory.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *who, const char *why)
{
	printf("FAIL: %s: %s (errno %s)\n", who, why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static char orig[4096]; // the path of "cwd" with " (deleted)"

static void check(const char *who, pid_t parent)
{
	struct stat cwd, f3, f4, p3;
	char link[4096], path[64];
	ssize_t n;

	if (stat(".", &cwd) < 0 || fstat(3, &f3) < 0 || fstat(4, &f4) < 0)
		fail(who, "stat");
	if (!S_ISDIR(cwd.st_mode) || cwd.st_dev != f3.st_dev || cwd.st_ino != f3.st_ino)
		fail(who, "working directory and fd 3 are not one directory");
	if (cwd.st_nlink != 0 || f4.st_nlink != 0 || !S_ISDIR(f4.st_mode))
		fail(who, "the directories are not removed ones");
	if ((cwd.st_mode & 07777) != 0750)
		fail(who, "working directory mode is not 0750");
	if (f4.st_dev == f3.st_dev && f4.st_ino == f3.st_ino)
		fail(who, "fd 4 is fd 3's directory");
	n = readlink("/proc/self/cwd", link, sizeof(link) - 1);
	if (n < 10)
		fail(who, "readlink /proc/self/cwd");
	link[n] = 0;
	if (strcmp(link, orig) != 0)
		fail(who, "readlink /proc/self/cwd is not the directory's path with (deleted)");
	errno = 0;
	if (mkdirat(3, "x", 0700) == 0 || errno != ENOENT)
		fail(who, "mkdir in the removed directory did not fail with ENOENT");
	if (parent > 0) {
		snprintf(path, sizeof(path), "/proc/%d/fd/3", (int)parent);
		if (stat(path, &p3) < 0 || p3.st_dev != f3.st_dev || p3.st_ino != f3.st_ino)
			fail(who, "fd 3 is not the parent's directory");
	}
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	char trigger[4096];
	pid_t parent = getpid(), child;
	int status;

	if (argc != 2 && (argc != 3 || strcmp(argv[2], "nested") != 0)) {
		fprintf(stderr, "usage: deleteddir TRIGGER [nested]\n");
		return 2;
	}
	if (argc == 3) {
		struct stat st;

		char link[4096];
		ssize_t n;

		if (mkdir("a", 0700) < 0 || mkdir("a/b", 0700) < 0 || open("a/b", O_RDONLY | O_DIRECTORY) != 3)
			fail("nested", "make a/b at fd 3");
		if (getcwd(orig, sizeof(orig) - 32) == NULL)
			fail("nested", "getcwd");
		strcat(orig, "/a/b (deleted)");
		if (rmdir("a/b") < 0 || rmdir("a") < 0)
			fail("nested", "rmdir");
		printf("ready\n");
		fflush(stdout);
		while (access(argv[1], F_OK) != 0)
			nanosleep(&ms, NULL);
		if (fstat(3, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0)
			fail("nested", "fd 3 is not a removed directory");
		n = readlink("/proc/self/fd/3", link, sizeof(link) - 1);
		if (n < 0)
			fail("nested", "readlink fd 3");
		link[n] = 0;
		if (strcmp(link, orig) != 0)
			fail("nested", "readlink of fd 3 is not a/b's old path with (deleted)");
		if (access("a", F_OK) == 0 || errno != ENOENT)
			fail("nested", "a directory a is left");
		printf("OK\n");
		return 0;
	}
	snprintf(trigger, sizeof(trigger), "../%s", argv[1]);
	if (mkdir("cwd", 0700) < 0 || chmod("cwd", 0750) < 0 || mkdir("sub", 0700) < 0)
		fail("parent", "mkdir");
	if (chdir("cwd") < 0 || open(".", O_RDONLY | O_DIRECTORY) != 3)
		fail("parent", "enter cwd and open it at fd 3");
	if (getcwd(orig, sizeof(orig) - 16) == NULL)
		fail("parent", "getcwd");
	strcat(orig, " (deleted)");
	if (open("../sub", O_RDONLY | O_DIRECTORY) != 4)
		fail("parent", "open sub at fd 4");
	if (rmdir("../cwd") < 0 || rmdir("../sub") < 0)
		fail("parent", "rmdir");
	child = fork();
	if (child < 0)
		fail("parent", "fork");
	if (child > 0) {
		printf("ready\n");
		fflush(stdout);
	}
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
	if (child == 0) {
		check("child", parent);
		return 0;
	}
	check("parent", 0);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("parent", "child failed");
	printf("OK\n");
	return 0;
}
