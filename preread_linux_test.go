package rtcr_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/vmaflags"
)

// TestPreReadFlags: an increment reads /proc/PID/smaps before the freeze
// and uses its VmFlags when the mappings are unchanged in the freeze; a
// flag set on a whole mapping in between (madvise MADV_DONTDUMP, which
// changes no line of /proc/PID/maps) makes it read smaps frozen, and the
// image records the flag.
func TestPreReadFlags(t *testing.T) {
	testutil.RequireRoot(t)
	trigger := filepath.Join(t.TempDir(), "trigger")
	tg := testutil.StartTarget(t, testutil.BuildC(t, "flagflip", false), "ready\n", trigger)
	var start, end uint64
	lines := testutil.WaitForLines(t, tg.Out, 2, 10*time.Second)
	if _, err := fmt.Sscanf(lines[0], "region %x %x", &start, &end); err != nil {
		t.Fatalf("first line %q: %v", lines[0], err)
	}
	iterates := true
	if it, err := vmaflags.Open(tg.Pid); err != nil {
		t.Logf("no VMA iterator here (%v): smaps is read frozen; only the image is checked", err)
		iterates = false
	} else {
		it.Close()
	}
	base := t.TempDir()
	dump := func(name, parent string) (string, string) {
		var l bytes.Buffer
		dir := filepath.Join(base, name)
		_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.Pid, Dir: dir, Parent: parent, LeaveRunning: true, TrackMem: true,
			Logger: slog.New(slog.NewTextHandler(&l, nil))})
		if err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		return dir, l.String()
	}
	flags := func(dir string) []string {
		d, err := image.OpenDir(dir, uint32(os.Geteuid()), false)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		c, err := d.ReadManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range c.Processes {
			for _, v := range p.VMAs {
				if v.Start == start && v.End == end {
					return v.VmFlags
				}
			}
		}
		t.Fatalf("image %s has no VMA %#x-%#x", dir, start, end)
		return nil
	}
	state := func(log string) string {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, `msg="smaps before the freeze"`) {
				for _, s := range []string{"used", "known", "stale", "unavailable"} {
					if strings.Contains(line, " "+s+"=1") {
						return s
					}
				}
				t.Fatalf("pre-read logged as %q", line)
			}
		}
		t.Fatalf("no pre-read logged; log:\n%s", log)
		return ""
	}
	dump("full", "")
	_, log := dump("incr1", "../full")
	// The target sleeps: its mappings do not change while smaps is read
	// (known: this test binary's earlier pre-reads saw every word).
	if got := state(log); iterates && got != "used" && got != "known" {
		t.Fatalf("unchanged mappings: pre-read %s, want used or known; log:\n%s", got, log)
	}
	if f := flags(filepath.Join(base, "incr1")); slices.Contains(f, image.VmDontDump) {
		t.Fatalf("VmFlags %v before the flip", f)
	}
	rtcr.SetPreFreezeHookForTest(func(pid int) {
		if err := os.WriteFile(trigger, nil, 0o644); err != nil {
			t.Error(err)
		}
		testutil.WaitForFile(t, tg.Out, "flipped\n", 30*time.Second)
	})
	defer rtcr.SetPreFreezeHookForTest(nil)
	dir, log := dump("incr2", "../incr1")
	// Stale, or known if an earlier pre-read of this test binary saw
	// the new word: smaps' VmFlags of before the flip are not used.
	if got := state(log); iterates && got != "stale" && got != "known" {
		t.Fatalf("flag set after the pre-read: pre-read %s, want stale or known; log:\n%s", got, log)
	}
	if f := flags(dir); !slices.Contains(f, image.VmDontDump) {
		t.Fatalf("VmFlags %v after MADV_DONTDUMP: %q missing", f, image.VmDontDump)
	}
	rtcr.SetPreFreezeHookForTest(nil)
	// Two more increments: the new word is learnt (if it was not), and
	// then the flags come from the words alone, smaps read nowhere.
	dump("incr3", "../incr2")
	dir, log = dump("incr4", "../incr3")
	if got := state(log); iterates && got != "known" {
		t.Fatalf("every word seen before: pre-read %s, want known; log:\n%s", got, log)
	}
	if f := flags(dir); !slices.Contains(f, image.VmDontDump) {
		t.Fatalf("VmFlags %v from the known words: %q missing", f, image.VmDontDump)
	}
}

// TestPreReadTree: an increment of a parent and its child pre-reads the
// smaps of both, found through /proc/PID/task/TID/children, and uses both
// (neither changes its mappings), or their known flags words.
func TestPreReadTree(t *testing.T) {
	testutil.RequireRoot(t)
	trigger := filepath.Join(t.TempDir(), "trigger")
	tg := testutil.StartTarget(t, testutil.BuildC(t, "shmfork", false), "ready\n", trigger)
	if it, err := vmaflags.Open(tg.Pid); err != nil {
		t.Skipf("no VMA iterator here: %v", err)
	} else {
		it.Close()
	}
	base := t.TempDir()
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.Pid, Dir: filepath.Join(base, "full"), LeaveRunning: true, TrackMem: true}); err != nil {
		t.Fatal(err)
	}
	var l bytes.Buffer
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.Pid, Dir: filepath.Join(base, "incr"), Parent: "../full", LeaveRunning: true, TrackMem: true,
		Logger: slog.New(slog.NewTextHandler(&l, nil))}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.String(), "processes=2 used=2 ") && !strings.Contains(l.String(), "processes=2 used=0 known=2 ") &&
		!strings.Contains(l.String(), "processes=2 used=1 known=1 ") {
		t.Fatalf("want both processes' smaps pre-read and used; log:\n%s", l.String())
	}
}
