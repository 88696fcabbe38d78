package main

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRestoreLazy runs rtcr restore --lazy of a counter: it stays until
// every page is in, says when the process ran and when all was in, exits
// 0, and the counter continues.
func TestRestoreLazy(t *testing.T) {
	requireRoot(t)
	tg := testutil.StartTarget(t, testutil.BuildC(t, "counter", false), "")
	testutil.WaitForLines(t, tg.Out, 5, 10*time.Second)
	dir := t.TempDir() + "/img"
	if _, stderr, code := runRtcr(t, "dump", "-t", fmt.Sprint(tg.Pid), "-D", dir); code != 0 {
		t.Fatalf("dump: exit %d: %s", code, stderr)
	}
	_ = tg.Cmd.Wait() // the dump killed it: free its pid
	stdout, stderr, code := runRtcr(t, "restore", "-D", dir, "--lazy")
	if code != 0 {
		t.Fatalf("restore --lazy: exit %d: %s", code, stderr)
	}
	t.Cleanup(func() { _ = unix.Kill(tg.Pid, unix.SIGKILL) })
	want := regexp.MustCompile(fmt.Sprintf(`(?s)^restored pid %d from .* lazily: running after [0-9.]+[µm]?s, [0-9.]+ MiB of memory still to come in\nall pages in after [0-9.]+[µm]?s \(\d+ faults served, [0-9.]+ MiB fetched\); rtcr let go of pid %d\n$`, tg.Pid, tg.Pid))
	if !want.MatchString(stdout) {
		t.Errorf("stdout %q, want the two lines of a lazy restore", stdout)
	}
	n := len(testutil.WaitForLines(t, tg.Out, 0, time.Second))
	testutil.WaitForLines(t, tg.Out, n+5, 10*time.Second)
}
