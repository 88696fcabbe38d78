// shmwriter: shared and file-backed memory written on command between
// checkpoints, by a parent and its forked child, for the incremental
// checkpoint tests of shared memory and private file mappings.
//
// Protocol: shmwriter NPAGES
// Maps four regions of NPAGES pages each:
//   S  shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS), zero;
//   F  a private mapping of the file "pf.dat" it writes in its working
//      directory, every page of the file stamped 7;
//   M  a memfd mapped MAP_SHARED (its fd kept open), zero;
//   Y  a SysV segment (IPC_PRIVATE, removed at once), zero.
// then forks a child (both keep every region: S, M and Y are shared, F is
// each one's own copy) and prints "ready S F M Y\n" (hex addresses); the
// child prints "cready\n". For N = 1, 2, … both wait for the file "cmd-N"
// in the working directory and run its lines: the parent the lines
// without a "c " prefix, the child those with one; then the parent prints
// "done N\n", the child "cdone N\n". Lines (R is S, F, M or Y):
//   w R I J …    write pages I, J … of R through the mapping, stamp N
//   pw M I J …   write pages I, J … of the memfd with pwrite(2), stamp N
//   drop F I     madvise(MADV_DONTNEED) page I of F: the file's page again
//   view S       map a second view of S (through /proc/self/map_files) and
//                print "view ADDR\n" (hex)
//   w2 S I J …   write pages I, J … of S through the second view, stamp N
//   verify       (parent) check every page of every region: word 0 is its
//                stamp s, the others pattern(R, page, s, word) (all zero
//                when s is 0); print "OK sumS sumF sumM sumY\n" (sum of
//                (page+1)*s) or "FAIL …\n" and exit 0 or 1.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
static long npages;
static char *reg[4]; // S F M Y
static const char names[] = "SFMY";
static int memfd, child;
static char *view2; // a second view of S

static uint64_t pattern(int r, long page, long s, long word)
{
	if (s == 0)
		return 0;
	uint64_t x = (uint64_t)page * 0x9e3779b97f4a7c15ULL ^ (uint64_t)s * 0xbf58476d1ce4e5b9ULL ^ (uint64_t)word ^ (uint64_t)r << 40;
	x ^= x >> 31;
	return x * 0x94d049bb133111ebULL | 1;
}

static void fillbuf(uint64_t *w, int r, long page, long s)
{
	w[0] = (uint64_t)s;
	for (long i = 1; i < PAGE / 8; i++)
		w[i] = pattern(r, page, s, i);
}

static void say(const char *s)
{
	if (write(1, s, strlen(s)) != (ssize_t)strlen(s))
		_exit(3);
}

static int region(const char *t)
{
	const char *p = t ? strchr(names, t[0]) : NULL;
	if (!p || !t[0] || t[1]) {
		say("bad region\n");
		_exit(2);
	}
	return (int)(p - names);
}

static int verify(void)
{
	long sum[4] = {0};
	char buf[200];
	for (int r = 0; r < 4; r++)
		for (long p = 0; p < npages; p++) {
			uint64_t *w = (uint64_t *)(reg[r] + p * PAGE);
			long s = (long)w[0];
			sum[r] += (p + 1) * s;
			for (long i = 1; i < PAGE / 8; i++)
				if (w[i] != pattern(r, p, s, i)) {
					snprintf(buf, sizeof buf, "FAIL %c page %ld word %ld stamp %ld\n", names[r], p, i, s);
					say(buf);
					return 1;
				}
		}
	snprintf(buf, sizeof buf, "OK %ld %ld %ld %ld\n", sum[0], sum[1], sum[2], sum[3]);
	say(buf);
	return 0;
}

static void run(char *line, long n)
{
	char *save, *op = strtok_r(line, " \n", &save);
	if (!op)
		return;
	if (!strcmp(op, "c")) {
		if (!child)
			return;
		op = strtok_r(NULL, " \n", &save);
	} else if (child) {
		return;
	}
	if (!strcmp(op, "verify"))
		_exit(verify());
	if (!strcmp(op, "view")) {
		char path[80], out[80];
		snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)reg[0], (unsigned long)(reg[0] + npages * PAGE));
		int fd = open(path, O_RDWR);
		view2 = fd < 0 ? MAP_FAILED : mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (view2 == MAP_FAILED)
			_exit(6);
		close(fd);
		snprintf(out, sizeof out, "view %lx\n", (unsigned long)view2);
		say(out);
		return;
	}
	int r = region(strtok_r(NULL, " \n", &save));
	char *t;
	static uint64_t buf[PAGE / 8];
	while ((t = strtok_r(NULL, " \n", &save))) {
		long p = atol(t);
		if (!strcmp(op, "w")) {
			fillbuf((uint64_t *)(reg[r] + p * PAGE), r, p, n);
		} else if (!strcmp(op, "w2") && r == 0 && view2) {
			fillbuf((uint64_t *)(view2 + p * PAGE), r, p, n);
		} else if (!strcmp(op, "pw") && r == 2) {
			fillbuf(buf, r, p, n);
			if (pwrite(memfd, buf, PAGE, p * PAGE) != PAGE)
				_exit(4);
		} else if (!strcmp(op, "drop") && r == 1) {
			if (madvise(reg[r] + p * PAGE, PAGE, MADV_DONTNEED))
				_exit(5);
		} else {
			say("bad command\n");
			_exit(2);
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	npages = atol(argv[1]);
	size_t len = npages * PAGE;
	reg[0] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int f = open("pf.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
	static uint64_t buf[PAGE / 8];
	for (long p = 0; p < npages; p++) {
		fillbuf(buf, 1, p, 7);
		if (write(f, buf, PAGE) != PAGE)
			return 3;
	}
	reg[1] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, f, 0);
	close(f);
	memfd = memfd_create("shmwriter", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, len))
		return 3;
	reg[2] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	int id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);
	reg[3] = id < 0 ? MAP_FAILED : shmat(id, NULL, 0);
	if (reg[0] == MAP_FAILED || reg[1] == MAP_FAILED || reg[2] == MAP_FAILED || reg[3] == (void *)-1)
		return 3;
	shmctl(id, IPC_RMID, NULL);
	static char line[1 << 16]; // a round may list thousands of pages
	pid_t pid = fork();
	if (pid < 0)
		return 3;
	child = pid == 0;
	if (child) {
		say("cready\n");
	} else {
		snprintf(line, sizeof line, "ready %lx %lx %lx %lx\n", (unsigned long)reg[0], (unsigned long)reg[1],
			 (unsigned long)reg[2], (unsigned long)reg[3]);
		say(line);
	}
	for (long n = 1;; n++) {
		char name[32];
		snprintf(name, sizeof name, "cmd-%ld", n);
		FILE *cf;
		while (!(cf = fopen(name, "r"))) {
			struct timespec ts = {0, 2000000};
			nanosleep(&ts, NULL);
		}
		while (fgets(line, sizeof line, cf))
			run(line, n);
		fclose(cf);
		snprintf(line, sizeof line, "\n%sdone %ld\n", child ? "c" : "", n);
		say(line + 1);
	}
}
