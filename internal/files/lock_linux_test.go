package files

import (
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

func TestParseLockLine(t *testing.T) {
	tests := []struct {
		line string
		want lockLine
		ok   bool
		err  bool
	}{
		{"1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF", lockLine{image.FileLock{Kind: image.LockFlock, Write: true}, unix.Mkdev(8, 1), 5678, 1234}, true, false},
		{"2: POSIX  ADVISORY  READ 99 fe:00:10 10 19", lockLine{image.FileLock{Kind: image.LockPosix, Start: 10, Len: 10}, unix.Mkdev(0xfe, 0), 10, 99}, true, false},
		{"3: OFDLCK ADVISORY  WRITE -1 00:2a:7 30 EOF", lockLine{image.FileLock{Kind: image.LockOFD, Write: true, Start: 30}, unix.Mkdev(0, 0x2a), 7, -1}, true, false},
		{"1: LEASE  ACTIVE    READ 1 08:01:5 0 EOF", lockLine{image.FileLock{Kind: image.LockLease}, unix.Mkdev(8, 1), 5, 1}, true, false},
		{"1: LEASE  ACTIVE    WRITE 1 08:01:5 0 EOF", lockLine{image.FileLock{Kind: image.LockLease, Write: true}, unix.Mkdev(8, 1), 5, 1}, true, false},
		{"1: LEASE  BREAKING  UNLCK 1 08:01:5 0 EOF", lockLine{}, false, false},
		{"1: DELEG  ACTIVE    READ 1 08:01:5 0 EOF", lockLine{}, false, false},
		{"1: -> FLOCK  ADVISORY  WRITE 1 08:01:5 0 EOF", lockLine{}, false, false},
		{"1: POSIX  ADVISORY  WRITE 1 08:01:5 20 10", lockLine{}, false, true},
		{"1: POSIX  ADVISORY  WRITE 1 0801:5 0 EOF", lockLine{}, false, true},
		{"1: FLOCK  ADVISORY  UNLCK 1 08:01:5 0 EOF", lockLine{}, false, true},
	}
	for _, tc := range tests {
		l, ok, err := parseLockLine(tc.line)
		if (err != nil) != tc.err || ok != tc.ok || ok && l != tc.want {
			t.Errorf("parseLockLine(%q) = %+v, %v, %v; want %+v, %v, error %v", tc.line, l, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

func TestLockConflicts(t *testing.T) {
	fl := func(w bool) image.FileLock { return image.FileLock{Kind: image.LockFlock, Write: w} }
	px := func(w bool, start, n int64) image.FileLock {
		return image.FileLock{Kind: image.LockPosix, Write: w, Start: start, Len: n}
	}
	tests := []struct {
		a, b image.FileLock
		want bool
	}{
		{fl(true), fl(false), true},
		{fl(false), fl(false), false},
		{fl(true), px(true, 0, 0), false},
		{px(true, 10, 10), px(false, 19, 1), true},
		{px(true, 10, 10), px(true, 20, 0), false},
		{px(false, 0, 0), image.FileLock{Kind: image.LockOFD, Write: true, Start: 1 << 40, Len: 1}, true},
		{px(false, 0, 5), px(false, 0, 5), false},
		{image.FileLock{Kind: image.LockLease}, image.FileLock{Kind: image.LockLease, Write: true}, true},
		{image.FileLock{Kind: image.LockLease}, image.FileLock{Kind: image.LockLease}, false},
		{image.FileLock{Kind: image.LockLease, Write: true}, fl(true), false},
		{image.FileLock{Kind: image.LockLease, Write: true}, px(true, 0, 0), false},
	}
	for _, tc := range tests {
		if got := conflicts(tc.a, tc.b); got != tc.want || conflicts(tc.b, tc.a) != tc.want {
			t.Errorf("conflicts(%+v, %+v) = %v, want %v both ways", tc.a, tc.b, got, tc.want)
		}
	}
}
