package image

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// A dump checks its image directory once and then works through a
// descriptor of it: files are created with openat (O_EXCL, O_NOFOLLOW),
// renamed with renameat, removed with unlinkat and listed through the
// descriptor, so renaming the directory (or a parent) away and putting a
// symbolic link in its place cannot redirect a dump's writes.

// dirHook, when set (by tests), runs in openImageDir with the step it
// reached: "resolved" after the deepest existing directory was resolved
// and before it is opened; "mkdirat" after it created a directory and
// before it opened it; "mkdir" once it has it open.
var dirHook func(step, path string)

// createdDir is a directory a dump created: name in the directory parent
// (held open), path for messages.
type createdDir struct {
	parent *os.File
	name   string
	path   string
}

// openImageDir opens the image directory abs (an absolute path), creating
// it and its missing parents with mode 0700 (abs exactly 0700, whatever
// the umask). The deepest existing directory on the way has its symbolic
// links resolved once and is opened without following any symbolic link
// (RESOLVE_NO_SYMLINKS); each missing directory is created with mkdirat in
// the one above it and opened with O_NOFOLLOW. It returns the open
// directory, its resolved path and the directories it created, deepest
// first (their parents open).
func openImageDir(abs string) (_ *os.File, resolved string, created []createdDir, err error) {
	var missing []string // names below base, deepest first
	base := abs
	for {
		_, err := os.Lstat(base)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || base == filepath.Dir(base) {
			return nil, "", nil, fmt.Errorf("creating image directory %s: %w", abs, err)
		}
		missing = append(missing, filepath.Base(base))
		base = filepath.Dir(base)
	}
	if resolved, err = filepath.EvalSymlinks(base); err != nil {
		return nil, "", nil, fmt.Errorf("image directory %s: %w", abs, err)
	}
	if dirHook != nil {
		dirHook("resolved", resolved)
	}
	f, err := openNoSymlinks(resolved)
	if err != nil {
		return nil, "", nil, err
	}
	defer func() {
		if err != nil {
			removeCreated(created) // before f.Close: f may be a parent
			f.Close()
			created = nil
		}
	}()
	for i := len(missing) - 1; i >= 0; i-- {
		name := missing[i]
		path := filepath.Join(resolved, name)
		if err := unix.Mkdirat(int(f.Fd()), name, 0o700); err != nil {
			return nil, "", created, fmt.Errorf("creating image directory %s: mkdir %s: %w", abs, path, err)
		}
		created = append([]createdDir{{parent: f, name: name, path: path}}, created...)
		if dirHook != nil {
			dirHook("mkdirat", path)
		}
		// Replaced by a link since the mkdirat: ELOOP or ENOTDIR.
		fd, err := unix.Openat(int(f.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, "", created, fmt.Errorf("creating image directory %s: open %s (just created): %w", abs, path, err)
		}
		f, resolved = os.NewFile(uintptr(fd), path), path
		if dirHook != nil {
			dirHook("mkdir", path)
		}
	}
	if len(created) > 0 {
		if err := unix.Fchmod(int(f.Fd()), 0o700); err != nil {
			return nil, "", created, fmt.Errorf("creating image directory %s: chmod: %w", resolved, err)
		}
	}
	return f, resolved, created, nil
}

// openNoSymlinks opens the directory path, refusing a symbolic link
// anywhere in it (path has had its links resolved: one there now was
// planted since). Without openat2 only the last component is checked.
func openNoSymlinks(path string) (*os.File, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_NO_SYMLINKS})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) { // no openat2, or a seccomp filter refusing it
		fd, err = unix.Open(path, flags|unix.O_NOFOLLOW, 0)
	}
	isLink := func() bool {
		fi, err := os.Lstat(path)
		return err == nil && fi.Mode()&fs.ModeSymlink != 0
	}
	switch {
	case errors.Is(err, unix.ELOOP) || (errors.Is(err, unix.ENOTDIR) && isLink()):
		return nil, fmt.Errorf("image directory %s: a symbolic link appeared in its path after it was resolved: %w", path, err)
	case errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("image directory %s exists and is not a directory (or is below a file): %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("image directory %s: %w", path, &fs.PathError{Op: "open", Path: path, Err: err})
	}
	return os.NewFile(uintptr(fd), path), nil
}

// removeCreated removes the directories of created (deepest first, each by
// name in its open parent) as far as they are empty, and closes the
// parents.
func removeCreated(created []createdDir) {
	removing := true
	for _, c := range created {
		if removing && unix.Unlinkat(int(c.parent.Fd()), c.name, unix.AT_REMOVEDIR) != nil {
			removing = false
		}
	}
	closeCreated(created)
}

// closeCreated closes the parents held by created.
func closeCreated(created []createdDir) {
	for _, c := range created {
		c.parent.Close()
	}
}

// createTempAt creates a new file prefix+N (N decimal) in the directory d
// (path dir, for messages) with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600.
func createTempAt(d *os.File, dir, prefix string) (*os.File, string, error) {
	for try := 0; ; try++ {
		name := prefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) && try < 1000 {
			continue
		}
		if err != nil {
			return nil, "", &fs.PathError{Op: "create", Path: filepath.Join(dir, name), Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(dir, name)), name, nil
	}
}

// readDirAt lists the directory d through a new descriptor of it (d's own
// read position is left alone).
func readDirAt(d *os.File, dir string) ([]os.DirEntry, error) {
	fd, err := unix.Openat(int(d.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	return f.ReadDir(-1)
}

// readManifestAt reads and checks the manifest in the open directory d
// (dir is its path, for messages), as ReadManifest does.
func readManifestAt(d *os.File, dir string) (*Checkpoint, error) {
	path := filepath.Join(dir, ManifestName)
	fd, err := unix.Openat(int(d.Fd()), ManifestName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reading image in %s: %w", dir, &fs.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return readOpenedManifest(f, path)
}
