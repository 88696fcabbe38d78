package image

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestStageFile: a file written across calls becomes its name only at
// Finish; one discarded, or still open when the stage aborts, leaves
// nothing behind.
func TestStageFile(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := PageFileName(s.Gen, 7)
	f, err := s.OpenFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("pre")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
		t.Fatalf("%s exists before Finish: %v", name, err)
	}
	if _, err := f.Write([]byte("-frozen")); err != nil {
		t.Fatal(err)
	}
	if err := f.Finish(); err != nil {
		t.Fatal(err)
	}
	f.Discard() // after Finish: nothing
	if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != "pre-frozen" {
		t.Fatalf("%s: %q, %v", name, b, err)
	}
	g, err := s.OpenFile(PageFileName(s.Gen, 8))
	if err != nil {
		t.Fatal(err)
	}
	g.Discard()
	h, err := s.OpenFile(PageFileName(s.Gen, 9))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); len(got) != 2 {
		t.Fatalf("directory holds %v, want the finished file and one temporary file", got)
	}
	s.Abort()
	h.Discard()
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("after Abort the directory holds %v", got)
	}
}

// TestStageNoSync: a stage that fsyncs nothing (a migration's temporary
// image) writes the same files: what Sync flushed reads back, Finish
// and WriteFile put each file under its name.
func TestStageNoSync(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.NoSync = true
	name := PageFileName(s.Gen, 7)
	f, err := s.OpenFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("pre")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	if n, err := f.ReadAt(b, 0); n != 3 || string(b) != "pre" {
		t.Fatalf("read back after Sync: %q, %v", b[:n], err)
	}
	if _, err := f.Write([]byte("-frozen")); err != nil {
		t.Fatal(err)
	}
	if err := f.Finish(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != "pre-frozen" {
		t.Fatalf("%s: %q, %v", name, b, err)
	}
	if err := s.WriteFile("other", func(w io.Writer) error { _, err := w.Write([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "other")); err != nil || string(b) != "x" {
		t.Fatalf("other: %q, %v", b, err)
	}
	s.Abort()
}
