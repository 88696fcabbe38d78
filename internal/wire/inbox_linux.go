package wire

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// stagingPrefix starts the name of the directory an image is received
// into, beside where it will be: DIR/.incoming-NAME-RANDOM.
const stagingPrefix = ".incoming-"

// Inbox is rtcr serve's image directory: each image arrives in a staging
// directory of its own and becomes DIR/NAME by one rename once it is
// complete and validated, so DIR never shows a partial image.
type Inbox struct {
	// Dir is the directory, absolute.
	Dir string
}

// OpenInbox makes dir (mode 0700) if it is missing, refuses it when
// others may write into it or it is not the caller's, and removes the
// staging directories a killed server left.
func OpenInbox(dir string) (*Inbox, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("image directory %s: %w", abs, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return nil, fmt.Errorf("image directory %s: %w", abs, err)
	}
	if st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("image directory %s: mode %04o lets others write into it; chmod 700 %s", abs, st.Mode&0o7777, abs)
	}
	if int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("image directory %s: owned by uid %d, not by you", abs, st.Uid)
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("image directory %s: %w", abs, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), stagingPrefix) && e.IsDir() {
			if err := os.RemoveAll(filepath.Join(abs, e.Name())); err != nil {
				return nil, fmt.Errorf("image directory %s: removing a killed server's %s: %w", abs, e.Name(), err)
			}
		}
	}
	return &Inbox{Dir: abs}, nil
}

// Path is where the image name lives once stored.
func (b *Inbox) Path(name string) string { return filepath.Join(b.Dir, name) }

// Exists reports whether an image (or anything) is stored as name.
func (b *Inbox) Exists(name string) bool {
	_, err := os.Lstat(b.Path(name))
	return !errors.Is(err, os.ErrNotExist)
}

// Stage creates the staging directory of image name (mode 0700).
func (b *Inbox) Stage(name string) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	tmp := filepath.Join(b.Dir, stagingPrefix+name+"-"+hex.EncodeToString(r[:]))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", fmt.Errorf("image %s: %w", name, err)
	}
	return tmp, nil
}

// Commit renames the staging directory tmp to DIR/name, never replacing
// anything there (RENAME_NOREPLACE), and fsyncs DIR.
func (b *Inbox) Commit(tmp, name string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, b.Path(name), unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("image %s: rename into %s: %w", name, b.Dir, err)
	}
	d, err := os.Open(b.Dir)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("image %s: fsync %s: %w", name, b.Dir, err)
	}
	return nil
}

// Remove removes a staging directory or a stored image.
func (b *Inbox) Remove(path string) error {
	if filepath.Dir(path) != b.Dir {
		return fmt.Errorf("%s is not in %s", path, b.Dir)
	}
	return os.RemoveAll(path)
}
