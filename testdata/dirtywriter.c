// dirtywriter: a region of pages written, dropped, remapped and protected
// on command between checkpoints, for incremental checkpoint tests.
//
// Protocol: dirtywriter NPAGES [THREADS]
// Maps NPAGES private anonymous pages (no huge pages), prints
// "ready ADDR\n" (hex), then for N = 1, 2, … waits for the file "cmd-N"
// (or "ccmd-N" in a child made by "fork") in its working directory and
// runs its lines, stamping written pages with N, then prints "done N\n"
// ("cdone N\n" in the child). Each page's stamp s is kept in a table in
// the process: 0 means all zero, -1 unmapped, s > 0 the page is filled
// with pattern(page, s). Lines:
//   w I J …      write pages I, J … (with THREADS > 1, page I by thread I % THREADS)
//   drop I N     madvise(MADV_DONTNEED) pages I..I+N-1 (zero again)
//   unmap I N    munmap them
//   map I N      mmap fresh anonymous pages there (MAP_FIXED)
//   move I N J   mremap pages I..I+N-1 to J..J+N-1 (MREMAP_FIXED)
//   prot I N P   mprotect them: P is "r" or "rw"
//   fork         fork a child that follows "ccmd-N" files from N+1 on
//   verify       check every page against its stamp: "OK SUM\n" (SUM: the
//                sum of (page+1)*stamp over all pages) or "FAIL …\n" ("cOK",
//                "cFAIL" in the child), then exit 0 or 1.
// cflags: -pthread
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
static char *base;
static long npages;
static long *stamp;
static long *origin; // the page index a page was filled at (moves with it)
static int nthreads = 1;
static int child;

static uint64_t pattern(long page, long s, long word)
{
	uint64_t x = (uint64_t)page * 0x9e3779b97f4a7c15ULL ^ (uint64_t)s * 0xbf58476d1ce4e5b9ULL ^ (uint64_t)word;
	x ^= x >> 31;
	return x * 0x94d049bb133111ebULL | 1;
}

static void fill(long page, long s)
{
	uint64_t *w = (uint64_t *)(base + page * PAGE);
	for (long i = 0; i < PAGE / 8; i++)
		w[i] = pattern(page, s, i);
	stamp[page] = s;
	origin[page] = page;
}

static void say(const char *fmt, long n)
{
	char buf[128];
	int len = snprintf(buf, sizeof buf, fmt, child ? "c" : "", n);
	if (write(1, buf, len) != len)
		_exit(3);
}

// Threads: each round the main thread publishes the pages to write.
static pthread_barrier_t start_bar, end_bar;
static long *todo;
static long ntodo, round_no;

static void *worker(void *arg)
{
	long id = (long)arg;
	for (;;) {
		pthread_barrier_wait(&start_bar);
		for (long i = 0; i < ntodo; i++)
			if (todo[i] % nthreads == id)
				fill(todo[i], round_no);
		pthread_barrier_wait(&end_bar);
	}
	return NULL;
}

static int verify(void)
{
	long sum = 0;
	for (long p = 0; p < npages; p++) {
		sum += (p + 1) * stamp[p];
		if (stamp[p] < 0)
			continue;
		uint64_t *w = (uint64_t *)(base + p * PAGE);
		for (long i = 0; i < PAGE / 8; i++) {
			uint64_t want = stamp[p] ? pattern(origin[p], stamp[p], i) : 0;
			if (w[i] != want) {
				char buf[160];
				int len = snprintf(buf, sizeof buf, "%sFAIL page %ld word %ld stamp %ld\n", child ? "c" : "", p, i, stamp[p]);
				if (write(1, buf, len) < 0)
					_exit(3);
				return 1;
			}
		}
	}
	say("%sOK %ld\n", sum);
	return 0;
}

