package image

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirNames lists the entries of dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) func(io.Writer) error {
		return func(w io.Writer) error {
			_, err := io.WriteString(w, s)
			return err
		}
	}
	if err := WriteFileAtomic(dir, "f.img", write("first")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(dir, "f.img", write("second")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "f.img")
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "second" {
		t.Fatalf("content %q, %v; want \"second\"", b, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only f.img", names)
	}
}

func TestWriteFileAtomicError(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("boom")
	err := WriteFileAtomic(dir, "f.img", func(w io.Writer) error {
		w.Write(make([]byte, 3<<20)) // more than the buffer: reaches the file
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFileAtomic = %v, want boom", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "f.img")) {
		t.Errorf("error %q does not name the path", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("failed write left %v", names)
	}

	func() {
		defer func() { recover() }()
		WriteFileAtomic(dir, "g.img", func(w io.Writer) error { panic("oops") })
	}()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("panicking write left %v", names)
	}

	if err := WriteFileAtomic(dir, "a/b", func(io.Writer) error { return nil }); err == nil {
		t.Error("WriteFileAtomic accepted a name with '/'")
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing"), "f.img", func(io.Writer) error { return nil }); err == nil {
		t.Error("WriteFileAtomic into a missing directory succeeded")
	}
}
