// shmfork: a parent and a child sharing anonymous memory (MAP_SHARED |
// MAP_ANONYMOUS before fork), checkpointed together.
//
// Protocol: shmfork <trigger>
// The parent maps 64 KiB shared, fills it with a pattern, drops the page
// table entries of one page (MADV_DONTNEED: the data stays in the shared
// object), also maps 64 MiB shared of which it touches one page (a dump
// must not read the rest into existence), forks a child and prints
// "ready\n". The child unmaps the first page of its 64 KiB view (its
// mapping then starts at an offset into the shared memory). After the
// trigger the child checks the dropped page through its view, writes 0x5A
// into the last page and exits; the parent waits for it, then checks the
// pattern, the dropped page and the child's write, and prints "OK\n"
// (exit 0) or "FAIL ...\n" (exit 1).
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIZE (64 * 1024)
// PAT differs from page to page, so a view shifted by pages shows.
#define PAT(i) ((unsigned char)((i) * 13 + (i) / 4096))

static int fail(const char *what, long at)
{
	char buf[96];
	snprintf(buf, sizeof buf, "FAIL %s at %ld\n", what, at);
	(void)!write(1, buf, strlen(buf));
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
	if (argc != 2)
		return 2;
	unsigned char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 2;
	for (int i = 0; i < SIZE; i++)
		m[i] = PAT(i);
	madvise(m + 4096, 4096, MADV_DONTNEED);
	unsigned char *sparse = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sparse == MAP_FAILED)
		return 2;
	sparse[12345] = 7;
	pid_t c = fork();
	if (c == 0) {
		munmap(m, 4096);
		wait_trigger(argv[1]);
		for (int i = 4096; i < 8192; i++)
			if (m[i] != PAT(i))
				_exit(3);
		if (sparse[12345] != 7)
			_exit(4);
		memset(m + SIZE - 4096, 0x5A, 4096);
		_exit(0);
	}
	(void)!write(1, "ready\n", 6);
	wait_trigger(argv[1]);
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return fail("child", c);
	for (int i = 0; i < SIZE - 4096; i++)
		if (m[i] != PAT(i))
			return fail("pattern", i);
	for (int i = SIZE - 4096; i < SIZE; i++)
		if (m[i] != 0x5A)
			return fail("the child's write is not visible", i);
	(void)!write(1, "OK\n", 3);
	return 0;
}
