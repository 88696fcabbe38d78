package rtcr_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/testutil"
)

// region is one "region NAME START END" line of testdata/vmflags.c.
type region struct {
	name       string
	start, end uint64
}

// regions parses the region lines of a vmflags output.
func regions(t *testing.T, out string) []region {
	t.Helper()
	var rs []region
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "region" {
			continue
		}
		start, err1 := strconv.ParseUint(f[2], 16, 64)
		end, err2 := strconv.ParseUint(f[3], 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad region line %q", line)
		}
		rs = append(rs, region{f[1], start, end})
	}
	return rs
}

// vmFlags returns the VmFlags of every mapping of pid by its range, sorted,
// without "sd" (soft-dirty: not user state) and "ac" (accounting, which
// follows the protection a mapping has had; see internal/mem).
func vmFlags(t *testing.T, pid int) map[[2]uint64]string {
	t.Helper()
	maps, err := procfs.ReadSmaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	out := map[[2]uint64]string{}
	for _, m := range maps {
		f := slices.DeleteFunc(slices.Clone(m.VmFlags), func(s string) bool { return s == "sd" || s == "ac" })
		slices.Sort(f)
		out[[2]uint64{m.Start, m.End}] = fmt.Sprintf("%s %s", m.Path, strings.Join(f, " "))
	}
	return out
}

// TestVmFlags restores the madvise, mlock and mmap state of the regions of
// testdata/vmflags.c: every mapping of the restored process has the
// VmFlags the original had, and after the restore the program sees it
// behave (a forked child gets the WIPEONFORK region zeroed and no DONTFORK
// region; the read-only shared mapping of a file open read-write can be
// made writable).
func TestVmFlags(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "vmflags", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	rs := regions(t, tg.output())
	before := vmFlags(t, tg.pid)
	// The regions must carry the flags the test is about.
	want := map[string]string{
		"dontfork": "dc", "wipeonfork": "wf", "dontdump": "dd", "hugepage": "hg",
		"nohugepage": "nh", "mergeable": "mg", "sequential": "sr", "random": "rr",
		"locked": "lo", "lockonfault": "lf", "noreserve": "nr", "droppable": "dp",
		"maywrite": "mw",
	}
	if len(rs) != len(want) {
		t.Fatalf("%d regions, want %d; output:\n%s", len(rs), len(want), tg.output())
	}
	for _, r := range rs {
		if f := before[[2]uint64{r.start, r.end}]; !slices.Contains(strings.Fields(f), want[r.name]) {
			t.Fatalf("region %s %#x-%#x of the original has VmFlags %q, want %q among them", r.name, r.start, r.end, f, want[r.name])
		}
	}
	dir := tg.dump(false)
	tg.restore(dir)
	after := vmFlags(t, tg.pid)
	for rng, f := range before {
		if after[rng] != f {
			t.Errorf("mapping %#x-%#x: VmFlags after restore %q, want %q", rng[0], rng[1], after[rng], f)
		}
	}
	for rng, f := range after {
		if _, ok := before[rng]; !ok {
			t.Errorf("mapping %#x-%#x %q after restore was not in the original", rng[0], rng[1], f)
		}
	}
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("vmflags check after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestVmFlagsRefused checks that a dump refuses a mapping with a VmFlags
// bit rtcr cannot restore (sealed with mseal: "sl"), naming the mapping's
// range and the flag, and leaves the target running untraced.
func TestVmFlagsRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "vmflags", false), "seal")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	rs := regions(t, tg.output())
	if len(rs) != 1 {
		t.Fatalf("want one sealed region; output:\n%s", tg.output())
	}
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
	want := fmt.Sprintf(`mapping %#x-%#x "" of %d: VmFlags "sl"`, rs[0].start, rs[0].end, tg.pid)
	if !errors.Is(err, mem.ErrUnsupported) || !strings.Contains(err.Error(), want) {
		t.Fatalf("dump error %v, want ErrUnsupported containing %q", err, want)
	}
	if tp := tracerPid(tg.pid); tp != 0 {
		t.Fatalf("target %d left traced by %d", tg.pid, tp)
	}
	if s := state(tg.pid); s == 't' || s == 'T' || s == 'Z' || s == 0 {
		t.Fatalf("target %d in state %q after the refused dump", tg.pid, s)
	}
}
