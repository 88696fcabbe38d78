// posixshm: POSIX shared memory (shm_open: a file under /dev/shm) mapped
// and open in a parent and a child, checkpointed together.
//
// Protocol: posixshm TRIGGER NAME
// The parent shm_opens NAME ("/..."), sizes it to 2 pages, keeps the fd
// as fd 3, maps it MAP_SHARED, fills it with a pattern and forks a child
// (which inherits fd and mapping), then prints "ready\n" and polls every
// 1 ms until TRIGGER exists. Then the child checks the pattern, writes
// "child" into the second page and exits; the parent waits for it, checks
// the child's write, that a write through fd 3 shows in the mapping, that
// fd 3 is still the file /dev/shm/NAME (same inode) and that a second
// shm_open of NAME shows the same bytes, then prints "OK\n" (exit 0) or
// "FAIL what\n" (exit 1).
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define SIZE (2 * PG)

static int fail(const char *what)
{
	printf("FAIL %s\n", what);
	return 1;
}

static void wait_trigger(const char *t)
{
	struct timespec ms = { 0, 1000000 };
	while (access(t, F_OK) != 0)
		nanosleep(&ms, NULL);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int fd = shm_open(argv[2], O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0 || dup2(fd, 3) != 3 || ftruncate(3, SIZE) != 0)
		return 2;
	if (fd != 3)
		close(fd);
	unsigned char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
	if (m == MAP_FAILED)
		return 2;
	for (int i = 0; i < SIZE; i++)
		m[i] = (unsigned char)(i * 11);
	pid_t c = fork();
	if (c == 0) {
		wait_trigger(argv[1]);
		for (int i = 0; i < SIZE; i++)
			if (m[i] != (unsigned char)(i * 11))
				_exit(3);
		memcpy(m + PG, "child", 6);
		_exit(0);
	}
	printf("ready\n");
	fflush(stdout);
	wait_trigger(argv[1]);
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return fail("child");
	if (memcmp(m + PG, "child", 6) != 0)
		return fail("the child's write is not seen");
	if (pwrite(3, "fd", 3, 100) != 3 || memcmp(m + 100, "fd", 3) != 0)
		return fail("a write through fd 3 is not in the mapping");
	char path[300];
	snprintf(path, sizeof path, "/dev/shm%s", argv[2]);
	struct stat a, b;
	if (fstat(3, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		return fail("fd 3 is not the shm file");
	int again = shm_open(argv[2], O_RDONLY, 0);
	char got[6];
	if (again < 0 || pread(again, got, 6, PG) != 6 || memcmp(got, "child", 6) != 0)
		return fail("shm_open again does not show the memory");
	printf("OK\n");
	return 0;
}
