package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The journal of a merge (see the comment at the top of merge_linux.go):
// written into the old image once everything is staged, it makes the
// merge one that is finished, not undone, after a crash.

// stagedManifest is the name a merge writes an image's new manifest under
// before it renames it into place.
const stagedManifest = ".manifest.img.merged"

// MergeJournal is the file a merge leaves in the old image once every new
// manifest is staged: the image directories whose staged manifests are
// renamed into place (one absolute path a line, the child first). Its
// presence says the merge must be finished (ResumeMerge) before the old
// image may go.
const MergeJournal = "merge-journal"

// mergeCrashHook, when set (by tests), runs before the i-th rename of
// switchManifests; an error stops the merge there, as a crash would.
var mergeCrashHook func(i int) error

// finishMerge does what a merge does once its journal (dirs) is written:
// the moves of the base's page files into the child (dirs[0]) of a merge
// into the base, then the renames of the staged manifests.
func finishMerge(oldDir string, dirs []string, moves []baseMove) error {
	if len(moves) > 0 {
		// The old image stops being one before its page files go: a
		// checkpoint that has a manifest can be restored.
		if err := removeFiles(oldDir, []string{ManifestName}); err != nil {
			return err
		}
		if err := applyMoves(oldDir, dirs[0], moves); err != nil {
			return err
		}
	}
	return switchManifests(dirs)
}

// switchManifests renames the staged manifest of each of dirs into place,
// in order (one already renamed is skipped), then syncs the directories.
func switchManifests(dirs []string) error {
	for i, d := range dirs {
		if mergeCrashHook != nil {
			if err := mergeCrashHook(i); err != nil {
				return err
			}
		}
		err := os.Rename(filepath.Join(d, stagedManifest), filepath.Join(d, ManifestName))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return syncDirs(dirs...)
}

// syncDirs fsyncs each directory of dirs (renames and new entries in it
// reach the disk), all of them even after a failure; it returns every
// error.
func syncDirs(dirs ...string) error {
	var errs []error
	for _, d := range dirs {
		f, err := os.Open(d)
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("fsync %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// ResumeMerge finishes a merge out of oldDir that was interrupted after
// its journal was written (rtcr killed while renaming the new manifests):
// it renames the staged manifests still waiting, in order. It reports
// whether there was one; then oldDir may be removed. Without a journal,
// staged manifests a merge left are removed (the chain was never touched).
func ResumeMerge(oldDir string, newer []string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(oldDir, MergeJournal))
	if errors.Is(err, os.ErrNotExist) {
		for _, d := range newer {
			_ = removeFiles(d, []string{stagedManifest})
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("merge journal of %s: %w", oldDir, err)
	}
	var dirs []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !filepath.IsAbs(l) {
			return false, fmt.Errorf("merge journal of %s: %q is not an absolute path: %w", oldDir, l, ErrCorrupt)
		}
		dirs = append(dirs, l)
	}
	moves, err := readMoves(oldDir)
	if err != nil {
		return false, fmt.Errorf("resuming the merge of %s: %w", oldDir, err)
	}
	if err := finishMerge(oldDir, dirs, moves); err != nil {
		return false, fmt.Errorf("resuming the merge of %s: %w", oldDir, err)
	}
	for _, m := range moves {
		if m.childName != "" {
			_ = removeFiles(dirs[0], []string{m.childName})
		}
	}
	return true, removeFiles(oldDir, []string{mergeMoves, MergeJournal})
}

// removeFiles removes the files names of dir (those that exist).
func removeFiles(dir string, names []string) error {
	var errs []error
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
