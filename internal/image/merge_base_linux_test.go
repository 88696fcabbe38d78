package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMergeBaseInterrupted stops a merge into the base in its moves, as a
// crash would: before the first move (the old image untouched), and after
// the old page file was extended but before its rename. Past the journal
// the old image has no manifest (it is no image any more) and the images
// through it are refused, never read wrong. FinishInterruptedMerges (what the series and a restore do)
// finishes the merge, and every image reads right without the old one.
func TestMergeBaseInterrupted(t *testing.T) {
	for _, step := range []int{0, 1} {
		root := t.TempDir()
		dirs := synthSeries(t, root)
		mergeMoveHook = func(i, s int) error {
			if s == step {
				return os.ErrDeadlineExceeded
			}
			return nil
		}
		_, err := Merge(dirs[0], dirs[1:])
		mergeMoveHook = nil
		if err == nil {
			t.Fatalf("step %d: interrupted merge reported no error", step)
		}
		if _, err := os.Stat(filepath.Join(dirs[0], MergeJournal)); err != nil {
			t.Fatalf("step %d: no journal after the interrupted merge: %v", step, err)
		}
		if _, err := os.Stat(filepath.Join(dirs[0], ManifestName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("step %d: the old image still has a manifest past the journal: %v", step, err)
		}
		if step == 1 {
			// The page file extended in place: what the old image named
			// has extra bytes now.
			ents, _ := os.ReadDir(dirs[0])
			extended := false
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "pages-") {
					info, _ := e.Info()
					extended = info.Size() > 8*PageSize
				}
			}
			if !extended {
				t.Fatalf("step 1: no extended page file in %s", dirs[0])
			}
		}
		done, err := FinishInterruptedMerges(root, uint32(os.Geteuid()))
		if err != nil || len(done) != 1 {
			t.Fatalf("step %d: finish: %v %v", step, done, err)
		}
		os.RemoveAll(dirs[0])
		want := map[string]string{dirs[1]: "aBCdEFGH", dirs[2]: "aBCdEfGH", dirs[3]: "abcdEfGH"}
		for d, w := range want {
			if got := string(resolveHeap(t, d)); got != w {
				t.Fatalf("step %d: after the finished merge %s reads %q, want %q", step, d, got, w)
			}
		}
		ents, _ := os.ReadDir(dirs[1])
		if len(ents) != 2 {
			t.Fatalf("step %d: %s holds %d files, want the manifest and one page file", step, dirs[1], len(ents))
		}
	}
}

// TestMergeBaseChoice merges into the base when the child holds fewer
// pages than it takes, and by copying when it wrote most of the base
// again (the moved file would be mostly dead pages).
func TestMergeBaseChoice(t *testing.T) {
	pg := func(i int) int64 { return int64(i) * PageSize }
	z := make([]int, 8)
	zo := make([]int64, 8)
	for _, tc := range []struct {
		own  []byte
		base bool
	}{
		{[]byte{'a', 0, 0, 0, 0, 0, 0, 0}, true},
		{[]byte{'a', 'b', 'c', 'd', 'e', 'f', 0, 0}, false},
	} {
		root := t.TempDir()
		o := synthImage(t, filepath.Join(root, "1"), nil, "", []byte("ABCDEFGH"), z, zo)
		from := make([]int, 8)
		off := make([]int64, 8)
		want := []byte("ABCDEFGH")
		for i := range tc.own {
			if tc.own[i] == 0 {
				from[i], off[i] = 1, pg(i)
			} else {
				want[i] = tc.own[i]
			}
		}
		synthImage(t, filepath.Join(root, "2"), o, "../1", tc.own, from, off)
		st, err := Merge(filepath.Join(root, "1"), []string{filepath.Join(root, "2")})
		if err != nil || st.Base != tc.base {
			t.Fatalf("child writing %q: merge %+v %v, want base %v", tc.own, st, err, tc.base)
		}
		os.RemoveAll(filepath.Join(root, "1"))
		if got := resolveHeap(t, filepath.Join(root, "2")); string(got) != string(want) {
			t.Fatalf("child writing %q reads %q after the merge, want %q", tc.own, got, want)
		}
	}
}
