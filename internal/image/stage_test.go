package image

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeTestImage writes a complete image of sampleCheckpoint into dir:
// its page file (named for generation gen, or the old "pages-4242.img"
// when gen is "") and then its manifest.
func writeTestImage(t *testing.T, dir, gen string) *Checkpoint {
	t.Helper()
	c := sampleCheckpoint()
	c.Processes[0].PageFile = "pages-4242.img"
	if gen != "" {
		c.Processes[0].PageFile = PageFileName(gen, 4242)
	}
	if err := os.WriteFile(filepath.Join(dir, c.Processes[0].PageFile), make([]byte, c.Processes[0].PageFileSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(dir, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// checkRestorable reads the image in dir as a restore does and checks it
// is the one with page file pages.
func checkRestorable(t *testing.T, dir, pages string) {
	t.Helper()
	c, err := ReadManifest(dir)
	if err != nil {
		t.Fatalf("the image in %s is not readable: %v", dir, err)
	}
	p := &c.Processes[0]
	if p.PageFile != pages {
		t.Fatalf("the image in %s uses %s, want %s", dir, p.PageFile, pages)
	}
	if _, closePages, err := OpenPages(dir, p); err != nil {
		t.Fatalf("the image in %s: %v", dir, err)
	} else {
		closePages()
	}
}

func sorted(names []string) []string {
	slices.Sort(names)
	return names
}

func TestStageNewDirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b", "img")
	s, err := NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != dir || !genPageRe.MatchString(PageFileName(s.Gen, 1)) {
		t.Errorf("stage Dir %q Gen %q", s.Dir, s.Gen)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v (%v), want a 0700 directory", fi.Mode(), err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("NewStage left %v", names)
	}
	// A failed dump leaves no directory it created, parents included.
	writePage(t, dir, PageFileName(s.Gen, 1))
	if s.Abort() {
		t.Error("Abort reported a commit")
	}
	if names := dirNames(t, base); len(names) != 0 {
		t.Errorf("after Abort %s holds %v, want nothing", base, names)
	}

	// The path is a file.
	file := filepath.Join(base, "file")
	writePage(t, base, "file")
	if _, err := NewStage(file); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("NewStage(file) = %v, want an error naming it", err)
	}
	if _, err := NewStage(filepath.Join(file, "img")); err == nil {
		t.Error("NewStage below a file succeeded")
	}

	if os.Geteuid() != 0 {
		ro := filepath.Join(base, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if _, err := NewStage(ro); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("NewStage(read-only) = %v, want not writable", err)
		}
	}
}

func writePage(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStageGenerations: in every layout the old image stays restorable
// while a new one is written, a failed dump leaves the directory exactly
// as it was, and a commit removes only the old image's page files.
func TestStageGenerations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		others []string // files that are not rtcr's
		oldGen string   // "" for an image of an earlier version
	}{
		{"only an image", nil, "00000000000000aa"},
		{"other files", []string{"notes.txt", "pages-1.img", ".pages-notes", "x.img.tmp-1"}, "00000000000000aa"},
		{"earlier version", []string{"notes.txt"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range tc.others {
				writePage(t, dir, n)
			}
			old := writeTestImage(t, dir, tc.oldGen).Processes[0].PageFile
			before := sorted(dirNames(t, dir))

			s, err := NewStage(dir)
			if err != nil {
				t.Fatal(err)
			}
			writePage(t, dir, PageFileName(s.Gen, 4242))
			checkRestorable(t, dir, old)
			if s.Abort() {
				t.Fatal("Abort reported a commit")
			}
			if after := sorted(dirNames(t, dir)); !slices.Equal(after, before) {
				t.Fatalf("after a failed dump the directory holds %v, want %v", after, before)
			}
			checkRestorable(t, dir, old)

			s, err = NewStage(dir)
			if err != nil {
				t.Fatal(err)
			}
			orphan := PageFileName("00000000000000bb", 9) // of a killed dump
			writePage(t, dir, orphan)
			c := writeTestImage(t, dir, s.Gen)
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
			checkRestorable(t, dir, c.Processes[0].PageFile)
			want := sorted(append([]string{ManifestName, c.Processes[0].PageFile}, tc.others...))
			if after := sorted(dirNames(t, dir)); !slices.Equal(after, want) {
				t.Errorf("after the commit the directory holds %v, want %v", after, want)
			}
		})
	}
}

// TestStageAbortAfterCommit: a failure after the manifest was renamed
// (say, releasing the target) keeps the new image.
func TestStageAbortAfterCommit(t *testing.T) {
	dir := t.TempDir()
	writeTestImage(t, dir, "")
	s, err := NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := writeTestImage(t, dir, s.Gen)
	if !s.Abort() {
		t.Error("Abort did not see the committed manifest")
	}
	checkRestorable(t, dir, c.Processes[0].PageFile)
	if names := sorted(dirNames(t, dir)); !slices.Equal(names, sorted([]string{ManifestName, c.Processes[0].PageFile})) {
		t.Errorf("directory holds %v", names)
	}
}

func TestStageSymlink(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	writeTestImage(t, real, "")
	link := filepath.Join(base, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	s, err := NewStage(link)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != real {
		t.Errorf("stage writes into %s, want %s (the link's target)", s.Dir, real)
	}
	c := writeTestImage(t, s.Dir, s.Gen)
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is no longer a symlink: %v %v", link, fi.Mode(), err)
	}
	checkRestorable(t, link, c.Processes[0].PageFile)
	if names := dirNames(t, base); !slices.Equal(sorted(names), []string{"link", "real"}) {
		t.Errorf("%s holds %v", base, names)
	}

	// A dangling link is refused, naming the link, and nothing is made.
	dangling := filepath.Join(base, "dangling")
	if err := os.Symlink("missing", dangling); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStage(dangling); err == nil || !strings.Contains(err.Error(), dangling) {
		t.Errorf("NewStage(dangling link) = %v, want an error naming it", err)
	}
}

func TestStageRefusesWritableDirectory(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o770, 0o703, 0o777 | os.ModeSticky} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "img")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			_, err := NewStage(dir)
			if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "writable") {
				t.Fatalf("NewStage(%v) = %v, want a refusal naming the directory", mode, err)
			}
			t.Logf("refused: %v", err)
			if fi, err := os.Stat(dir); err != nil || fi.Mode()&(os.ModePerm|os.ModeSticky) != mode {
				t.Errorf("mode changed to %v (%v)", fi.Mode(), err)
			}
			if names := dirNames(t, dir); len(names) != 0 {
				t.Errorf("a refused directory holds %v", names)
			}
		})
	}
	dir := filepath.Join(t.TempDir(), "img")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStage(dir); err == nil || !strings.Contains(err.Error(), "0777") {
		t.Errorf("the error %v does not give the mode as 0777", err)
	}
}

