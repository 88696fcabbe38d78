package mem

import (
	"slices"
	"testing"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/vmaflags"
)

// TestPreReadChecks: a pre-read counts only when the iterator's two reads
// around smaps are identical with one even sequence count (no writer of
// the mmap lock in between), and smaps lists the same ranges.
func TestPreReadChecks(t *testing.T) {
	a := []vmaflags.VMA{{Start: 0x1000, End: 0x3000, Flags: 0x73, LockSeq: 8}, {Start: 0x5000, End: 0x6000, Flags: 0x71, LockSeq: 8}}
	same := append([]vmaflags.VMA(nil), a...)
	if !quiet(a, same) {
		t.Fatal("identical reads not quiet")
	}
	moved := append([]vmaflags.VMA(nil), a...)
	moved[1].LockSeq, moved[0].LockSeq = 10, 10
	odd := append([]vmaflags.VMA(nil), a...)
	odd[0].LockSeq, odd[1].LockSeq = 9, 9
	flag := append([]vmaflags.VMA(nil), a...)
	flag[1].Flags |= 1 << 26
	for name, b := range map[string][]vmaflags.VMA{"sequence moved": moved, "flag changed": flag, "one less": a[:1]} {
		if quiet(a, b) {
			t.Errorf("%s: quiet", name)
		}
	}
	if quiet(odd, odd) {
		t.Error("odd sequence count (a writer inside): quiet")
	}
	if quiet(nil, nil) {
		t.Error("no mappings: quiet")
	}
	maps := []procfs.Mapping{{Start: 0x1000, End: 0x3000}, {Start: 0x5000, End: 0x6000}, {Start: 0xff600000, End: 0xff601000, Path: "[vsyscall]"}}
	if !sameRanges(a, maps) {
		t.Error("same ranges ([vsyscall] aside) not recognised")
	}
	if sameRanges(a, maps[:1]) || sameRanges(a[:1], maps) {
		t.Error("different ranges recognised as the same")
	}
}

// TestFlagWords: VmFlags learnt per flags word are given back for the
// same words only, joined with maps' lines by range; a word seen with two
// different lines disables the cache.
func TestFlagWords(t *testing.T) {
	saved := flagWords.m
	flagWords.m = nil
	defer func() { flagWords.m, flagWords.broken = saved, false }()
	vmas := []vmaflags.VMA{{Start: 0x1000, End: 0x3000, Flags: 0x73}, {Start: 0x5000, End: 0x6000, Flags: 0x4000073}}
	maps := []procfs.Mapping{
		{Start: 0x1000, End: 0x3000, VmFlags: []string{"rd", "wr", "mr", "mw", "me", "ac"}},
		{Start: 0x5000, End: 0x6000, VmFlags: []string{"rd", "wr", "mr", "mw", "me", "ac", "dd"}},
		{Start: 0xff600000, End: 0xff601000, Path: "[vsyscall]", VmFlags: []string{"ex"}},
	}
	learnFlags(vmas, maps)
	flags, ok := knownFlags(vmas)
	if !ok || len(flags) != 2 || flags[1][6] != "dd" {
		t.Fatalf("known flags %v %v", flags, ok)
	}
	if _, ok := knownFlags([]vmaflags.VMA{{Start: 0x1000, End: 0x3000, Flags: 0x77}}); ok {
		t.Fatal("an unknown word known")
	}
	layout := []procfs.Mapping{{Start: 0x1000, End: 0x3000, Read: true, Write: true, Path: "a"}, {Start: 0x5000, End: 0x6000, Read: true, Write: true},
		{Start: 0xff600000, End: 0xff601000, Exec: true, Path: "[vsyscall]"}}
	got, ok := withFlags(layout, vmas, flags)
	if !ok || got[0].Path != "a" || !got[1].HasFlag("dd") || got[0].HasFlag("dd") || got[2].VmFlags == nil {
		t.Fatalf("joined %+v %v", got, ok)
	}
	if _, ok := withFlags(layout[1:], vmas, flags); ok {
		t.Fatal("different ranges joined")
	}
	// maps read after the words shows other permissions (an mprotect
	// in between): the words' flags are not those of the line.
	for _, change := range []func(*procfs.Mapping){
		func(m *procfs.Mapping) { m.Write = false },
		func(m *procfs.Mapping) { m.Exec = true },
		func(m *procfs.Mapping) { m.Shared = true },
	} {
		l := slices.Clone(layout)
		change(&l[1])
		if _, ok := withFlags(l, vmas, flags); ok {
			t.Errorf("line %+v joined with flags %v", l[1], flags[1])
		}
	}
	other := slices.Clone(maps)
	other[0].VmFlags = []string{"rd"}
	learnFlags(vmas, other)
	if _, ok := knownFlags(vmas); ok {
		t.Fatal("a word seen with two lines still used")
	}
}
