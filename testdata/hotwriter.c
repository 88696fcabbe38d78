// hotwriter: writes pages continuously, for the freeze budget tests
// (pre-copy rounds while it runs).
//
// Protocol: hotwriter NPAGES HOT PAUSE_US [churn]
// Maps NPAGES private anonymous pages and fills every one (a large dirty
// set), prints "ready ADDR\n" (hex), then writes pages forever: page
// (random % HOT), filled whole with a new sequence number, which a table
// in the process records; after every 16 writes it sleeps PAUSE_US
// microseconds (0: never). With "churn" it also keeps a second region that
// it replaces by a fresh mapping, grows (mremap, perhaps moving), shrinks
// (munmap of its tail) and moves (mremap to a new address) in turn, every
// 64 writes, writing its pages too.
// SIGUSR2 makes it print "seq N\n" (it is writing); SIGUSR1 makes it check
// every page against the table, between two writes: "OK N\n" (N pages
// checked) or "BAD …\n", then exit 0 or 1.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)
#define CMAX 256 // churn region: at most this many pages

static volatile sig_atomic_t verify_req, seq_req;
static uint64_t *last;  // sequence number of each page of the region
static uint64_t clast[CMAX];
static char *cr;        // churn region
static long cn;         // its pages
static uint64_t seq;

static void on_usr1(int s) { (void)s; verify_req = 1; }
static void on_usr2(int s) { (void)s; seq_req = 1; }

static void fill(char *page, uint64_t v)
{
	uint64_t *w = (uint64_t *)page;
	for (int i = 0; i < WORDS; i++)
		w[i] = v;
}

static int check(const char *what, char *page, long i, uint64_t want)
{
	uint64_t *w = (uint64_t *)page;
	for (int k = 0; k < WORDS; k++) {
		if (w[k] != want) {
			printf("BAD %s page %ld word %d: %llu, want %llu\n", what, i, k,
			       (unsigned long long)w[k], (unsigned long long)want);
			fflush(stdout);
			return 0;
		}
	}
	return 1;
}

static char *fresh(long pages)
{
	char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	madvise(p, pages * PAGE, MADV_NOHUGEPAGE);
	return p;
}

static void churn(int step)
{
	switch (step % 4) {
	case 0: { // a new mapping with the same content
		char *n = fresh(cn);
		memcpy(n, cr, cn * PAGE);
		munmap(cr, cn * PAGE);
		cr = n;
		break;
	}
	case 1: { // grow, perhaps moving
		long want = cn * 2 > CMAX ? CMAX : cn * 2;
		char *n = mremap(cr, cn * PAGE, want * PAGE, MREMAP_MAYMOVE);
		if (n == MAP_FAILED) {
			perror("mremap grow");
			exit(2);
		}
		cr = n;
		for (long i = cn; i < want; i++) {
			clast[i] = ++seq;
			fill(cr + i * PAGE, clast[i]);
		}
		cn = want;
		break;
	}
	case 2: // shrink
		if (cn > 8) {
			munmap(cr + (cn / 2) * PAGE, (cn - cn / 2) * PAGE);
			cn /= 2;
		}
		break;
	case 3: { // move to a new address
		char *to = fresh(cn);
		char *n = mremap(cr, cn * PAGE, cn * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		if (n == MAP_FAILED) {
			perror("mremap move");
			exit(2);
		}
		cr = n;
		break;
	}
	}
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	long npages = atol(argv[1]), hot = atol(argv[2]);
	long pause_us = atol(argv[3]);
	int churning = argc > 4 && strcmp(argv[4], "churn") == 0;
	if (hot <= 0 || hot > npages)
		hot = npages;
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	char *base = fresh(npages);
	last = (uint64_t *)fresh((npages * 8 + PAGE - 1) / PAGE);
	for (long i = 0; i < npages; i++) {
		last[i] = ++seq;
		fill(base + i * PAGE, last[i]);
	}
	if (churning) {
		cn = 16;
		cr = fresh(cn);
		for (long i = 0; i < cn; i++) {
			clast[i] = ++seq;
			fill(cr + i * PAGE, clast[i]);
		}
	}
	printf("ready %lx\n", (unsigned long)base);
	fflush(stdout);
	uint64_t x = 88172645463325252ULL;
	for (long n = 1;; n++) {
		if (verify_req) {
			for (long i = 0; i < npages; i++)
				if (!check("region", base + i * PAGE, i, last[i]))
					return 1;
			for (long i = 0; i < cn; i++)
				if (!check("churn", cr + i * PAGE, i, clast[i]))
					return 1;
			printf("OK %ld\n", npages + cn);
			fflush(stdout);
			return 0;
		}
		if (seq_req) {
			seq_req = 0;
			printf("seq %llu\n", (unsigned long long)seq);
			fflush(stdout);
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		long p = (long)(x % (uint64_t)hot);
		last[p] = ++seq;
		fill(base + p * PAGE, last[p]);
		if (churning && n % 64 == 0) {
			churn((int)(n / 64));
			long c = (long)(x % (uint64_t)cn);
			clast[c] = ++seq;
			fill(cr + c * PAGE, clast[c]);
		}
		if (pause_us > 0 && n % 16 == 0)
			usleep(pause_us);
	}
}
