package rtcr_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/osthread"
	"golang.org/x/sys/unix"
)

// netPair is two network namespaces joined by a veth pair, made by the
// test with iproute2 (`ip netns`, `ip link`): the destination "a" with
// address addrA, the source "b" with addrB. Programs enter one with
// nsenter --net (only the network namespace: mount, pid and every other
// namespace stay the test's, as on two hosts that share a file system).
type netPair struct {
	t            *testing.T
	a, b         string // namespace names (/run/netns/NAME)
	vethA, vethB string
	addrA, addrB string
}

// newNetPair makes the namespaces and the link; they are deleted at the
// end of the test. Skips when iproute2 or nsenter is missing.
func newNetPair(t *testing.T) *netPair {
	t.Helper()
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (apt-get install iproute2 util-linux): %v", tool, err)
		}
	}
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, time.Now().UnixNano()%1000)
	n := &netPair{t: t, a: "rtcrA" + id, b: "rtcrB" + id, vethA: "rva" + id, vethB: "rvb" + id,
		addrA: "10.77.0.1", addrB: "10.77.0.2"}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", n.a).Run()
		_ = exec.Command("ip", "netns", "del", n.b).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", n.a},
		{"netns", "add", n.b},
		{"link", "add", n.vethA, "type", "veth", "peer", "name", n.vethB},
		{"link", "set", n.vethA, "netns", n.a},
		{"link", "set", n.vethB, "netns", n.b},
		{"-n", n.a, "addr", "add", n.addrA + "/24", "dev", n.vethA},
		{"-n", n.b, "addr", "add", n.addrB + "/24", "dev", n.vethB},
		{"-n", n.a, "link", "set", "lo", "up"},
		{"-n", n.b, "link", "set", "lo", "up"},
		{"-n", n.a, "link", "set", n.vethA, "up"},
		{"-n", n.b, "link", "set", n.vethB, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n
}

// command returns bin with args to run in namespace ns (n.a or n.b).
func (n *netPair) command(ns, bin string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--", bin}, args...)...)
}

// throttle limits what leaves namespace ns to rate (tc's tbf, e.g.
// "40mbit"), so that a transfer lasts long enough to be cut in the middle.
func (n *netPair) throttle(ns, rate string) {
	dev := n.vethA
	if ns == n.b {
		dev = n.vethB
	}
	args := []string{"-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"}
	if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
		n.t.Skipf("tc %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// netnsIno returns the inode of namespace ns, to compare with a process's
// /proc/PID/ns/net.
func (n *netPair) netnsIno(ns string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		n.t.Fatal(err)
	}
	return st.Ino
}

// inNetns runs fn on an OS thread that entered namespace ns; sockets fn
// makes stay in ns. The thread ends with fn, and is never the main thread
// (osthread.Go): rtcr reads its own namespaces from /proc/self, the main
// thread's.
func (n *netPair) inNetns(ns string, fn func() error) error {
	ch := make(chan error, 1)
	osthread.Go(func() {
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			ch <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ch <- fn()
	})
	return <-ch
}
