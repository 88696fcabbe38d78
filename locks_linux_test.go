package rtcr_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// lockProbe is a lock another process tries to take without waiting on a
// file of testdata/locks.c: cmd is unix.F_SETLK, unix.F_OFD_SETLK or
// unix.LOCK_EX (flock).
type lockProbe struct {
	file       string
	cmd        int
	write      bool
	start, len int64
}

func (p lockProbe) String() string {
	return fmt.Sprintf("%s cmd %d write %v bytes %d+%d", p.file, p.cmd, p.write, p.start, p.len)
}

// try takes the lock on a new open of the file in dir and drops it (the
// close drops it); it returns the error of the attempt.
func (p lockProbe) try(t *testing.T, dir string) error {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, p.file), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch p.cmd {
	case unix.LOCK_EX:
		op := unix.LOCK_SH
		if p.write {
			op = unix.LOCK_EX
		}
		return unix.Flock(int(f.Fd()), op|unix.LOCK_NB)
	default:
		fl := unix.Flock_t{Type: unix.F_RDLCK, Whence: unix.SEEK_SET, Start: p.start, Len: p.len}
		if p.write {
			fl.Type = unix.F_WRLCK
		}
		return unix.FcntlFlock(f.Fd(), p.cmd, &fl)
	}
}

// excluded reports whether an error of a lock attempt says another
// process holds the lock.
func excluded(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EWOULDBLOCK)
}

// TestFileLocks checkpoints testdata/locks.c (a flock, POSIX locks on two
// ranges, an OFD lock), kills it and restores it: from outside, each lock
// still excludes another process over its range and only there, the
// POSIX lock is owned by the restored process, and the program, still
// their owner, converts each without waiting.
func TestFileLocks(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "locks", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	tg.restore(dir)
	tests := []struct {
		p        lockProbe
		excluded bool
	}{
		{lockProbe{"flock", unix.LOCK_EX, false, 0, 0}, true},
		{lockProbe{"posix", unix.F_SETLK, true, 15, 1}, true},
		{lockProbe{"posix", unix.F_SETLK, false, 10, 1}, true},
		{lockProbe{"posix", unix.F_SETLK, true, 0, 10}, false},
		{lockProbe{"posix", unix.F_SETLK, false, 50, 1}, false},
		{lockProbe{"posix", unix.F_SETLK, true, 50, 1}, true},
		{lockProbe{"posix", unix.F_OFD_SETLK, true, 19, 1}, true},
		{lockProbe{"ofd", unix.F_SETLK, false, 99, 1}, true},
		{lockProbe{"ofd", unix.F_OFD_SETLK, true, 0, 0}, true},
	}
	for _, tc := range tests {
		err := tc.p.try(t, tg.dir)
		if excluded(err) != tc.excluded || err != nil && !excluded(err) {
			t.Errorf("lock %v from outside after restore: %v, want excluded %v", tc.p, err, tc.excluded)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(tg.dir, "posix"), &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("POSIX  ADVISORY  WRITE %d %02x:%02x:%d 10 19", tg.pid, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	if !strings.Contains(string(b), want) {
		t.Errorf("/proc/locks has no %q:\n%s", want, b)
	}
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("locks after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestFileLockHeldRefused: a lock of the image that another process holds
// at restore time (here the test itself, after the dump killed the
// program) makes the restore fail before any process is created, naming
// the file and the lock.
func TestFileLockHeldRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "locks", false)
	tests := []struct {
		p    lockProbe
		want string
	}{
		{lockProbe{"flock", unix.LOCK_EX, false, 0, 0}, "flock write lock on "},
		{lockProbe{"posix", unix.F_OFD_SETLK, false, 15, 1}, "POSIX write bytes 10-19 lock on "},
		// A POSIX lock of the test's own: the check must see it before
		// rtcr (this process) opens and closes the file, which drops it.
		{lockProbe{"ofd", unix.F_SETLK, false, 40, 2}, "OFD write from byte 0 lock on "},
	}
	for _, tc := range tests {
		t.Run(tc.p.file, func(t *testing.T) {
			tg := start(t, bin, "trigger")
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			dir := tg.dump(false)
			f, err := os.OpenFile(filepath.Join(tg.dir, tc.p.file), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if tc.p.cmd == unix.LOCK_EX {
				err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
			} else {
				fl := unix.Flock_t{Type: unix.F_RDLCK, Whence: unix.SEEK_SET, Start: tc.p.start, Len: tc.p.len}
				err = unix.FcntlFlock(f.Fd(), tc.p.cmd, &fl)
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if !errors.Is(err, files.ErrLockHeld) || !strings.Contains(err.Error(), tc.want+filepath.Join(tg.dir, tc.p.file)) {
				t.Fatalf("restore with the file locked: %v, want ErrLockHeld naming %q", err, tc.want)
			}
			if !pidFree(tg.pid) {
				t.Fatalf("pid %d exists after the refused restore", tg.pid)
			}
			tg.done = true
		})
	}
}
