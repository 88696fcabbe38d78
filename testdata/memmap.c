// memmap: mappings of memfds and of deleted (unlinked) files, shared with
// a child, checkpointed together.
//
// Protocol: memmap TRIGGER SHMDIR
// The parent sets up, then forks a child that inherits every mapping:
//   A  memfd "a", 3 pages "A" pattern, fd 3 kept open, mapped MAP_SHARED
//      (ash) and MAP_PRIVATE (apr) with its first page written (copied);
//   B  memfd "b", 2 pages, mapped MAP_SHARED, its fd closed (only the
//      mapping holds it);
//   D  SHMDIR/sem.memmap-PID, 1 page, mapped MAP_SHARED, fd closed and
//      the file unlinked (what Python's multiprocessing does with its
//      semaphores);
//   E  SHMDIR/data.memmap-PID, 2 pages, fd 4 kept open, unlinked, mapped
//      MAP_PRIVATE, nothing copied.
// It writes "ready\n" and polls every 1 ms until TRIGGER exists. Then the
// child checks B and D, writes "child" into both and exits; the parent
// waits for it, checks every pattern and the child's writes, that a write
// through fd 3 shows in ash and apr's second page (not copied) and not in
// apr's first (copied), that a write into ash shows through fd 3, that a
// pwrite through fd 4 shows in E's mapping, then prints "OK\n" (exit 0) or
// "FAIL what\n" (exit 1).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define PAT(c, i) ((unsigned char)((c) + (i) * 7 + (i) / PG))

static void fail(const char *what, long a)
{
	printf("FAIL %s (%ld)\n", what, a);
	fflush(stdout);
	exit(1);
}

static void die(const char *what)
{
	fprintf(stderr, "memmap: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void wait_trigger(const char *t)
{
	struct timespec ms = { 0, 1000000 };
	while (access(t, F_OK) != 0)
		nanosleep(&ms, NULL);
}

// filled returns an fd of size bytes of pattern c: a memfd, or with path
// a file there.
static int filled(const char *name, const char *path, int c, size_t size)
{
	int fd = path ? open(path, O_RDWR | O_CREAT | O_EXCL, 0600) : memfd_create(name, 0);
	if (fd < 0)
		die(name);
	unsigned char *b = malloc(size);
	for (size_t i = 0; i < size; i++)
		b[i] = PAT(c, i);
	if (write(fd, b, size) != (ssize_t)size)
		die("fill");
	free(b);
	return fd;
}

static void *map(int fd, size_t size, int flags)
{
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (m == MAP_FAILED)
		die("mmap");
	return m;
}

static void check(const unsigned char *m, int c, size_t from, size_t to, const char *what)
{
	for (size_t i = from; i < to; i++)
		if (m[i] != PAT(c, i))
			fail(what, (long)i);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	char dpath[256], epath[256];
	snprintf(dpath, sizeof dpath, "%s/sem.memmap-%d", argv[2], getpid());
	snprintf(epath, sizeof epath, "%s/data.memmap-%d", argv[2], getpid());

	int a = filled("a", NULL, 'A', 3 * PG);
	if (dup2(a, 3) != 3)
		die("dup2");
	if (a != 3)
		close(a);
	unsigned char *ash = map(3, 3 * PG, MAP_SHARED);
	unsigned char *apr = map(3, 3 * PG, MAP_PRIVATE);
	memset(apr, 'p', PG);

	int b = filled("b", NULL, 'B', 2 * PG);
	unsigned char *bm = map(b, 2 * PG, MAP_SHARED);
	close(b);

	int d = filled("d", dpath, 'D', PG);
	unsigned char *dm = map(d, PG, MAP_SHARED);
	close(d);
	unlink(dpath);

	int e = filled("e", epath, 'E', 2 * PG);
	if (dup2(e, 4) != 4)
		die("dup2");
	if (e != 4)
		close(e);
	unlink(epath);
	unsigned char *em = map(4, 2 * PG, MAP_PRIVATE);
	check(em, 'E', 0, 2 * PG, "E before");

	pid_t c = fork();
	if (c == 0) {
		wait_trigger(argv[1]);
		check(bm, 'B', 0, 2 * PG - 8, "B in the child");
		check(dm, 'D', 0, PG - 8, "D in the child");
		memcpy(bm + 2 * PG - 8, "child", 6);
		memcpy(dm + PG - 8, "child", 6);
		_exit(0);
	}
	(void)!write(1, "ready\n", 6);
	wait_trigger(argv[1]);
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail("child", WEXITSTATUS(st));
	if (memcmp(bm + 2 * PG - 8, "child", 6) != 0)
		fail("the child's write into B is not seen", 0);
	if (memcmp(dm + PG - 8, "child", 6) != 0)
		fail("the child's write into D is not seen", 0);
	check(ash, 'A', 0, 3 * PG, "A shared");
	for (int i = 0; i < PG; i++)
		if (apr[i] != 'p')
			fail("A private copied page", i);
	check(apr, 'A', PG, 3 * PG, "A private");
	check(em, 'E', 0, 2 * PG, "E");

	// One file: fd 3 and both views of A; fd 4 and E.
	if (pwrite(3, "fd3", 4, PG + 100) != 4)
		fail("pwrite fd 3", errno);
	if (memcmp(ash + PG + 100, "fd3", 4) != 0)
		fail("a write through fd 3 is not in the shared mapping", 0);
	if (memcmp(apr + PG + 100, "fd3", 4) != 0)
		fail("a write through fd 3 is not in the private mapping's file page", 0);
	if (pwrite(3, "fd3", 4, 100) != 4 || apr[100] != 'p')
		fail("a write through fd 3 reached the private copied page", apr[100]);
	memcpy(ash + 2 * PG, "map", 4);
	char got[4];
	if (pread(3, got, 4, 2 * PG) != 4 || memcmp(got, "map", 4) != 0)
		fail("a write into the shared mapping is not seen through fd 3", 0);
	if (pwrite(4, "fd4", 4, 10) != 4 || memcmp(em + 10, "fd4", 4) != 0)
		fail("a write through fd 4 is not in E's mapping", 0);
	printf("OK\n");
	return 0;
}
