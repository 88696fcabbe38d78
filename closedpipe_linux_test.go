package rtcr_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestClosedPipeEnd checkpoints testdata/closedpipe.c, a parent and child
// holding the read end of a pipe whose write end is closed (with bytes
// left in it) and the write end of one whose read end is closed. Nobody
// holds the other ends, so they are not external objects: the image has
// none, the restore gives no warning, and after it the bytes are read,
// then end of file, and a write fails with EPIPE, in both processes.
func TestClosedPipeEnd(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "closedpipe", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Processes {
		for _, fd := range p.FDs {
			if fd.Kind != image.FDPipe && (fd.Num == 3 || fd.Num == 4) {
				t.Errorf("pid %d fd %d (%s) dumped as %s, want %s", p.Pid, fd.Num, fd.Desc, fd.Kind, image.FDPipe)
			}
		}
	}
	var warn bytes.Buffer
	if _, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, Warnings: &warn}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if warn.Len() != 0 {
		t.Errorf("restore warned:\n%s", warn.String())
	}
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("pipes with a closed end after restore: exit %d, output:\n%s", code, tg.output())
	}
}
