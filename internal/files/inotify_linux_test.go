package files

import (
	"errors"
	"strings"
	"testing"
)

// TestDumpWatchRefused: the inotify watches rtcr cannot restore, and
// malformed fdinfo lines, are refused before any file is looked up.
func TestDumpWatchRefused(t *testing.T) {
	tests := []struct {
		name, line, want string
		unsupported      bool
	}{
		{"no file handle", "wd:1 ino:2 sdev:800013 mask:fce ignored_mask:0", "gives no file handle", true},
		{"ignored mask", "wd:1 ino:2 sdev:800013 mask:fce ignored_mask:2 fhandle-bytes:8 fhandle-type:1 f_handle:0200000000000000", "ignored_mask 0x2", true},
		{"wd too large", "wd:10001 ino:2 sdev:800013 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0200000000000000", "inotify wd 65537 outside 1-65536", true},
		{"wd 0", "wd:0 ino:2 sdev:800013 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:02", "inotify wd 0 outside", true},
		{"bad number", "wd:x ino:2 sdev:800013 mask:fce ignored_mask:0 fhandle-type:1 f_handle:02", "wd: unexpected fdinfo format", false},
		{"bad handle", "wd:1 ino:2 sdev:800013 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0g", "f_handle: unexpected", false},
		{"no colon", "wd:1 ino", "unexpected fdinfo format", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dumpWatch(tc.line, &Tree{}, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrUnsupported) != tc.unsupported {
				t.Fatalf("dumpWatch(%q) = %v, want %q (unsupported %v)", tc.line, err, tc.want, tc.unsupported)
			}
		})
	}
}
