// sysvshm: System V shared memory attached by a parent and its child,
// checkpointed together.
//
// Protocol: sysvshm TRIGGER KEY
//   S1  key KEY, 3 pages + 100 bytes, mode 0640, filled with a pattern,
//       attached read-write by the parent (its middle page then made
//       read-only with mprotect: one attachment, three mappings) and,
//       after the fork, read-only (SHM_RDONLY) by the child too;
//   S2  IPC_PRIVATE, 1 page, attached by the parent, then marked removed
//       (IPC_RMID) while attached.
// It prints "ids S1 S2\n" and "ready\n", polls every 1 ms until TRIGGER
// exists. Then the child checks S1's pattern through its read-only
// attachment, that writing there raises SIGSEGV, writes "child" into S1
// (through the inherited attachment) and into S2, and exits. The parent
// waits for it, checks both writes, S1's key, size, mode and attach count
// (as before the fork), that S2 is marked removed and is destroyed at its
// last detach, then prints "OK\n" (exit 0) or "FAIL what (N)\n" (exit 1).
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define S1SIZE (3 * PG + 100)
#define PAT(i) ((unsigned char)((i) * 3 + (i) / PG))

static int fail(const char *what, long n)
{
	printf("FAIL %s (%ld)\n", what, n);
	fflush(stdout);
	return 1;
}

static void wait_trigger(const char *t)
{
	struct timespec ms = { 0, 1000000 };
	while (access(t, F_OK) != 0)
		nanosleep(&ms, NULL);
}

static sigjmp_buf segv;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(segv, 1);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	key_t key = (key_t)strtol(argv[2], NULL, 0);
	int s1 = shmget(key, S1SIZE, IPC_CREAT | IPC_EXCL | 0640);
	int s2 = shmget(IPC_PRIVATE, PG, IPC_CREAT | 0600);
	if (s1 < 0 || s2 < 0)
		return 2;
	unsigned char *a = shmat(s1, NULL, 0);
	unsigned char *b = shmat(s2, NULL, 0);
	if (a == (void *)-1 || b == (void *)-1)
		return 2;
	for (int i = 0; i < S1SIZE; i++)
		a[i] = PAT(i);
	if (mprotect(a + PG, PG, PROT_READ) != 0 || shmctl(s2, IPC_RMID, NULL) != 0)
		return 2;
	struct shmid_ds ds;
	if (shmctl(s1, IPC_STAT, &ds) != 0)
		return 2;
	shmatt_t nattch = ds.shm_nattch;
	pid_t c = fork();
	if (c == 0) {
		unsigned char *r = shmat(s1, NULL, SHM_RDONLY);
		if (r == (void *)-1)
			_exit(2);
		wait_trigger(argv[1]);
		for (int i = 0; i < S1SIZE; i++)
			if (r[i] != PAT(i))
				_exit(fail("S1 through the read-only attachment", i) + 2);
		signal(SIGSEGV, on_segv);
		if (sigsetjmp(segv, 1) == 0) {
			r[0] = 1;
			_exit(fail("the read-only attachment is writable", 0) + 3);
		}
		memcpy(a, "child", 6);
		memcpy(b, "child", 6);
		_exit(0);
	}
	printf("ids %d %d\nready\n", s1, s2);
	fflush(stdout);
	wait_trigger(argv[1]);
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return fail("child", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
	if (memcmp(a, "child", 6) != 0)
		return fail("the child's write into S1 is not seen", 0);
	if (memcmp(b, "child", 6) != 0)
		return fail("the child's write into S2 is not seen", 0);
	for (int i = 6; i < S1SIZE; i++)
		if (a[i] != PAT(i))
			return fail("S1 pattern", i);
	if (shmget(key, 0, 0) != s1)
		return fail("S1's key names another id", shmget(key, 0, 0));
	if (shmctl(s1, IPC_STAT, &ds) != 0)
		return fail("IPC_STAT S1", errno);
	if (ds.shm_segsz != S1SIZE || (ds.shm_perm.mode & 0777) != 0640 || ds.shm_perm.__key != key)
		return fail("S1 size, mode, key", (long)ds.shm_segsz);
	if (ds.shm_nattch != nattch)
		return fail("S1 attach count", (long)ds.shm_nattch);
	if (shmctl(s2, IPC_STAT, &ds) != 0 || !(ds.shm_perm.mode & SHM_DEST) || ds.shm_perm.__key != IPC_PRIVATE)
		return fail("S2 is not marked removed", ds.shm_perm.mode);
	if (shmdt(b) != 0 || shmctl(s2, IPC_STAT, &ds) != -1 || (errno != EINVAL && errno != EIDRM))
		return fail("S2 outlived its last detach", errno);
	printf("OK\n");
	return 0;
}
