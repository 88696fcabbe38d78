// fdkinds: holds one fd of a kind rtcr does not restore, for the test
// that a dump refuses it naming the kind and leaves the process running.
//
// Protocol: fdkinds TRIGGER KIND
// Opens an fd of KIND and moves it to fd 10 (for "epoll": an epoll
// instance at fd 10 watching a netlink socket at fd 11). KIND is one of
// netlink, packet, raw, alg, vsock, iouring, bpfmap, bpfprog, bpflink,
// perf, fanotify (of class FAN_CLASS_CONTENT), userfaultfd, pidfd (on its parent, outside the tree), landlock, epoll, blockdev, chardev.
// (A namespace file, once here, is restored: nsfd.c.) If the kernel cannot make it here, it writes "SKIP reason\n" and
// exits 0. Otherwise it writes "ready\n" and polls every 1 ms until the
// file TRIGGER exists; then it checks fd 10 (and 11) are still open on the
// same file (fstat: device and inode) and prints "OK\n" and exits 0, or
// "FAIL: reason\n" and exits 1.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_alg.h>
#include <linux/io_uring.h>
#include <linux/landlock.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_ether.h>

static void skip(const char *what)
{
	printf("SKIP %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(0);
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

// bpf_prog loads "r0 = 0; exit" as a program of type type.
static int bpf_prog(int type)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = type;
	a.insns = (unsigned long)insns;
	a.insn_cnt = 2;
	a.license = (unsigned long)"GPL";
	return (int)sys_bpf(BPF_PROG_LOAD, &a);
}

// blockdev opens the first block device found in /dev read-only.
static int blockdev(void)
{
	DIR *d = opendir("/dev");
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISBLK(st.st_mode)) {
			int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NONBLOCK);
			if (fd >= 0) {
				closedir(d);
				return fd;
			}
		}
	}
	closedir(d);
	errno = ENODEV;
	return -1;
}

static int make(const char *kind)
{
	if (!strcmp(kind, "netlink") || !strcmp(kind, "epoll"))
		return socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (!strcmp(kind, "packet"))
		return socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (!strcmp(kind, "raw"))
		return socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	if (!strcmp(kind, "alg"))
		return socket(AF_ALG, SOCK_SEQPACKET, 0);
	if (!strcmp(kind, "vsock"))
		return socket(AF_VSOCK, SOCK_STREAM, 0);
	if (!strcmp(kind, "iouring")) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		return (int)syscall(SYS_io_uring_setup, 4, &p);
	}
	if (!strcmp(kind, "bpfmap")) {
		union bpf_attr a;
		memset(&a, 0, sizeof(a));
		a.map_type = BPF_MAP_TYPE_ARRAY;
		a.key_size = 4;
		a.value_size = 4;
		a.max_entries = 1;
		return (int)sys_bpf(BPF_MAP_CREATE, &a);
	}
	if (!strcmp(kind, "bpfprog"))
		return bpf_prog(BPF_PROG_TYPE_SOCKET_FILTER);
	if (!strcmp(kind, "bpflink")) {
		// A raw tracepoint on a rare event: the link lives as long as
		// this fd.
		int prog = bpf_prog(BPF_PROG_TYPE_RAW_TRACEPOINT);
		union bpf_attr a;
		if (prog < 0)
			return -1;
		memset(&a, 0, sizeof(a));
		a.raw_tracepoint.name = (unsigned long)"task_rename";
		a.raw_tracepoint.prog_fd = prog;
		int fd = (int)sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &a);
		close(prog);
		return fd;
	}
	if (!strcmp(kind, "perf")) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.type = PERF_TYPE_SOFTWARE;
		a.config = PERF_COUNT_SW_DUMMY;
		a.disabled = 1;
		return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
	}
	if (!strcmp(kind, "fanotify"))
		return fanotify_init(FAN_CLASS_CONTENT, O_RDONLY); // permission events: still refused
	if (!strcmp(kind, "userfaultfd"))
		return (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (!strcmp(kind, "pidfd"))
		return (int)syscall(SYS_pidfd_open, getppid(), 0); /* outside the tree */
	if (!strcmp(kind, "landlock")) {
		struct landlock_ruleset_attr a = { .handled_access_fs = LANDLOCK_ACCESS_FS_EXECUTE };
		return (int)syscall(SYS_landlock_create_ruleset, &a, sizeof(a), 0);
	}
	if (!strcmp(kind, "blockdev"))
		return blockdev();
	if (!strcmp(kind, "chardev"))
		return open("/dev/loop-control", O_RDONLY);
	fprintf(stderr, "fdkinds: unknown kind %s\n", kind);
	exit(2);
}

// place moves fd to num.
static void place(int fd, int num, const char *what)
{
	if (dup2(fd, num) < 0) {
		perror(what);
		exit(2);
	}
	close(fd);
}

static int same(int fd, const struct stat *was)
{
	struct stat st;
	return fstat(fd, &st) == 0 && st.st_dev == was->st_dev && st.st_ino == was->st_ino;
}

int main(int argc, char **argv)
{
	struct stat st10, st11;
	int two;

	if (argc != 3) {
		fprintf(stderr, "usage: fdkinds TRIGGER KIND\n");
		return 2;
	}
	int fd = make(argv[2]);
	if (fd < 0)
		skip(argv[2]);
	two = !strcmp(argv[2], "epoll");
	if (two) {
		place(fd, 11, "dup2 11");
		int ep = epoll_create1(0);
		struct epoll_event ev = { .events = EPOLLIN };
		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, 11, &ev) < 0) {
			perror("epoll");
			return 2;
		}
		place(ep, 10, "dup2 10");
		fstat(11, &st11);
	} else {
		place(fd, 10, "dup2 10");
	}
	fstat(10, &st10);
	printf("ready\n");
	fflush(stdout);

	struct timespec ms = { 0, 1000000 };
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (!same(10, &st10) || (two && !same(11, &st11))) {
		printf("FAIL: fd 10 or 11 changed\n");
		return 1;
	}
	printf("OK\n");
	return 0;
}
