package files_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestOpenInSwapped replaces a checked file between the check and the
// stub's open, as someone owning its directory could, and checks that the
// stub refuses it: a symbolic link is never followed (the file it leads
// to is not even opened: no IN_OPEN event), and another file at the path
// is closed again and refused, for fds and for mappings alike.
func TestOpenInSwapped(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	checked, target, other := filepath.Join(dir, "checked"), filepath.Join(dir, "target"), filepath.Join(dir, "other")
	for _, f := range []string{checked, target, other} {
		if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &image.Process{Exe: checked, VMAs: []image.VMA{
		{Start: 0x10000, End: 0x11000, Prot: unix.PROT_READ, Kind: image.KindFile, Path: checked},
	}}
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, target, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	testutil.InStub(t, func(r *ptrace.Remote) {
		open, err := files.NewOpener(r, p, nil)
		if err != nil {
			t.Errorf("check: %v", err)
			return
		}
		// The checked file is opened.
		fd, err := open.Open(checked, unix.O_RDONLY|unix.O_CLOEXEC)
		if err != nil {
			t.Errorf("open the checked file: %v", err)
			return
		}
		_ = r.Close(fd)
		// A symbolic link in its place.
		if err := os.Rename(checked, checked+".old"); err != nil {
			t.Error(err)
			return
		}
		if err := os.Symlink(target, checked); err != nil {
			t.Error(err)
			return
		}
		if fd, err := open.Open(checked, unix.O_RDONLY|unix.O_CLOEXEC); !errors.Is(err, unix.ELOOP) {
			t.Errorf("open through a symbolic link: fd %d, error %v, want ELOOP", fd, err)
		}
		var ev [256]byte
		if n, _ := unix.Read(in, ev[:]); n > 0 {
			t.Errorf("the stub opened the file the link leads to")
		}
		// Another file in its place.
		if err := os.Rename(other, checked); err != nil {
			t.Error(err)
			return
		}
		if fd, err := open.Open(checked, unix.O_RDONLY|unix.O_CLOEXEC); !errors.Is(err, files.ErrChanged) {
			t.Errorf("open of another file at the checked path: fd %d, error %v, want %v", fd, err, files.ErrChanged)
		}
	})
}
