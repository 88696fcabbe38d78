package mem

import (
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
