package files_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestDeletedFileDirChecked: before a deleted file is recreated, its
// directory must still be a directory (files.Check) and one the process's
// credentials may create a file in (files.CheckProcess, as nobody: refused
// in a directory of mode 0755 owned by root, allowed in one of 0777).
func TestDeletedFileDirChecked(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	for _, p := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nobody := &image.Creds{Fsuid: 65534, Fsgid: 65534}
	tests := []struct {
		name     string
		dirMode  os.FileMode // 0: no directory
		as       *image.Creds
		check    string // substring of files.Check's error, "" for none
		checkAcc error  // files.CheckProcess's error, nil for none
	}{
		{"writable by nobody", 0o777, nobody, "", nil},
		{"not writable by nobody", 0o755, nobody, "", files.ErrAccess},
		{"restorer's rights", 0o755, nil, "", nil},
		{"vanished", 0, nil, "has vanished since the checkpoint", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "-"))
			if tc.dirMode != 0 {
				if err := os.Mkdir(dir, tc.dirMode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, tc.dirMode); err != nil {
					t.Fatal(err)
				}
			}
			fds := []image.FD{{Num: 3, Kind: image.FDDeleted, Path: filepath.Join(dir, "data"), Mode: unix.S_IFREG | 0o600, FileIno: 1}}
			err := files.Check(fds)
			if tc.check == "" && err != nil || tc.check != "" && (err == nil || !strings.Contains(err.Error(), tc.check)) {
				t.Fatalf("Check: %v, want %q", err, tc.check)
			}
			if tc.check != "" {
				return
			}
			p := &image.Process{Exe: "/usr/bin/true", FDs: fds}
			err = files.CheckProcess(p, tc.as)
			if tc.checkAcc == nil && err != nil || tc.checkAcc != nil && (!errors.Is(err, tc.checkAcc) || !strings.Contains(err.Error(), "fd 3 (deleted file ")) {
				t.Fatalf("CheckProcess: %v, want %v", err, tc.checkAcc)
			}
		})
	}
}

// TestDeletedFileAttributes: a deleted file comes back with its owner,
// its mode with the set-id bits, and its modification time (they used to
// come back as root's, 0604 and the time of the restore).
func TestDeletedFileAttributes(t *testing.T) {
	testutil.RequireRoot(t)
	tg := testutil.StartTarget(t, "/bin/sh", "ready\n", "-c",
		"exec 3<>f && echo data >&3 && chown 1234:5678 f && chmod 6604 f && touch -m -d @123456 f && rm f && echo ready && exec sleep 1000")
	var want []image.FD
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
		var err error
		if want, err = files.Dump(tg.Pid); err != nil {
			t.Errorf("dump target: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	testutil.InStub(t, func(r *ptrace.Remote) {
		if err := files.Restore(r, want); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/3", r.Pid), &st); err != nil {
			t.Errorf("restored fd 3: %v", err)
			return
		}
		if st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o6604 || st.Mtim.Sec != 123456 || st.Nlink != 0 {
			t.Errorf("restored deleted file: owner %d:%d mode %#o mtime %d links %d, want 1234:5678 06604 123456 0",
				st.Uid, st.Gid, st.Mode&0o7777, st.Mtim.Sec, st.Nlink)
		}
	})
}
