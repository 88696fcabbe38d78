package mem

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/track"
	"golang.org/x/sys/unix"
)

// TestJoinLayout: smaps must show the mappings maps showed in the same
// freeze; any difference (a line more or less, another range, another
// file) fails the dump naming the mapping, VmFlags aside.
func TestJoinLayout(t *testing.T) {
	maps := []procfs.Mapping{
		{Start: 0x1000, End: 0x3000, Read: true, Write: true},
		{Start: 0x5000, End: 0x6000, Read: true, Path: "/lib/x.so", Inode: 7, DevMajor: 8, Offset: 0x2000},
		{Start: 0x7000, End: 0x9000, Read: true, Write: true, Path: "[stack]"},
	}
	smaps := func() []procfs.Mapping {
		out := make([]procfs.Mapping, len(maps))
		copy(out, maps)
		for i := range out {
			out[i].VmFlags = []string{"rd", "mr"}
		}
		return out
	}
	if err := joinLayout(1, maps, smaps()); err != nil {
		t.Fatalf("same layout refused: %v", err)
	}
	changes := map[string]func([]procfs.Mapping) []procfs.Mapping{
		"end":     func(s []procfs.Mapping) []procfs.Mapping { s[0].End = 0x4000; return s },
		"perms":   func(s []procfs.Mapping) []procfs.Mapping { s[2].Write = false; return s },
		"path":    func(s []procfs.Mapping) []procfs.Mapping { s[1].Path = "/lib/y.so"; return s },
		"inode":   func(s []procfs.Mapping) []procfs.Mapping { s[1].Inode = 8; return s },
		"offset":  func(s []procfs.Mapping) []procfs.Mapping { s[1].Offset = 0; return s },
		"shared":  func(s []procfs.Mapping) []procfs.Mapping { s[0].Shared = true; return s },
		"missing": func(s []procfs.Mapping) []procfs.Mapping { return s[:2] },
		"extra": func(s []procfs.Mapping) []procfs.Mapping {
			return append(s, procfs.Mapping{Start: 0xa000, End: 0xb000})
		},
	}
	for name, change := range changes {
		err := joinLayout(1, maps, change(smaps()))
		if !errors.Is(err, errLayoutChanged) {
			t.Errorf("%s: got %v, want errLayoutChanged", name, err)
		}
	}
}

// TestEarly: only private anonymous memory is saved before its VmFlags
// are known.
func TestEarly(t *testing.T) {
	for _, c := range []struct {
		m    procfs.Mapping
		want bool
	}{
		{procfs.Mapping{}, true},
		{procfs.Mapping{Path: "[heap]"}, true},
		{procfs.Mapping{Path: "[stack]"}, true},
		{procfs.Mapping{Path: "[anon:buffers]"}, true},
		{procfs.Mapping{Shared: true}, false},
		{procfs.Mapping{Path: "/dev/zero (deleted)", Shared: true, Inode: 5}, false},
		{procfs.Mapping{Path: "/dev/zero", Inode: 5}, false},
		{procfs.Mapping{Path: "[anon_shmem:x]", Shared: true, Inode: 5}, false},
		{procfs.Mapping{Path: "/SYSV00000000", Shared: true, Inode: 5}, false},
		{procfs.Mapping{Path: "/dev/mem", Inode: 5}, false},
		{procfs.Mapping{Path: "/lib/x.so", Inode: 5}, false},
		{procfs.Mapping{Path: "[vdso]"}, false},
		{procfs.Mapping{Path: "[vvar]"}, false},
		{procfs.Mapping{Path: "anon_inode:[io_uring]"}, false},
	} {
		if got := early(c.m); got != c.want {
			t.Errorf("early(%+v) = %v, want %v", c.m, got, c.want)
		}
	}
}

// TestEarlyJoin: the join takes the VmFlags' decisions onto the pages
// saved early, and fails where the flags contradict how they were saved.
func TestEarlyJoin(t *testing.T) {
	runs := []image.PageRun{{Addr: 0x1000, Count: 1, FileOff: 0}}
	inc := &Incr{Tracked: true, Scan: nil}
	classified := image.VMA{Start: 0x1000, End: 0x3000, Kind: image.KindStack, GrowsDown: true, VmFlags: []string{image.VmDontDump}}

	// A full tracked dump: how it was saved does not depend on "uw".
	e := &earlyVMA{v: image.VMA{Start: 0x1000, End: 0x3000, Kind: image.KindStack, Pages: runs}}
	v := classified
	if err := e.join(1, &v, true, inc); err != nil {
		t.Fatal(err)
	}
	if !v.GrowsDown || !v.HasVmFlag(image.VmDontDump) || len(v.Pages) != 1 {
		t.Fatalf("joined VMA lost the flags or the pages: %+v", v)
	}

	// An increment (a scanner set; never used by join).
	inc.Scan = new(track.Scanner)
	unregistered := fmt.Errorf("written pages: %w", unix.EPERM)
	e = &earlyVMA{v: image.VMA{Start: 0x1000, End: 0x3000, Kind: image.KindStack, Pages: runs}, unregistered: unregistered}
	v = classified
	if err := e.join(1, &v, true, inc); !errors.Is(err, unix.EPERM) {
		t.Fatalf("tracked by smaps, saved whole as unregistered: got %v, want the scan's error", err)
	}
	v = classified
	if err := e.join(1, &v, false, inc); err != nil {
		t.Fatalf("untracked, saved whole: %v", err)
	}
	e = &earlyVMA{v: image.VMA{Start: 0x1000, End: 0x3000, Kind: image.KindStack, Pages: runs}, incr: true}
	v = classified
	if err := e.join(1, &v, false, inc); !errors.Is(err, errLayoutChanged) {
		t.Fatalf("saved as tracked, smaps without uw: got %v, want errLayoutChanged", err)
	}
	v = classified
	if err := e.join(1, &v, true, inc); err != nil || len(v.Pages) != 1 {
		t.Fatalf("tracked, saved incrementally: %v %+v", err, v)
	}
}
