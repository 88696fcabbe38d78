package image

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Tests of a dump whose image directory (or a parent of it) is renamed
// away and replaced by a symbolic link while the dump runs: the dump must
// keep writing into the directory it checked, or fail, and never write,
// create or remove anything in the link's target.

// swapForLink renames path away (to path+".moved") and puts a symbolic
// link to target in its place. It returns the new path of the directory.
func swapForLink(t *testing.T, path, target string) string {
	t.Helper()
	moved := path + ".moved"
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	return moved
}

// decoyDir makes the directory a swapped-in link points to, holding files
// a dump would remove (temporary files, a stale page file) if it swept
// there, and returns it with its listing.
func decoyDir(t *testing.T) (string, []string) {
	t.Helper()
	other := t.TempDir()
	for _, n := range []string{".manifest.img.tmp-7", PageFileName("00000000000000cc", 3), "notes"} {
		writePage(t, other, n)
	}
	return other, listDir(t, other)
}

// listDir lists dir recursively (relative paths), sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var ns []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			ns = append(ns, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ns)
	return ns
}

// writeStageImage writes a complete image through s: its page file, then
// its manifest.
func writeStageImage(t *testing.T, s *Stage) string {
	t.Helper()
	c := sampleCheckpoint()
	p := &c.Processes[0]
	p.PageFile = PageFileName(s.Gen, 4242)
	if err := s.WriteFile(p.PageFile, func(w io.Writer) error {
		_, err := w.Write(make([]byte, p.PageFileSize))
		return err
	}); err != nil {
		t.Fatalf("writing the page file: %v", err)
	}
	if err := s.WriteManifest(c); err != nil {
		t.Fatalf("writing the manifest: %v", err)
	}
	return p.PageFile
}

// TestStageDirectorySwapped: the image directory, or its parent, is
// renamed away after NewStage and a link to another directory takes its
// place; the image is written, committed or aborted in the original
// directory, the link's target stays as it was.
func TestStageDirectorySwapped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parent bool // swap the parent instead of the image directory
		abort  bool
	}{
		{name: "directory"},
		{name: "parent", parent: true},
		{name: "directory, abort", abort: true},
		{name: "parent, abort", parent: true, abort: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "p", "img")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			old := writeTestImage(t, dir, "00000000000000aa").Processes[0].PageFile
			writePage(t, dir, ".pages-00000000000000aa-1.img.tmp-3") // of a killed dump
			s, err := NewStage(dir)
			if err != nil {
				t.Fatal(err)
			}
			other, otherFiles := decoyDir(t)
			// The decoy also holds files of this generation, which
			// Abort would remove.
			writePage(t, other, PageFileName(s.Gen, 1))
			otherFiles = listDir(t, other)
			var real string
			if tc.parent {
				if err := os.MkdirAll(filepath.Join(other, "img"), 0o700); err != nil {
					t.Fatal(err)
				}
				writePage(t, filepath.Join(other, "img"), PageFileName(s.Gen, 1))
				otherFiles = listDir(t, other)
				real = filepath.Join(swapForLink(t, filepath.Join(base, "p"), other), "img")
			} else {
				real = swapForLink(t, dir, other)
			}
			if tc.abort {
				// The dump fails after writing its page file.
				if err := s.WriteFile(PageFileName(s.Gen, 4242), func(w io.Writer) error {
					_, err := w.Write([]byte("x"))
					return err
				}); err != nil {
					t.Fatal(err)
				}
				if s.Abort() {
					t.Fatal("Abort reports the image committed")
				}
				checkRestorable(t, real, old)
				if got, want := listDir(t, real), []string{ManifestName, old}; !slices.Equal(got, sorted(want)) {
					t.Errorf("after Abort %s holds %v, want %v", real, got, want)
				}
			} else {
				pages := writeStageImage(t, s)
				if err := s.Commit(); err != nil {
					t.Fatal(err)
				}
				checkRestorable(t, real, pages)
				if got, want := listDir(t, real), []string{ManifestName, pages}; !slices.Equal(got, sorted(want)) {
					t.Errorf("after Commit %s holds %v, want %v", real, got, want)
				}
			}
			if got := listDir(t, other); !slices.Equal(got, otherFiles) {
				t.Errorf("the link's target %s now holds %v, want %v (untouched)", other, got, otherFiles)
			}
		})
	}
}

