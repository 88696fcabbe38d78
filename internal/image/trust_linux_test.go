package image

import (
	"bytes"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// TestOwnerGroupsError checks that a failure to list the owner's groups is
// reported, not taken as "no supplementary groups".
func TestOwnerGroupsError(t *testing.T) {
	if _, err := user.LookupId("0"); err != nil {
		t.Skipf("no user database entry for uid 0: %v", err)
	}
	broken := errors.New("group database unreadable")
	saved := groupIDs
	groupIDs = func(*user.User) ([]string, error) { return nil, broken }
	defer func() { groupIDs = saved }()
	if _, err := ownerOf(0, false); !errors.Is(err, broken) {
		t.Fatalf("ownerOf with a failing group lookup: error %v, want %v", err, broken)
	}
}

// TestDirOpenPagesOtherOwner checks that the pages of a page file owned by
// another user (an image accepted with trustOwner) stay readable when that
// user truncates the file during the restore: mapped, they would fault
// (SIGBUS).
func TestDirOpenPagesOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the page file to another user")
	}
	const owner = 65534
	dir := t.TempDir()
	want := bytes.Repeat([]byte("page"), 3*PageSize/4)
	var buf bytes.Buffer
	pw := NewPageWriter(&buf)
	if _, err := pw.Write(want); err != nil {
		t.Fatal(err)
	}
	p := &Process{Pid: 7, PageFile: "pages-7.img", PageFileSize: int64(len(want)), PageChecksums: pw.Checksums()}
	path := filepath.Join(dir, p.PageFile)
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{dir, path} {
		if err := os.Chown(f, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	d, err := OpenDir(dir, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	data, closePages, err := d.OpenPages(p)
	if err != nil {
		t.Fatal(err)
	}
	defer closePages()
	if d.Owner.Root || d.Owner.Uid != owner {
		t.Fatalf("owner %+v, want uid %d", d.Owner, owner)
	}
	// The owner truncates its file.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("reading the pages after the owner truncated the file: %v", r)
		}
	}()
	if !bytes.Equal(data, want) {
		t.Fatal("pages read after the truncation differ from the file's")
	}
}
