package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestSharedFDTableRoundTrip: processes sharing one fd table
// (CLONE_FILES: a child and a grandchild with their ancestor) come back
// sharing it: an fd the grandchild opens after the restore shows in the
// others, while one a forked child (a copy of the table) opens does not;
// the image records the table once (zdtm fd01, fdt_shared). The dump used
// to refuse them; before that each came back with a table of its own.
func TestSharedFDTableRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "clonefiles", false), "trigger", "shared")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	for _, p := range c.Processes {
		if p.FDTableOf != 0 {
			shared++
			if len(p.FDs) != 0 {
				t.Errorf("process %d shares the table of %d but has %d fds of its own", p.Pid, p.FDTableOf, len(p.FDs))
			}
		}
	}
	if len(c.Processes) != 4 || shared != 2 {
		t.Fatalf("%d processes, %d sharing another's fd table; want 4 and 2", len(c.Processes), shared)
	}
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 {
		t.Fatalf("after restore: exit %d, output:\n%s", code, tg.output())
	}
	testutil.WaitForFile(t, tg.out, "OK\n", 30*time.Second)
}

// TestSharedFDTableRefused: a table shared by two processes whose parent
// has another (it unshared its own after cloning them) is refused,
// naming the processes, and the tree runs on.
func TestSharedFDTableRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "clonefiles", false), "trigger", "unshared")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.dumpRefused("share one fd table (CLONE_FILES) that", "does not share")
	tg.runsOnOK()
}