// TestStageLinkPlantedBeforeOpen: a symbolic link put in place of the
// image directory, or of a parent, after NewStage resolved the path and
// before it opened it is refused; nothing is created in its target.
func TestStageLinkPlantedBeforeOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		swap string // path below base to replace by a link
	}{
		{name: "directory", swap: "p/img"},
		{name: "parent", swap: "p"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "p", "img")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			other, _ := decoyDir(t)
			if err := os.MkdirAll(filepath.Join(other, "img"), 0o700); err != nil {
				t.Fatal(err)
			}
			target := other
			if tc.swap == "p/img" {
				target = filepath.Join(other, "img")
			}
			otherFiles := listDir(t, other)
			dirHook = func(step, path string) {
				if step == "resolved" {
					swapForLink(t, filepath.Join(base, tc.swap), target)
				}
			}
			defer func() { dirHook = nil }()
			s, err := NewStage(dir)
			if err == nil {
				s.Abort()
				t.Fatalf("NewStage succeeded through a link planted after resolving (Dir %s)", s.Dir)
			}
			if !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("NewStage = %v, want a refusal naming the symbolic link", err)
			}
			if got := listDir(t, other); !slices.Equal(got, otherFiles) {
				t.Errorf("the link's target %s now holds %v, want %v (untouched)", other, got, otherFiles)
			}
		})
	}
}

// TestStageMkdirNotFollowingLinks: while NewStage creates missing
// directories, one it created is renamed away and replaced by a link.
// Once NewStage has the directory open, the directories below are created
// in the renamed one and the image is written there; between its mkdirat
// and its open, NewStage fails. Nothing appears in the link's target.
func TestStageMkdirNotFollowingLinks(t *testing.T) {
	for _, step := range []string{"mkdir", "mkdirat"} {
		t.Run(step, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "a", "b", "img")
			other, otherFiles := decoyDir(t)
			dirHook = func(at, path string) {
				if at == step && path == filepath.Join(base, "a") {
					swapForLink(t, path, other)
				}
			}
			defer func() { dirHook = nil }()
			s, err := NewStage(dir)
			dirHook = nil
			if step == "mkdirat" {
				if err == nil {
					s.Abort()
					t.Fatalf("NewStage succeeded through a link planted after its mkdirat (Dir %s)", s.Dir)
				}
				t.Logf("refused: %v", err)
			} else {
				if err != nil {
					t.Fatal(err)
				}
				pages := writeStageImage(t, s)
				if err := s.Commit(); err != nil {
					t.Fatal(err)
				}
				real := filepath.Join(base, "a.moved", "b", "img")
				checkRestorable(t, real, pages)
				if fi, err := os.Stat(real); err != nil || fi.Mode().Perm() != 0o700 {
					t.Errorf("%s: %v, %v, want mode 0700", real, fi.Mode(), err)
				}
			}
			if got := listDir(t, other); !slices.Equal(got, otherFiles) {
				t.Errorf("the link's target %s now holds %v, want %v (untouched)", other, got, otherFiles)
			}
		})
	}
}

// TestStageAbortRemovesCreatedThroughParents: Abort removes the
// directories the dump created by name in their parents, as opened when
// they were created; with a parent swapped for a link, nothing in the
// link's target goes.
func TestStageAbortRemovesCreatedThroughParents(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b", "img")
	s, err := NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, "b", "img"), 0o700); err != nil {
		t.Fatal(err)
	}
	otherFiles := listDir(t, other)
	swapForLink(t, filepath.Join(base, "a"), other)
	if s.Abort() {
		t.Fatal("Abort reports the image committed")
	}
	// b and img went from the renamed a; a itself is now a link in base,
	// which Abort leaves (it removes directories only).
	if got := listDir(t, filepath.Join(base, "a.moved")); len(got) != 0 {
		t.Errorf("after Abort %s holds %v, want nothing", filepath.Join(base, "a.moved"), got)
	}
	if got := listDir(t, other); !slices.Equal(got, otherFiles) {
		t.Errorf("the link's target %s now holds %v, want %v (untouched)", other, got, otherFiles)
	}
}
