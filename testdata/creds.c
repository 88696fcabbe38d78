// creds: drops from root to a known, non-default set of credentials and
// prctl state, then idles, for the round-trip tests of internal/cred (and
// end-to-end restore tests). Must run as root with at least the
// capabilities listed below.
//
// Protocol: creds [trigger]   (default trigger: "trigger")
// The program ignores SIGUSR2 (its parent-death signal below: the parent is
// the thread that forked it, which may end before the test does), then:
//   groups {1000, 1001}; gids real 1000, effective 1001, saved 1002, fs 1003;
//   inheritable {CAP_KILL, CAP_NET_BIND_SERVICE, CAP_SYS_MODULE}, set while
//     CAP_SYS_MODULE is still in the bounding set;
//   bounding set without CAP_SYS_MODULE and CAP_SYS_RAWIO;
//   PR_SET_KEEPCAPS 1 (left on); uids real 1000, effective 1001, saved
//     1002, fs 1003;
//   ambient {CAP_NET_BIND_SERVICE};
//   securebits SECBIT_NOROOT|SECBIT_NOROOT_LOCKED|SECBIT_KEEP_CAPS|
//     SECBIT_NO_CAP_AMBIENT_RAISE|SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED (0xd3);
//   permitted = effective = {CAP_KILL, CAP_NET_BIND_SERVICE};
//   no_new_privs 1; dumpable 0; child subreaper 1; parent-death signal
//     SIGUSR2 (after the id changes, which clear dumpable and pdeathsig);
// writes "ready\n" to stdout (write(2)) and polls every 1 ms until the
// trigger file exists (stat(2), with the fsuid 1003 and groups above: the
// path must be searchable by them). Then it checks that every item above
// still holds and writes "OK\n" and exits 0, or "FAIL <item>\n" and exits 1.
// A setup failure writes "creds: <step>: <error>" to stderr and exits 2.
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BIT(c) (1u << (c))
#define KEEP (BIT(CAP_KILL) | BIT(CAP_NET_BIND_SERVICE))
#define INH (KEEP | BIT(CAP_SYS_MODULE))
#define SECBITS (SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS | \
		 SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED)

static void die(const char *what)
{
	fprintf(stderr, "creds: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void say(const char *s)
{
	if (write(1, s, strlen(s)) < 0)
		_exit(3);
}

static void fail(const char *what)
{
	say("FAIL ");
	say(what);
	say("\n");
	exit(1);
}

// caps sets the low 32 bits of the three sets (every capability used here
// is below 32) and clears the high ones.
static void caps(unsigned eff, unsigned prm, unsigned inh, const char *what)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { eff, prm, inh }, { 0, 0, 0 } };
	if (syscall(SYS_capset, &hdr, data) != 0)
		die(what);
}

static void check(int ok, const char *what)
{
	if (!ok)
		fail(what);
}

static void verify(void)
{
	uid_t r, e, s;
	gid_t gr, ge, gs, groups[8];
	check(getresuid(&r, &e, &s) == 0 && r == 1000 && e == 1001 && s == 1002, "uids");
	check(setfsuid(-1) == 1003, "fsuid");
	check(getresgid(&gr, &ge, &gs) == 0 && gr == 1000 && ge == 1001 && gs == 1002, "gids");
	check(setfsgid(-1) == 1003, "fsgid");
	int n = getgroups(8, groups);
	check(n == 2 && groups[0] == 1000 && groups[1] == 1001, "groups");
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	check(syscall(SYS_capget, &hdr, data) == 0, "capget");
	check(data[0].effective == KEEP && data[0].permitted == KEEP && data[0].inheritable == INH &&
		      data[1].effective == 0 && data[1].permitted == 0 && data[1].inheritable == 0,
	      "capability sets");
	check(prctl(PR_CAPBSET_READ, CAP_SYS_MODULE) == 0 && prctl(PR_CAPBSET_READ, CAP_SYS_RAWIO) == 0 &&
		      prctl(PR_CAPBSET_READ, CAP_KILL) == 1,
	      "bounding set");
	check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) == 1 &&
		      prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_KILL, 0, 0) == 0,
	      "ambient set");
	check(prctl(PR_GET_SECUREBITS) == SECBITS, "securebits");
	check(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs");
	check(prctl(PR_GET_DUMPABLE) == 0, "dumpable");
	int v = -1;
	check(prctl(PR_GET_CHILD_SUBREAPER, &v) == 0 && v == 1, "child subreaper");
	v = -1;
	check(prctl(PR_GET_PDEATHSIG, &v) == 0 && v == SIGUSR2, "pdeathsig");
}

int main(int argc, char **argv)
{
	const char *trigger = argc > 1 ? argv[1] : "trigger";
	if (signal(SIGUSR2, SIG_IGN) == SIG_ERR)
		die("ignore SIGUSR2");

	gid_t groups[] = { 1000, 1001 };
	if (setgroups(2, groups) != 0)
		die("setgroups");
	if (setresgid(1000, 1001, 1002) != 0)
		die("setresgid");
	setfsgid(1003);
	if (setfsgid(-1) != 1003)
		die("setfsgid");

	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) != 0)
		die("capget");
	data[0].inheritable = INH;
	data[1].inheritable = 0;
	if (syscall(SYS_capset, &hdr, data) != 0)
		die("capset inheritable");
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE) != 0 || prctl(PR_CAPBSET_DROP, CAP_SYS_RAWIO) != 0)
		die("PR_CAPBSET_DROP");

	if (prctl(PR_SET_KEEPCAPS, 1) != 0)
		die("PR_SET_KEEPCAPS");
	if (setresuid(1000, 1001, 1002) != 0)
		die("setresuid");
	// setresuid cleared the effective set: CAP_SETUID back for setfsuid,
	// CAP_SETPCAP for the securebits.
	unsigned work = KEEP | BIT(CAP_SETUID) | BIT(CAP_SETPCAP);
	caps(work, work, INH, "capset working set");
	setfsuid(1003);
	if (setfsuid(-1) != 1003)
		die("setfsuid");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0)
		die("PR_CAP_AMBIENT_RAISE");
	if (prctl(PR_SET_SECUREBITS, SECBITS) != 0)
		die("PR_SET_SECUREBITS");
	caps(KEEP, KEEP, INH, "capset final");

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		die("PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_DUMPABLE, 0) != 0)
		die("PR_SET_DUMPABLE");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		die("PR_SET_CHILD_SUBREAPER");
	if (prctl(PR_SET_PDEATHSIG, SIGUSR2) != 0)
		die("PR_SET_PDEATHSIG");

	say("ready\n");
	struct timespec ms = { 0, 1000000 };
	struct stat st;
	while (stat(trigger, &st) != 0)
		nanosleep(&ms, NULL);
	verify();
	say("OK\n");
	return 0;
}
