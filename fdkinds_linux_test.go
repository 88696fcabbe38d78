package rtcr_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestUnsupportedKindsNamed: a process holding an fd of a kind rtcr does
// not restore (testdata/fdkinds.c opens one per case) is refused with the
// fd and its kind named precisely, and runs on untouched (its fds still
// open on the same files). Kinds this kernel cannot make are skipped with
// the reason.
func TestUnsupportedKindsNamed(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdkinds", false)
	tests := []struct{ kind, fd, want string }{
		{"netlink", "fd 10 (socket:[", "netlink socket (family 16, protocol 0 NETLINK_ROUTE)"},
		{"packet", "fd 10 (socket:[", "packet socket (family 17, SOCK_RAW)"},
		{"raw", "fd 10 (socket:[", "raw IPv4 socket (protocol 1)"},
		{"alg", "fd 10 (socket:[", "AF_ALG (kernel crypto) socket (family 38, SOCK_SEQPACKET)"},
		{"vsock", "fd 10 (socket:[", "vsock socket (family 40, SOCK_STREAM)"},
		{"iouring", "fd 10 (anon_inode:[io_uring])", ": io_uring instance: "},
		{"bpfmap", "fd 10 (anon_inode:bpf-map)", ": bpf map: "},
		{"bpfprog", "fd 10 (anon_inode:bpf-prog)", ": bpf program: "},
		{"bpflink", "fd 10 (anon_inode:bpf_link)", ": bpf link: "},
		{"perf", "fd 10 (anon_inode:[perf_event])", ": perf event: "},
		{"fanotify", "fd 10 (anon_inode:[fanotify])", ": fanotify group of class 0x4 (permission events): "},
		{"userfaultfd", "fd 10 (anon_inode:[userfaultfd])", ": userfaultfd: "},
		{"pidfd", "fd 10 (anon_inode:[pidfd])", ": pidfd on process "},
		{"landlock", "fd 10 (anon_inode:[landlock-ruleset])", ": landlock ruleset: "},
		// The epoll instance at fd 10 is fine; what it watches is not.
		{"epoll", "fd 11 (socket:[", "netlink socket (family 16"},
		{"blockdev", "fd 10 (/dev/", ": block device "},
		{"chardev", "fd 10 (/dev/loop-control)", ": character device 10:237 (not one of /dev/full, /dev/null"},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.kind)
			out := waitReadyOrSkip(t, tg.out)
			if reason, ok := strings.CutPrefix(out, "SKIP "); ok {
				t.Skipf("this kernel cannot make it: %s", strings.TrimSpace(reason))
			}
			tg.dumpRefused(tc.fd, tc.want)
			tg.runsOnOK()
		})
	}
}

// waitReadyOrSkip waits until the program at out wrote "ready\n" or a
// "SKIP …" line, and returns its output.
func waitReadyOrSkip(t *testing.T, out string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		s := string(b)
		if strings.HasPrefix(s, "ready\n") || (strings.HasPrefix(s, "SKIP ") && strings.HasSuffix(s, "\n")) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready or SKIP line after 30 s; output:\n%s", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