static void run(char *line, long n)
{
	char *save, *op = strtok_r(line, " \n", &save);
	if (!op)
		return;
	long a = -1, b = -1, c = -1;
	char *t;
	if (!strcmp(op, "w")) {
		ntodo = 0;
		while ((t = strtok_r(NULL, " \n", &save)))
			todo[ntodo++] = atol(t);
		round_no = n;
		if (nthreads > 1) {
			pthread_barrier_wait(&start_bar);
			pthread_barrier_wait(&end_bar);
		} else {
			for (long i = 0; i < ntodo; i++)
				fill(todo[i], n);
		}
		return;
	}
	if (!strcmp(op, "fork")) {
		pid_t pid = fork();
		if (pid == 0)
			child = 1;
		return;
	}
	if (!strcmp(op, "verify"))
		_exit(verify());
	if ((t = strtok_r(NULL, " \n", &save)))
		a = atol(t);
	if ((t = strtok_r(NULL, " \n", &save)))
		b = atol(t);
	if ((t = strtok_r(NULL, " \n", &save)))
		c = strcmp(t, "r") == 0 ? 0 : strcmp(t, "rw") == 0 ? 1 : atol(t);
	char *at = base + a * PAGE;
	size_t len = (size_t)b * PAGE;
	int err = 0;
	if (!strcmp(op, "drop")) {
		err = madvise(at, len, MADV_DONTNEED);
		for (long p = a; p < a + b; p++)
			stamp[p] = 0;
	} else if (!strcmp(op, "unmap")) {
		err = munmap(at, len);
		for (long p = a; p < a + b; p++)
			stamp[p] = -1;
	} else if (!strcmp(op, "map")) {
		err = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED;
		madvise(at, len, MADV_NOHUGEPAGE);
		for (long p = a; p < a + b; p++)
			stamp[p] = 0;
	} else if (!strcmp(op, "move")) {
		err = mremap(at, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, base + c * PAGE) == MAP_FAILED;
		long tmp[b], org[b];
		memcpy(tmp, &stamp[a], sizeof tmp);
		memcpy(org, &origin[a], sizeof org);
		for (long p = a; p < a + b; p++)
			stamp[p] = -1;
		memcpy(&stamp[c], tmp, sizeof tmp);
		memcpy(&origin[c], org, sizeof org);
	} else if (!strcmp(op, "prot")) {
		err = mprotect(at, len, c ? PROT_READ | PROT_WRITE : PROT_READ);
	}
	if (err) {
		say("%serror %ld\n", errno);
		_exit(4);
	}
}

int main(int argc, char **argv)
{
	npages = argc > 1 ? atol(argv[1]) : 256;
	nthreads = argc > 2 ? atoi(argv[2]) : 1;
	base = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	stamp = calloc(npages, sizeof *stamp);
	origin = calloc(npages, sizeof *origin);
	todo = calloc(npages, sizeof *todo);
	if (base == MAP_FAILED || !stamp || !origin || !todo)
		return 2;
	madvise(base, npages * PAGE, MADV_NOHUGEPAGE);
	for (long p = 0; p < npages; p++)
		fill(p, 1000000 + p % 7);
	if (nthreads > 1) {
		pthread_barrier_init(&start_bar, NULL, nthreads + 1);
		pthread_barrier_init(&end_bar, NULL, nthreads + 1);
		for (long i = 0; i < nthreads; i++) {
			pthread_t th;
			if (pthread_create(&th, NULL, worker, (void *)i))
				return 2;
		}
		// The main thread is one more party: it takes no pages.
	}
	char buf[64];
	int len = snprintf(buf, sizeof buf, "ready %lx\n", (unsigned long)base);
	if (write(1, buf, len) != len)
		return 3;
	struct timespec ts = { 0, 1000000L };
	for (long n = 1;; n++) {
		char name[32];
		FILE *f;
		for (;;) {
			snprintf(name, sizeof name, "%scmd-%ld", child ? "c" : "", n);
			if ((f = fopen(name, "r")))
				break;
			nanosleep(&ts, NULL);
		}
		char line[4096];
		while (fgets(line, sizeof line, f))
			run(line, n);
		fclose(f);
		say("%sdone %ld\n", n);
	}
}
