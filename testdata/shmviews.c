// shmviews: shared anonymous memory whose views differ between the
// processes and mappings that share it, checkpointed together.
//
// Protocol: shmviews TRIGGER
//   A  4 pages MAP_SHARED|MAP_ANONYMOUS with a pattern; after the fork the
//      parent (dumped first) shrinks its view to pages 0-1 with mremap and
//      the child unmaps page 0, keeping pages 1-3: pages 2-3 are only in
//      the child's view.
//   B  2 pages; the child grows its view to 4 pages with mremap (the
//      object stays 2 pages: the view's pages 2-3 raise SIGBUS).
//   C  1 page the parent maps a second time with mremap(old_size 0): two
//      views of one memory in one process.
//   N  private and shared anonymous memory named with PR_SET_VMA_ANON_NAME
//      ("rtcr-priv", "rtcr-shared"): the names must be in /proc/self/maps
//      (skipped, printing "no anon names\n", on a kernel without
//      CONFIG_ANON_VMA_NAME).
// It prints "ready\n" and polls every 1 ms until TRIGGER exists. Then the
// child checks A's pages 1-3 and B's pages 0-1, that B's page 2 raises
// SIGBUS, writes "child" into A's page 1 and B's page 1 and exits; the
// parent waits for it, checks A's pages 0-1, both writes, that a write
// into one view of C shows in the other, then prints "OK\n" (exit 0) or
// "FAIL what at N\n" (exit 1).
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define PAT(c, i) ((unsigned char)((c) + (i) * 5 + (i) / PG))

static int fail(const char *what, long at)
{
	printf("FAIL %s at %ld\n", what, at);
	fflush(stdout);
	return 1;
}

static void wait_trigger(const char *t)
{
	struct timespec ms = { 0, 1000000 };
	while (access(t, F_OK) != 0)
		nanosleep(&ms, NULL);
}

static unsigned char *shared(size_t size, int c)
{
	unsigned char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		exit(2);
	for (size_t i = 0; i < size; i++)
		m[i] = PAT(c, i);
	return m;
}

static int check(const unsigned char *m, int c, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (m[i] != PAT(c, i))
			return (int)i;
	return -1;
}

// named reports whether /proc/self/maps names a mapping [anon...:name].
static int named(const char *name)
{
	static char maps[1 << 16];
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return 0;
	size_t n = fread(maps, 1, sizeof maps - 1, f);
	fclose(f);
	maps[n] = 0;
	return strstr(maps, name) != NULL;
}

static sigjmp_buf bus;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus, 1);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	unsigned char *a = shared(4 * PG, 'a');
	unsigned char *b = shared(2 * PG, 'b');
	unsigned char *c1 = shared(PG, 'c');
	void *np = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *ns = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (np == MAP_FAILED || ns == MAP_FAILED)
		return 2;
	int names = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)np, PG, "rtcr-priv") == 0 &&
		    prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)ns, PG, "rtcr-shared") == 0;
	if (!names)
		printf("no anon names\n");
	else if (!named("[anon:rtcr-priv]") || !named("[anon_shmem:rtcr-shared]"))
		return 2;
	pid_t c = fork();
	if (c == 0) {
		if (munmap(a, PG) != 0)
			_exit(2);
		unsigned char *bg = mremap(b, 2 * PG, 4 * PG, MREMAP_MAYMOVE);
		if (bg == MAP_FAILED)
			_exit(2);
		wait_trigger(argv[1]);
		int at;
		if ((at = check(a, 'a', PG, 4 * PG)) >= 0)
			_exit(fail("A in the child", at) + 2);
		if ((at = check(bg, 'b', 0, 2 * PG)) >= 0)
			_exit(fail("B in the child", at) + 3);
		signal(SIGBUS, on_bus);
		if (sigsetjmp(bus, 1) == 0) {
			volatile unsigned char x = bg[2 * PG];
			(void)x;
			_exit(fail("B's page 2, beyond the object, did not raise SIGBUS", 2 * PG) + 4);
		}
		memcpy(a + PG, "child", 6);
		memcpy(bg + PG, "child", 6);
		_exit(0);
	}
	if (mremap(a, 4 * PG, 2 * PG, 0) != a)
		return 2;
	unsigned char *c2 = mremap(c1, 0, PG, MREMAP_MAYMOVE);
	if (c2 == MAP_FAILED)
		return 2;
	printf("ready\n");
	fflush(stdout);
	wait_trigger(argv[1]);
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return fail("child exit", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
	if (memcmp(a + PG, "child", 6) != 0)
		return fail("the child's write into A is not seen", PG);
	if (memcmp(b + PG, "child", 6) != 0)
		return fail("the child's write into B is not seen", PG);
	int at;
	if ((at = check(a, 'a', 0, PG)) >= 0)
		return fail("A in the parent", at);
	if ((at = check(c2, 'c', 0, PG)) >= 0)
		return fail("C's second view", at);
	if (names && (!named("[anon:rtcr-priv]") || !named("[anon_shmem:rtcr-shared]")))
		return fail("an anonymous memory name is lost", 0);
	c1[10] = 'X';
	if (c2[10] != 'X')
		return fail("a write into one view of C is not in the other", 10);
	printf("OK\n");
	return 0;
}
