package attr

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// TestParseList: CPU lists as /sys prints them become masks; bad ones are
// errors.
func TestParseList(t *testing.T) {
	m, err := parseList("0-2,5,64")
	if err != nil {
		t.Fatal(err)
	}
	if got := trimMask(m); !slices.Equal(got, []uint64{0x27, 1}) {
		t.Fatalf("mask %x, want [27 1]", got)
	}
	if got := maskList(m); got != "0,1,2,5,64" {
		t.Fatalf("list %q", got)
	}
	for _, bad := range []string{"", "3-1", "x", "0-99999"} {
		if _, err := parseList(bad); err == nil {
			t.Errorf("parseList(%q) took it", bad)
		}
	}
	if !covers([]uint64{7}, []uint64{3}) || covers([]uint64{1}, []uint64{3}) || covers(nil, []uint64{1}) {
		t.Fatal("covers")
	}
}

// TestNiceIOPrio: the I/O priority the kernel derives from the scheduling
// state, which the dump does not record.
func TestNiceIOPrio(t *testing.T) {
	for _, tc := range []struct {
		s    image.Sched
		want uint32
	}{
		{image.Sched{Policy: unix.SCHED_NORMAL}, 2<<13 | 4},
		{image.Sched{Policy: unix.SCHED_BATCH, Nice: 19}, 2<<13 | 7},
		{image.Sched{Policy: unix.SCHED_NORMAL, Nice: -20}, 2 << 13},
		{image.Sched{Policy: unix.SCHED_IDLE}, 3<<13 | 4},
		{image.Sched{Policy: unix.SCHED_FIFO, Priority: 10}, 1<<13 | 4},
	} {
		if got := niceIOPrio(&tc.s); got != tc.want {
			t.Errorf("%+v: %#x, want %#x", tc.s, got, tc.want)
		}
	}
}

// TestCgroupHelpers: mountinfo escapes, controller matching, and a process
// in rtcr's own cgroups records none.
func TestCgroupHelpers(t *testing.T) {
	if got := unescape(`/a\040b\\c`); got != `/a b\\c` {
		t.Fatalf("unescape: %q", got)
	}
	opts := strings.Split("rw,cpu,cpuacct", ",")
	if !hasAll(opts, "cpu,cpuacct") || !hasAll(opts, "cpu") || hasAll(opts, "memory") {
		t.Fatal("hasAll")
	}
	cgs, err := dumpCgroups(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(cgs) != 0 {
		t.Fatalf("own cgroups recorded: %+v", cgs)
	}
	if _, err := cgroupDir(image.Cgroup{ID: 99, Controllers: "nosuch", Path: "/"}); err == nil {
		t.Fatal("a hierarchy rtcr has not mounted was found")
	}
}

// TestCheckSpeculation: the per-thread settings are refused, the defaults
// and system-wide modes are not.
func TestCheckSpeculation(t *testing.T) {
	for _, v := range []string{"", "vulnerable", "thread vulnerable", "not vulnerable", "globally mitigated"} {
		if err := checkSpeculation(&procfs.Status{SpecStoreBypass: v, SpecIndirectBranch: "conditional enabled"}); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
	for _, v := range []string{"thread mitigated", "thread force mitigated"} {
		if err := checkSpeculation(&procfs.Status{SpecStoreBypass: v}); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("%q: %v", v, err)
		}
	}
	if err := checkSpeculation(&procfs.Status{SpecIndirectBranch: "conditional force disabled"}); err == nil {
		t.Error("indirect branch force disabled taken")
	}
	if err := CheckSpeculation(1, 1, &procfs.Status{UntagMask: "0x7fffffffffff"}); err == nil || !strings.Contains(err.Error(), "linear address masking") {
		t.Errorf("LAM: %v", err)
	}
	if err := CheckSpeculation(1, 1, &procfs.Status{UntagMask: "0xffffffffffffffff"}); err != nil {
		t.Errorf("no LAM: %v", err)
	}
}

// TestCheckSharedFS: rtcr's own threads share their filesystem
// information; it and its parent do not share theirs.
func TestCheckSharedFS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kcmp of another process needs ptrace rights")
	}
	pid := os.Getpid()
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var ts []int
	for _, e := range tids {
		var n int
		for _, c := range e.Name() {
			n = n*10 + int(c-'0')
		}
		ts = append(ts, n)
	}
	if err := checkSharedFS([]int{pid, os.Getppid()}, map[int][]int{pid: ts}); err != nil {
		t.Fatal(err)
	}
}

