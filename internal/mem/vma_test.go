package mem

import (
	"errors"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

func TestCheckShared(t *testing.T) {
	shared := func(pid int, ino uint64) image.Process {
		return image.Process{Pid: pid, VMAs: []image.VMA{{Start: 0x1000, End: 0x2000, Kind: image.KindSharedAnon, Inode: ino}}}
	}
	tests := []struct {
		name  string
		procs []image.Process
		bad   bool
	}{
		{"one process", []image.Process{shared(1, 7)}, false},
		{"different objects", []image.Process{shared(1, 7), shared(2, 8)}, false},
		{"same object in two processes", []image.Process{shared(1, 7), shared(2, 7)}, true},
	}
	for _, tc := range tests {
		err := CheckShared(tc.procs)
		if (err != nil) != tc.bad || (err != nil && !errors.Is(err, ErrUnsupported)) {
			t.Errorf("%s: error %v, want error %v", tc.name, err, tc.bad)
		}
	}
}
