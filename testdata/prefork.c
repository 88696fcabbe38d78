// prefork: a pre-fork server's memory: a parent fills memory, then forks
// workers that share it copy-on-write.
//
// Protocol: prefork <trigger> <workers> <KiB> <step>
// The parent maps <KiB> KiB of private anonymous memory and 64 KiB of heap
// (malloc), fills both with a pattern (every 8-byte word names its page
// and who wrote it, and in which round), forks <workers> workers, then
// writes the last 4 pages of its region again (round 1: the workers keep
// the old bytes). Worker k writes pages 2k and 2k+1 of the region (its
// own bytes; workers 0-3 also change their layout, see DROPPED) and
// prints "w K\n"; once all have, the parent prints
// "ready\n". When the file <step> appears the parent writes pages 64 to
// 95 (round 2: still shared with every worker until then) and prints
// "stepped\n". After the trigger every worker checks its memory (its own
// pages, the parent's pages as they were at the fork, the heap) and exits
// 0, or 3 on a wrong word; the parent waits for them all, checks its own
// memory and prints "OK\n" (exit 0) or "FAIL ...\n" (exit 1).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define WORDS (PG / 8)
#define STEP_FIRST 64
#define STEP_PAGES 32
// Worker 0 drops page DROPPED (MADV_DONTNEED: zeros), worker 1 makes 4
// pages from RDONLY read-only, worker 2 unmaps page UNMAPPED, worker 3
// grows the heap by 64 KiB (sbrk) and fills it.
#define DROPPED 10
#define RDONLY 20
#define UNMAPPED 30

static uint64_t word(long page, int who, int round)
{
	return ((uint64_t)page << 16) | ((uint64_t)who << 4) | (uint64_t)round;
}

static void fill(uint64_t *p, long page, int who, int round)
{
	for (int i = 0; i < WORDS; i++)
		p[i] = word(page, who, round) + ((uint64_t)i << 40);
}

static int check(const uint64_t *p, long page, int who, int round)
{
	for (int i = 0; i < WORDS; i++)
		if (p[i] != word(page, who, round) + ((uint64_t)i << 40))
			return 0;
	return 1;
}

static void wait_file(const char *t)
{
	struct timespec ms = { 0, 1000000 };
	while (access(t, F_OK) != 0)
		nanosleep(&ms, NULL);
}

static void say(const char *s)
{
	(void)!write(1, s, strlen(s));
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	int workers = atoi(argv[2]);
	long pages = atol(argv[3]) * 1024 / PG;
	if (workers < 1 || pages < STEP_FIRST + STEP_PAGES + 4 || pages < 2 * workers + 4)
		return 2;
	char *m = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *heap = malloc(64 * 1024);
	if (m == MAP_FAILED || heap == NULL)
		return 2;
	for (long i = 0; i < pages; i++)
		fill((uint64_t *)(m + i * PG), i, 0, 0);
	memset(heap, 0x77, 64 * 1024);
	int fds[2];
	if (pipe(fds) != 0)
		return 2;
	pid_t *kids = calloc(workers, sizeof(pid_t));
	for (int k = 0; k < workers; k++) {
		kids[k] = fork();
		if (kids[k] < 0)
			return 2;
		if (kids[k] > 0)
			continue;
		close(fds[0]);
		fill((uint64_t *)(m + 2 * k * PG), 2 * k, k + 1, 0);
		fill((uint64_t *)(m + (2 * k + 1) * PG), 2 * k + 1, k + 1, 0);
		// Some workers change their copy of the layout.
		char *grown = NULL;
		if (k == 0 && madvise(m + DROPPED * PG, PG, MADV_DONTNEED) != 0)
			_exit(5);
		if (k == 1 && mprotect(m + RDONLY * PG, 4 * PG, PROT_READ) != 0)
			_exit(5);
		if (k == 2 && munmap(m + UNMAPPED * PG, PG) != 0)
			_exit(5);
		if (k == 3) {
			grown = sbrk(64 * 1024);
			if (grown == (void *)-1)
				_exit(5);
			memset(grown, 0x33, 64 * 1024);
		}
		char buf[32];
		snprintf(buf, sizeof buf, "w %d\n", k);
		say(buf);
		(void)!write(fds[1], "x", 1);
		close(fds[1]);
		wait_file(argv[1]);
		for (long i = 0; i < pages; i++) {
			int mine = i == 2 * k || i == 2 * k + 1;
			if (k == 2 && i == UNMAPPED)
				continue;
			if (k == 0 && i == DROPPED) {
				for (int j = 0; j < PG; j++)
					if (m[i * PG + j] != 0)
						_exit(6);
				continue;
			}
			if (!check((uint64_t *)(m + i * PG), i, mine ? k + 1 : 0, 0))
				_exit(3);
		}
		for (int i = 0; grown && i < 64 * 1024; i++)
			if (grown[i] != 0x33)
				_exit(7);
		for (int i = 0; i < 64 * 1024; i++)
			if (heap[i] != 0x77)
				_exit(4);
		_exit(0);
	}
	close(fds[1]);
	for (long i = pages - 4; i < pages; i++)
		fill((uint64_t *)(m + i * PG), i, 0, 1);
	for (int k = 0; k < workers; k++) {
		char c;
		if (read(fds[0], &c, 1) != 1)
			return 2;
	}
	close(fds[0]);
	say("ready\n");
	int stepped = 0;
	struct timespec ms = { 0, 1000000 };
	while (access(argv[1], F_OK) != 0) {
		if (!stepped && access(argv[4], F_OK) == 0) {
			for (long i = STEP_FIRST; i < STEP_FIRST + STEP_PAGES; i++)
				fill((uint64_t *)(m + i * PG), i, 0, 2);
			stepped = 1;
			say("stepped\n");
		}
		nanosleep(&ms, NULL);
	}
	for (int k = 0; k < workers; k++) {
		int st;
		if (waitpid(kids[k], &st, 0) != kids[k] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			char buf[64];
			snprintf(buf, sizeof buf, "FAIL worker %d status %#x\n", k, st);
			say(buf);
			return 1;
		}
	}
	for (long i = 0; i < pages; i++) {
		int round = i >= pages - 4 ? 1 : (stepped && i >= STEP_FIRST && i < STEP_FIRST + STEP_PAGES) ? 2 : 0;
		if (!check((uint64_t *)(m + i * PG), i, 0, round)) {
			char buf[64];
			snprintf(buf, sizeof buf, "FAIL parent page %ld\n", i);
			say(buf);
			return 1;
		}
	}
	for (int i = 0; i < 64 * 1024; i++)
		if (heap[i] != 0x77) {
			say("FAIL parent heap\n");
			return 1;
		}
	say("OK\n");
	return 0;
}
