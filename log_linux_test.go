package rtcr_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// stepLine matches a step's log line: its name, pid and duration.
var stepLine = regexp.MustCompile(`level=INFO msg=("[^"]*"|\S+) pid=(\d+) took=(\S+)`)

// loggedSteps returns the steps logged for pid, each with its duration.
func loggedSteps(t *testing.T, log string, pid int) map[string]time.Duration {
	t.Helper()
	steps := map[string]time.Duration{}
	for _, m := range stepLine.FindAllStringSubmatch(log, -1) {
		if m[2] != strconv.Itoa(pid) {
			continue
		}
		d, err := time.ParseDuration(m[3])
		if err != nil {
			t.Fatalf("step %s: duration %q: %v", m[1], m[3], err)
		}
		steps[strings.Trim(m[1], `"`)] = d
	}
	return steps
}

// checkLog checks that log has an Info line with pid and a duration for
// every step, and Debug lines with each detail.
func checkLog(t *testing.T, what, log string, pid int, steps, details []string) {
	t.Helper()
	got := loggedSteps(t, log, pid)
	for _, s := range steps {
		if _, ok := got[s]; !ok {
			t.Errorf("%s log has no step %q for pid %d", what, s, pid)
		}
	}
	for _, d := range details {
		if !strings.Contains(log, d) {
			t.Errorf("%s log has no %q", what, d)
		}
	}
	if t.Failed() {
		t.Fatalf("%s log:\n%s", what, log)
	}
}

// dumpSteps and restoreSteps are the Info steps every live process gets.
var (
	dumpSteps = []string{"freeze", "fds", "scratch area", "attributes", "signal actions", "credentials",
		"timers", "mm", "pending signals", "threads", "memory", "manifest", "release"}
	restoreSteps = []string{"read manifest", "verify pages", "preflight", "create process", "memory",
		"mm and exe link", "fds", "attributes", "signal actions", "threads", "thread state", "timers",
		"credentials", "remove scratch area", "registers", "detach"}
)

// TestLogSteps dumps and restores a counter with a debug logger: every
// step is logged with the pid and its duration, and the details (fds,
// threads, mappings) are there at Debug.
func TestLogSteps(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	var dl, rl bytes.Buffer
	debug := &slog.HandlerOptions{Level: slog.LevelDebug}
	dir := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, Logger: slog.New(slog.NewTextHandler(&dl, debug))}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	tg.reap()
	checkLog(t, "dump", dl.String(), tg.pid, dumpSteps, []string{
		fmt.Sprintf("level=DEBUG msg=fd pid=%d fd=1 kind=", tg.pid),
		fmt.Sprintf("level=DEBUG msg=thread pid=%d tid=%d", tg.pid, tg.pid),
		fmt.Sprintf("level=DEBUG msg=vma pid=%d start=0x", tg.pid),
		"msg=\"dump done\"",
	})
	if _, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, Logger: slog.New(slog.NewTextHandler(&rl, debug))}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	checkLog(t, "restore", rl.String(), tg.pid, restoreSteps, []string{
		fmt.Sprintf("level=DEBUG msg=fd pid=%d fd=1 kind=", tg.pid),
		fmt.Sprintf("level=DEBUG msg=thread pid=%d tid=%d", tg.pid, tg.pid),
		"msg=\"restore done\"",
	})
	n := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
	checkConsecutive(t, testutil.WaitForLines(t, tg.out, n+5, 10*time.Second))
}

// TestLogFailedDump: a dump into a read-only directory logs the error and
// the release of the tree.
func TestLogFailedDump(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	var l bytes.Buffer
	dir := filepath.Join(mountTmpfs(t, "size=16k"), "img")
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, Logger: slog.New(slog.NewTextHandler(&l, nil))})
	if err == nil {
		t.Fatal("dump into a full tmpfs succeeded")
	}
	log := l.String()
	if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "no space left on device") {
		t.Fatalf("log has no error line naming the failure:\n%s", log)
	}
	if got := loggedSteps(t, log, tg.pid); !containsAll(got, "freeze", "release") {
		t.Fatalf("log of the failed dump lacks freeze or release:\n%s", log)
	}
	assertRunning(t, tg)
}

func containsAll(m map[string]time.Duration, keys ...string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}
