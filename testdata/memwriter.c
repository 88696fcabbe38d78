// memwriter: a memory writer that counts, for migration tests.
//
// Exercises: a large private anonymous region written all the time, a
// file-backed stdout, a task sleeping in nanosleep.
//
// Protocol: memwriter MiB [interval_ms]   (default interval 10)
// Maps MiB mebibytes and fills every page with its stamp 0. Then for
// n = 1, 2, …: stamps the next 16 pages (round robin) with n, writes
// "%ld\n" of n to stdout with write(2), sleeps interval_ms. Every 50
// iterations it checks every page: all 512 words of page i must equal
// i * 1000003 + s for one stamp s with 0 <= s <= n; on a mismatch it
// writes "FAIL page I word W\n" and exits 1. Tests check that the numbers
// continue with no gap across a migration and that no FAIL appears.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)
#define STEP 16

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void stamp(uint64_t *base, long page, long s)
{
	uint64_t v = (uint64_t)page * 1000003u + (uint64_t)s;
	uint64_t *p = base + page * WORDS;
	for (int w = 0; w < WORDS; w++)
		p[w] = v;
}

static void verify(uint64_t *base, long npages, long n)
{
	char buf[96];
	for (long i = 0; i < npages; i++) {
		uint64_t *p = base + i * WORDS;
		uint64_t s = p[0] - (uint64_t)i * 1000003u;
		int bad = s > (uint64_t)n ? 0 : -1;
		for (int w = 0; bad < 0 && w < WORDS; w++)
			if (p[w] != p[0])
				bad = w;
		if (bad >= 0) {
			int len = snprintf(buf, sizeof(buf), "FAIL page %ld word %d\n", i, bad);
			write_all(1, buf, (size_t)len);
			_exit(1);
		}
	}
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 64;
	long interval_ms = argc > 2 ? atol(argv[2]) : 10;
	long npages = mib * 256;
	struct timespec ts = {
		.tv_sec = interval_ms / 1000,
		.tv_nsec = (interval_ms % 1000) * 1000000L,
	};
	uint64_t *base = mmap(NULL, (size_t)npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return 2;
	for (long i = 0; i < npages; i++)
		stamp(base, i, 0);
	char buf[32];
	long next = 0;
	for (long n = 1;; n++) {
		for (int k = 0; k < STEP; k++) {
			stamp(base, next, n);
			next = (next + 1) % npages;
		}
		int len = snprintf(buf, sizeof(buf), "%ld\n", n);
		write_all(1, buf, (size_t)len);
		if (n % 50 == 0)
			verify(base, npages, n);
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		ts.tv_sec = interval_ms / 1000;
		ts.tv_nsec = (interval_ms % 1000) * 1000000L;
	}
}
