package image

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrUntrusted reports an image that the restoring user may not restore:
// its files could have been written by someone else, or it asks for more
// than its writer had.
var ErrUntrusted = errors.New("untrusted image")

// Owner is who could have written an image, and so the most a restore of
// it may grant.
type Owner struct {
	// Root: every file of the image is root's; no bound applies.
	Root bool
	// Uid is the owner when not Root.
	Uid uint32
	// Gids are the groups the owner has: its primary group and the groups
	// listing it in the group database, and, when the owner is the
	// restoring user, the restorer's own groups.
	Gids []uint32
	// Caps are the capabilities the owner has: the restorer's permitted
	// set when the owner is the restoring user, none otherwise.
	Caps uint64
	// Restorer: the bound is the restoring user, not the image's owner
	// (see RestorerBound); only changes the wording of errors.
	Restorer bool
}

// RestorerBound returns the restoring user (the effective uid) as an
// Owner: its groups and permitted capabilities. A root-owned image
// restored without root is checked against it as well, so that root's
// credentials are refused before any process exists (the kernel would
// refuse them anyway, half way through the restore).
func RestorerBound() (Owner, error) {
	o, err := ownerOf(uint32(os.Geteuid()), true)
	o.Restorer = true
	return o, err
}

// Dir is an image directory opened for a restore: its files are read
// through the descriptor, so renaming the directory away does not change
// what is read.
type Dir struct {
	// Path is the directory as the caller named it (for messages).
	Path string
	// Owner is who could have written the image.
	Owner Owner
	// Verified says the caller checked the CRCs of this image's page
	// files already (rtcr serve, of a pre-copy migration's full image
	// when it arrived): OpenPages maps them without checking again.
	Verified bool
	f        *os.File
	uid      uint32 // the restoring user (effective uid)
	trust    bool   // TrustOwner
	other    uint32 // the non-root uid seen so far, if any
	seen     bool   // other is set
}

// OpenDir opens the image directory dir for a restore by the effective
// uid restorer and checks its ownership (see CheckFile). With trustOwner,
// an image owned by another user is accepted, bounded to what that user
// has.
func OpenDir(dir string, restorer uint32, trustOwner bool) (*Dir, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("image directory: %w", err)
	}
	d := &Dir{Path: dir, f: f, uid: restorer, trust: trustOwner}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("image directory %s: %w", dir, err)
	}
	if err := d.admit(dir, &st); err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// Close closes the directory.
func (d *Dir) Close() error { return d.f.Close() }

// CheckFile checks the ownership of the image file name (not following a
// symbolic link): it must be a regular file, and pass the rules of admit.
// The directory was checked by OpenDir: only its owner (root or the
// owner of the image) can replace its entries afterwards.
func (d *Dir) CheckFile(name string) error {
	if !isPlainName(name) {
		return corruptf("%s: file name %q is not a plain file name", d.Path, name)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.f.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("image file %s/%s: %w", d.Path, name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return corruptf("%s/%s: not a regular file (mode %#o)", d.Path, name, st.Mode)
	}
	return d.admit(d.Path+"/"+name, &st)
}

// ReadManifest reads and checks the manifest (as ReadManifest does) after
// checking the ownership of the file it opened.
func (d *Dir) ReadManifest() (*Checkpoint, error) {
	path := d.Path + "/" + ManifestName
	fd, err := unix.Openat(int(d.f.Fd()), ManifestName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("no image in %s: %w", d.Path, os.ErrNotExist)
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, newError(ErrNotImage, "%s is not an rtcr image: not a regular file", path)
	}
	if err := d.admit(path, &st); err != nil {
		return nil, err
	}
	return readManifest(f, st.Size, path)
}

// OpenPages opens the page file of p through the directory (not following
// a symbolic link, not blocking), checks its ownership like CheckFile, and
// maps and verifies it like OpenPages. A page file that neither root nor
// the restoring user owns (an image accepted with trustOwner) is copied
// into memory instead of mapped: its owner could otherwise truncate it
// during the restore (rtcr would die of SIGBUS) or change the verified
// bytes.
func (d *Dir) OpenPages(p *Process) (data []byte, close func() error, err error) {
	if p.PageFile == "" && p.PageFileSize == 0 {
		return nil, func() error { return nil }, nil // no pages saved, no page file
	}
	path := d.Path + "/" + p.PageFile
	if !isPlainName(p.PageFile) {
		return nil, nil, corruptf("%s: page file name %q of pid %d is not a plain file name", path, p.PageFile, p.Pid)
	}
	fd, err := unix.Openat(int(d.f.Fd()), p.PageFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening page file %s of pid %d: %w", path, p.Pid, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // a mapping outlives the descriptor
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, nil, fmt.Errorf("page file %s of pid %d: %w", path, p.Pid, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, nil, corruptf("%s: not a regular file (mode %#o)", path, st.Mode)
	}
	if err := d.admit(path, &st); err != nil {
		return nil, nil, err
	}
	return loadPages(f, st.Size, path, p, st.Uid != 0 && st.Uid != d.uid, d.Verified)
}

// admit applies the ownership rules to one file or the directory: not
// writable by group or others; owned by root, by the restoring user, or
// (with trustOwner) by anyone; and every file not root's owned by the same
// user, who is then the image's owner.
func (d *Dir) admit(path string, st *unix.Stat_t) error {
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %#o): %w", path, st.Mode&0o7777, ErrUntrusted)
	}
	if st.Uid == 0 {
		if !d.seen {
			d.Owner = Owner{Root: true}
		}
		return nil
	}
	if d.seen && st.Uid != d.other {
		return fmt.Errorf("%s is owned by uid %d, other files of the image by uid %d: %w", path, st.Uid, d.other, ErrUntrusted)
	}
	if st.Uid != d.uid && !d.trust {
		return fmt.Errorf("%s is owned by uid %d: restore only images owned by root or by you (uid %d), or accept the owner's with --trust-image-owner: %w",
			path, st.Uid, d.uid, ErrUntrusted)
	}
	if !d.seen {
		owner, err := ownerOf(st.Uid, st.Uid == d.uid)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		d.Owner, d.other, d.seen = owner, st.Uid, true
	}
	return nil
}

// groupIDs lists the groups of u from the group database (a variable so
// that a test can make it fail).
var groupIDs = (*user.User).GroupIds

// ownerOf returns what uid has: its groups from the user database and, if
// it is the restoring user (self), the restorer's own groups and permitted
// capabilities. A uid the user database does not know has no groups.
func ownerOf(uid uint32, self bool) (Owner, error) {
	o := Owner{Uid: uid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		gids, err := groupIDs(u)
		if err != nil {
			return o, fmt.Errorf("groups of uid %d: %w", uid, err)
		}
		for _, g := range append(gids, u.Gid) {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				o.Gids = append(o.Gids, uint32(n))
			}
		}
	}
	if self {
		o.Gids = append(o.Gids, uint32(os.Getgid()), uint32(os.Getegid()))
		groups, err := unix.Getgroups()
		if err != nil {
			return o, fmt.Errorf("own groups: %w", err)
		}
		for _, g := range groups {
			o.Gids = append(o.Gids, uint32(g))
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return o, fmt.Errorf("own capabilities: %w", err)
		}
		o.Caps = uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	}
	slices.Sort(o.Gids)
	o.Gids = slices.Compact(o.Gids)
	return o, nil
}