// TestThreadCgroups: a process in a cgroup v2 domain cgroup has its
// threads there too (no read per thread); with a v1 hierarchy, or a
// cgroup that cannot be checked, they may be elsewhere.
func TestThreadCgroups(t *testing.T) {
	if !threadCgroups([]byte("4:memory:/a\n0::/\n")) || !threadCgroups([]byte("0::/no/such/cgroup\n")) {
		t.Fatal("threads of a v1 process or an unknown cgroup taken to be in it")
	}
	if os.Geteuid() != 0 {
		t.Skip("makes a cgroup")
	}
	root, err := cgroupDir(image.Cgroup{Path: "/"})
	if err != nil {
		t.Skip("no cgroup v2 mount")
	}
	name := fmt.Sprintf("/rtcr-attr-test-%d", os.Getpid())
	if err := os.Mkdir(root+name, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(root + name)
	if threadCgroups([]byte("0::" + name + "\n")) {
		t.Fatal("threads of a process in a domain cgroup taken to be elsewhere")
	}
}

// TestCheckRlimitsOwner: a hard limit above rtcr's own is taken for an
// image of root or of an owner with CAP_SYS_RESOURCE when rtcr (root) can
// raise it, and refused as untrusted for an image of any other owner:
// the stub would raise it with root's rights.
func TestCheckRlimitsOwner(t *testing.T) {
	var own unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &own); err != nil {
		t.Fatal(err)
	}
	if own.Max == unix.RLIM_INFINITY {
		t.Skip("rtcr's RLIMIT_NOFILE hard limit is unlimited")
	}
	p := &image.Process{Pid: 7, Rlimits: []image.Rlimit{{Resource: unix.RLIMIT_NOFILE, Cur: 1024, Max: own.Max + 1}}}
	user := image.Owner{Uid: 1000, Gids: []uint32{1000}}
	if err := CheckRlimits(p, user); !errors.Is(err, image.ErrUntrusted) || !strings.Contains(err.Error(), "pid 7") {
		t.Fatalf("non-root owner, hard limit above rtcr's: %v, want ErrUntrusted naming pid 7", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	if data[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0 {
		if err := CheckRlimits(p, image.Owner{Root: true}); err != nil {
			t.Fatalf("root's image: %v", err)
		}
		capable := user
		capable.Caps = 1 << unix.CAP_SYS_RESOURCE
		if err := CheckRlimits(p, capable); err != nil {
			t.Fatalf("owner with CAP_SYS_RESOURCE: %v", err)
		}
	} else if err := CheckRlimits(p, image.Owner{Root: true}); !errors.Is(err, unix.EPERM) {
		t.Fatalf("root's image, rtcr without CAP_SYS_RESOURCE: %v, want EPERM", err)
	}
	p.Rlimits[0].Max = own.Max
	if err := CheckRlimits(p, user); err != nil {
		t.Fatalf("non-root owner, hard limit rtcr's own: %v", err)
	}
}

// TestCheckOomScoreAdjOwner: an OOM score adjustment below rtcr's own is
// refused as untrusted for an image of a non-root owner without
// CAP_SYS_RESOURCE (rtcr writes it with its own rights), taken for root's.
func TestCheckOomScoreAdjOwner(t *testing.T) {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	own, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if own == -1000 {
		t.Skip("rtcr's own oom_score_adj is the lowest")
	}
	low, same := own-1, own
	p := &image.Process{Pid: 7, OomScoreAdj: &low}
	user := image.Owner{Uid: 1000, Gids: []uint32{1000}}
	if err := CheckOomScoreAdj(p, user); !errors.Is(err, image.ErrUntrusted) || !strings.Contains(err.Error(), "pid 7") {
		t.Fatalf("non-root owner, below rtcr's own: %v, want ErrUntrusted naming pid 7", err)
	}
	if err := CheckOomScoreAdj(p, image.Owner{Root: true}); err != nil {
		t.Fatalf("root's image: %v", err)
	}
	p.OomScoreAdj = &same
	if err := CheckOomScoreAdj(p, user); err != nil {
		t.Fatalf("non-root owner, rtcr's own: %v", err)
	}
}
