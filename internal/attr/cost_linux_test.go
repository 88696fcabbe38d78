package attr

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestCheckTreeCost logs what CheckTree and DumpThread cost per thread of
// a 64-thread process (no assertion: timing).
func TestCheckTreeCost(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "threads", false)
	cmd := exec.Command(bin, "64", "/nonexistent")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	var tids []int
	deadline := time.Now().Add(30 * time.Second)
	for len(tids) < 65 && time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		tids = tids[:0]
		for _, e := range ents {
			n, _ := strconv.Atoi(e.Name())
			tids = append(tids, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	for i := 0; i < 10; i++ {
		if err := CheckTree([]int{pid}, map[int][]int{pid: tids}); err != nil {
			t.Fatal(err)
		}
	}
	ct := time.Since(start) / 10
	start = time.Now()
	for i := 0; i < 10; i++ {
		for _, tid := range tids {
			var th image.Thread
			if err := DumpThread(tid, &th); err != nil {
				t.Fatal(err)
			}
		}
	}
	dt := time.Since(start) / 10
	piece := func(name string, f func(tid int)) {
		st := time.Now()
		for _, tid := range tids {
			f(tid)
		}
		t.Logf("%s: %v per thread", name, time.Since(st)/time.Duration(len(tids)))
	}
	w := func(tid int) string { return strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) }
	piece("cgroup", func(tid int) { _, _ = os.ReadFile("/proc/" + w(tid) + "/cgroup") })
	piece("status", func(tid int) { _, _ = os.ReadFile("/proc/" + w(tid) + "/status") })
	piece("label", func(tid int) { _, _, _ = readLabel(w(tid)) })
	piece("kcmp", func(tid int) { _ = checkSharedFS([]int{pid}, map[int][]int{pid: {pid, tid}}) })
	t.Logf("%d threads: CheckTree %v (%v per thread), DumpThread %v (%v per thread)", len(tids), ct, ct/time.Duration(len(tids)), dt, dt/time.Duration(len(tids)))
}
