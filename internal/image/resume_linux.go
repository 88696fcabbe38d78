package image

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// FinishInterruptedMerges finishes the merges in the checkpoint series
// directory series that an rtcr killed in the middle of one left (a
// checkpoint with a MergeJournal: some manifests renamed, others still
// staged), so that every image of the series is whole again, and returns
// the checkpoints so merged (each may now be removed). The journal is
// trusted only when it and its checkpoint belong to owner and no one else
// may write them, and it names only checkpoints of the same series;
// otherwise the merge is left as it is and an error says why.
func FinishInterruptedMerges(series string, owner uint32) ([]string, error) {
	series, err := filepath.EvalSymlinks(series)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(series)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		old := filepath.Join(series, e.Name())
		journal := filepath.Join(old, MergeJournal)
		var st unix.Stat_t
		if unix.Lstat(journal, &st) != nil {
			continue
		}
		var dst unix.Stat_t
		if err := unix.Lstat(old, &dst); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != owner || dst.Uid != owner || st.Mode&0o022 != 0 || dst.Mode&0o022 != 0 {
			return done, fmt.Errorf("merge journal %s: not a regular file of uid %d that only its owner may write: %w", journal, owner, ErrUntrusted)
		}
		if unix.Lstat(filepath.Join(old, mergeMoves), &st) == nil && (st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != owner || st.Mode&0o022 != 0) {
			return done, fmt.Errorf("merge moves %s: not a regular file of uid %d that only its owner may write: %w", filepath.Join(old, mergeMoves), owner, ErrUntrusted)
		}
		b, err := os.ReadFile(journal)
		if err != nil {
			return done, fmt.Errorf("merge journal %s: %w", journal, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			d, err := filepath.EvalSymlinks(filepath.Dir(l))
			if !filepath.IsAbs(l) || filepath.Clean(l) != l || err != nil || d != series {
				return done, fmt.Errorf("merge journal %s names %q, not a checkpoint of %s: %w", journal, l, series, ErrUntrusted)
			}
		}
		if _, err := ResumeMerge(old, nil); err != nil {
			return done, err
		}
		done = append(done, old)
	}
	return done, nil
}
