package files

import (
	"errors"
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ErrChanged reports a file that is not the one checked or recorded: of
// another type, or replaced between the check and the stub's open.
var ErrChanged = errors.New("not the file recorded or checked")

// atFDCWD is AT_FDCWD (-100) as a register value.
const atFDCWD = ^uint64(99)

// oLargefile is the kernel's O_LARGEFILE, which fdinfo shows for every
// file opened on a 64-bit kernel (x/sys/unix defines it as 0 on amd64).
const oLargefile = 0o100000

// stubOpenFlags are the open flags openat2 accepts that a reopen keeps
// (openat2 refuses unknown ones; O_CREAT, O_EXCL, O_TRUNC are dropped).
// O_ASYNC is left to F_SETFL: open records it without arming the signal,
// and F_SETFL then sees no change to arm.
const stubOpenFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_DIRECT | unix.O_DSYNC | unix.O_SYNC |
	unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_NOATIME | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY | oLargefile

// OpenIn opens path inside the stub r as a file checked by CheckAccess:
// with openat2 RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS (a link put in
// the path's place since the check is refused before anything is opened),
// O_NONBLOCK and O_NOCTTY added (nothing blocks; O_PATH keeps only
// O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC), and the file it got must be id.
// One injected call (two if the file is not id: the close).
func OpenIn(r *ptrace.Remote, path string, flags int, id FileID) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags&stubOpenFlags | unix.O_NONBLOCK | unix.O_NOCTTY)}
	if flags&unix.O_PATH != 0 {
		how.Flags = uint64(flags&(unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC) | unix.O_PATH)
	}
	how.Resolve = unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
	buf := append(ptrace.Bytes(&how)[:unix.SizeofOpenHow:unix.SizeofOpenHow], path...)
	howAddr, err := r.Put(ptrace.DataOff, append(buf, 0))
	if err != nil {
		return -1, err
	}
	got, err := r.Syscall(unix.SYS_OPENAT2, atFDCWD, howAddr+unix.SizeofOpenHow, howAddr, unix.SizeofOpenHow)
	if err != nil {
		return -1, fmt.Errorf("open %s in %d: %w", path, r.Pid, err)
	}
	fd := int(got)
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", r.Pid, fd), &st); err != nil {
		_ = r.Close(fd)
		return -1, fmt.Errorf("stat the opened %s: %w", path, err)
	}
	if st.Dev != id.Dev || st.Ino != id.Ino {
		_ = r.Close(fd)
		return -1, fmt.Errorf("%s changed while it was opened (device %d inode %d, checked %d %d): %w", path, st.Dev, st.Ino, id.Dev, id.Ino, ErrChanged)
	}
	return fd, nil
}

// Opener opens in a stub the files a process maps and its executable,
// each checked before (see NewOpener).
type Opener struct {
	r   *ptrace.Remote
	ids map[openKey]FileID
}

type openKey struct {
	path string
	mode int // O_RDONLY or O_RDWR
}

// NewOpener checks, with credentials as (nil: the restorer's rights, see
// CheckAccess), every file process p maps and its executable, and returns
// an Opener for them in the stub r.
func NewOpener(r *ptrace.Remote, p *image.Process, as *image.Creds) (*Opener, error) {
	want := mappedAccess(p)
	ids, err := CheckAccess(as, want)
	if err != nil {
		return nil, err
	}
	o := &Opener{r: r, ids: make(map[openKey]FileID, len(want))}
	for i, a := range want {
		o.ids[openKey{a.Path, a.Flags & unix.O_ACCMODE}] = ids[i]
	}
	return o, nil
}

// Open opens path, checked by NewOpener with the access mode of flags, in
// the stub (see OpenIn).
func (o *Opener) Open(path string, flags int) (int, error) {
	id, ok := o.ids[openKey{path, flags & unix.O_ACCMODE}]
	if !ok {
		return -1, fmt.Errorf("open %s in %d: not checked for access mode %d", path, o.r.Pid, flags&unix.O_ACCMODE)
	}
	return OpenIn(o.r, path, flags, id)
}
