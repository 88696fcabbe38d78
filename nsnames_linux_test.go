package rtcr_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// TestNamespaceErrorsNameBothPids: errors about a process of an `rtcr run`
// tree name its pid in the namespace (the one the program and the image
// know) and its host pid: a dump refused for a socket of the program, and
// a restore failing after the processes exist (the program's working
// directory was removed).
func TestNamespaceErrorsNameBothPids(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("dump", func(t *testing.T) {
		tg := start(t, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "unsupported", false))
		testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
		prog := nsProgram(t, tg.pid)
		// The dump fails and leaves the tree running: kill its init (and
		// so the whole namespace), which killing `rtcr run` does not.
		init := nsInit(t, tg.pid)
		t.Cleanup(func() { _ = unix.Kill(init, unix.SIGKILL) })
		_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
		t.Logf("dump error: %v", err)
		want := fmt.Sprintf("dump pid 2 (host %d): ", prog)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("dump error %v, want it to name %q", err, want)
		}
	})
	t.Run("restore", func(t *testing.T) {
		tg := start(t, testutil.BuildRtcr(t), "run", "--", "sh", "-c",
			"mkdir -p sub && cd sub && exec "+testutil.BuildC(t, "counter", false))
		testutil.WaitForLines(t, tg.out, 3, 10*time.Second)
		dir := filepath.Join(t.TempDir(), "img")
		if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
			t.Fatal(err)
		}
		tg.waitOriginal()
		if err := os.Remove(filepath.Join(tg.dir, "sub")); err != nil {
			t.Fatal(err)
		}
		_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
		t.Logf("restore error: %v", err)
		re := regexp.MustCompile(`^restore pid 2 \(host [0-9]+\): attributes: `)
		if err == nil || !re.MatchString(err.Error()) {
			t.Fatalf("restore error %v, want it to match %s", err, re)
		}
	})
}

// nsInit returns the host pid of the init an `rtcr run` (pid run) started.
func nsInit(t *testing.T, run int) int {
	t.Helper()
	m, err := tree.ChildMap()
	if err != nil {
		t.Fatal(err)
	}
	if len(m[run]) != 1 {
		t.Fatalf("rtcr run %d: children %v, want its init", run, m[run])
	}
	return m[run][0]
}

// nsProgram returns the host pid of the program an `rtcr run` (pid run)
// started: the child of its init.
func nsProgram(t *testing.T, run int) int {
	t.Helper()
	m, err := tree.ChildMap()
	if err != nil {
		t.Fatal(err)
	}
	if len(m[run]) != 1 || len(m[m[run][0]]) != 1 {
		t.Fatalf("rtcr run %d: children %v, want its init with one child", run, m[run])
	}
	return m[m[run][0]][0]
}
