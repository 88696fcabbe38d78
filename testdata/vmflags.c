// vmflags: anonymous regions with madvise/mlock/mmap flags, kept across a
// restore.
//
// Exercises: the VmFlags of /proc/PID/smaps rtcr restores (see the table in
// internal/mem/doc.go): MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP,
// MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE, MADV_SEQUENTIAL,
// MADV_RANDOM, mlock, mlock2(MLOCK_ONFAULT), MAP_NORESERVE, MAP_DROPPABLE,
// and a read-only MAP_SHARED mapping of a file open O_RDWR (it may become
// writable).
//
// Protocol: vmflags trigger | vmflags seal
// For each region writes "region NAME START END\n" (hex addresses, END
// exclusive), fills it with the byte NAME[0] (not the droppable one, whose
// pages the kernel may drop), writes "ready\n" to stdout, then polls every
// 1 ms until the trigger file exists. Then checks each region's bytes, forks:
// the child checks that the WIPEONFORK region reads as zeros and that the
// DONTFORK region is not mapped in it; the parent makes the file mapping
// writable (mprotect) and writes "OK\n" and exits 0, or writes
// "FAIL <what>\n" and exits 1.
// With "seal": one mseal'ed region "sealed", "ready\n", then sleeps forever
// (a dump must refuse it).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

#define PAGES 4

static void say(const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = write(1, s, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		s += n;
		len -= (size_t)n;
	}
}

static void fail(const char *what)
{
	char buf[160];
	snprintf(buf, sizeof(buf), "FAIL %s: %s\n", what, strerror(errno));
	say(buf);
	exit(1);
}

struct region {
	const char *name;
	char *addr;
	size_t len;
};

// The regions, in the order they are laid out; each is PAGES pages with a
// PROT_NONE page on either side so that no two merge.
enum { DC, WF, DD, HG, NH, MG, SR, RR, LO, LF, NR, DP, MW, NREGIONS };
static struct region regions[NREGIONS] = {
	{ .name = "dontfork" }, { .name = "wipeonfork" }, { .name = "dontdump" },
	{ .name = "hugepage" }, { .name = "nohugepage" }, { .name = "mergeable" },
	{ .name = "sequential" }, { .name = "random" }, { .name = "locked" },
	{ .name = "lockonfault" }, { .name = "noreserve" }, { .name = "droppable" },
	{ .name = "maywrite" },
};

static void announce(struct region *r)
{
	char buf[160];
	snprintf(buf, sizeof(buf), "region %s %lx %lx\n", r->name, (unsigned long)r->addr,
		 (unsigned long)(r->addr + r->len));
	say(buf);
}

static void wait_trigger(const char *path)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
	while (access(path, F_OK) != 0)
		nanosleep(&ts, NULL);
}

static void advise(int i, int advice)
{
	if (madvise(regions[i].addr, regions[i].len, advice) != 0)
		fail(regions[i].name);
}

static void setup(char *base, long page)
{
	for (int i = 0; i < NREGIONS; i++) {
		struct region *r = &regions[i];
		int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
		int fd = -1;
		r->addr = base + (size_t)(1 + 2 * i * (PAGES + 1)) * page;
		r->len = PAGES * page;
		if (i == NR)
			flags |= MAP_NORESERVE;
		if (i == DP)
			flags = MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED;
		int prot = PROT_READ | PROT_WRITE;
		if (i == MW) {
			fd = open("maywrite", O_RDWR | O_CREAT | O_TRUNC, 0600);
			if (fd < 0 || ftruncate(fd, r->len) != 0)
				fail("maywrite file");
			flags = MAP_SHARED | MAP_FIXED;
			prot = PROT_READ;
		}
		if (mmap(r->addr, r->len, prot, flags, fd, 0) != r->addr)
			fail(r->name);
		if (fd >= 0)
			close(fd);
		if (i != DP && i != MW)
			memset(r->addr, r->name[0], r->len);
	}
	advise(DC, MADV_DONTFORK);
	advise(WF, MADV_WIPEONFORK);
	advise(DD, MADV_DONTDUMP);
	advise(HG, MADV_HUGEPAGE);
	advise(NH, MADV_NOHUGEPAGE);
	advise(MG, MADV_MERGEABLE);
	advise(SR, MADV_SEQUENTIAL);
	advise(RR, MADV_RANDOM);
	if (mlock(regions[LO].addr, regions[LO].len) != 0)
		fail("mlock");
	if (syscall(SYS_mlock2, regions[LF].addr, regions[LF].len, MLOCK_ONFAULT) != 0)
		fail("mlock2");
}

static int filled(int i)
{
	for (size_t j = 0; j < regions[i].len; j++)
		if (regions[i].addr[j] != regions[i].name[0])
			return 0;
	return 1;
}

// child runs in the forked child: the WIPEONFORK region reads as zeros and
// the DONTFORK region is not mapped (msync fails with ENOMEM).
static int child(void)
{
	for (size_t j = 0; j < regions[WF].len; j++)
		if (regions[WF].addr[j] != 0) {
			say("FAIL wipeonfork region not wiped in the child\n");
			return 1;
		}
	if (msync(regions[DC].addr, regions[DC].len, MS_ASYNC) == 0 || errno != ENOMEM) {
		say("FAIL dontfork region mapped in the child\n");
		return 1;
	}
	return 0;
}

static int check(void)
{
	for (int i = 0; i < NREGIONS; i++) {
		if (i != DP && i != MW && !filled(i)) {
			char buf[160];
			snprintf(buf, sizeof(buf), "FAIL %s content\n", regions[i].name);
			say(buf);
			return 1;
		}
	}
	pid_t pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0)
		_exit(child());
	int st;
	if (waitpid(pid, &st, 0) != pid)
		fail("waitpid");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		say("FAIL child\n");
		return 1;
	}
	if (mprotect(regions[MW].addr, regions[MW].len, PROT_READ | PROT_WRITE) != 0)
		fail("maywrite mprotect");
	regions[MW].addr[0] = 'm';
	say("OK\n");
	return 0;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t span = (size_t)(2 * NREGIONS * (PAGES + 1) + 1) * page;
	char *base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		fail("reserve");
	if (argc > 1 && strcmp(argv[1], "seal") == 0) {
		struct region r = { "sealed", base + page, page };
		if (mmap(r.addr, r.len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != r.addr)
			fail("sealed");
		if (syscall(SYS_mseal, r.addr, r.len, 0) != 0)
			fail("mseal");
		announce(&r);
		say("ready\n");
		for (;;)
			pause();
	}
	setup(base, page);
	for (int i = 0; i < NREGIONS; i++)
		announce(&regions[i]);
	say("ready\n");
	wait_trigger(argc > 1 ? argv[1] : "trigger");
	return check();
}