// TestStageSweepsTempFiles: temporary files of killed dumps go when the
// next dump starts; files that only look similar stay.
func TestStageSweepsTempFiles(t *testing.T) {
	dir := t.TempDir()
	swept := []string{".pages-4242.img.tmp-123", ".pages-0123456789abcdef-7.img.tmp-99",
		".manifest.img.tmp-5", ".rtcr-probe-42"}
	kept := []string{"notes.txt", ".pages-notes", "x.tmp-1", ".manifest.img.tmp-abc",
		".pages-1.img.tmp-", "pages-zz-1.img", ".notes.img.tmp-1"}
	for _, n := range append(slices.Clone(swept), kept...) {
		writePage(t, dir, n)
	}
	s, err := NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if names := sorted(dirNames(t, dir)); !slices.Equal(names, sorted(kept)) {
		t.Errorf("after NewStage the directory holds %v, want %v", names, sorted(kept))
	}
}

func TestStageLock(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A temporary file of the running dump must survive a second one.
	tmp := "." + PageFileName(s.Gen, 1) + ".tmp-1"
	writePage(t, dir, tmp)
	if _, err := NewStage(dir); err == nil || !strings.Contains(err.Error(), "another dump") {
		t.Fatalf("a second NewStage = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, tmp)); err != nil {
		t.Errorf("the refused dump removed the running one's file: %v", err)
	}
	s.Abort()
	s, err = NewStage(dir)
	if err != nil {
		t.Fatalf("NewStage after Abort: %v", err)
	}
	s.Abort()
}

// TestLoadDuringCommit: a restore that read the previous manifest while a
// dump committed and removed the previous page files loads the new image
// (RetryDuringCommit), and a page file that is simply missing is an error,
// not a loop.
func TestLoadDuringCommit(t *testing.T) {
	dir := t.TempDir()
	writeTestImage(t, dir, "00000000000000aa")
	var next *Checkpoint
	commitOnce := func() {
		if next != nil {
			return
		}
		s, err := NewStage(dir)
		if err != nil {
			t.Fatal(err)
		}
		next = writeTestImage(t, dir, s.Gen)
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// load reads the manifest, lets hook run (a dump committing), then
	// maps the page files, as a restore does.
	load := func(hook func()) (c *Checkpoint, data []byte, err error) {
		err = RetryDuringCommit(dir, func() error {
			if c, err = ReadManifest(dir); err != nil {
				return err
			}
			hook()
			d, closePages, err := OpenPages(dir, &c.Processes[0])
			if err == nil {
				data = append([]byte(nil), d...)
				closePages()
			}
			return err
		})
		return c, data, err
	}
	c, data, err := load(commitOnce)
	if err != nil {
		t.Fatalf("load during a commit: %v", err)
	}
	if got, want := c.Processes[0].PageFile, next.Processes[0].PageFile; got != want {
		t.Errorf("loaded the image with %s, want the new one with %s", got, want)
	}
	if len(data) != int(c.Processes[0].PageFileSize) {
		t.Errorf("pages of 4242: %d bytes", len(data))
	}
	if err := os.Remove(filepath.Join(dir, next.Processes[0].PageFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := load(func() {}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load with a page file missing = %v, want ErrNotExist", err)
	}
}
