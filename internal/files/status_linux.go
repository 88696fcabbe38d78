package files

import (
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// statusFlags are the file status flags fcntl(F_SETFL) can change
// (fcntl(2)); restore sets them on every fd it creates, after opening it
// without O_ASYNC (open ignores O_ASYNC and F_SETFL only arms it when the
// flag changes).
const statusFlags = unix.O_APPEND | unix.O_NONBLOCK | unix.O_ASYNC | unix.O_DIRECT | unix.O_NOATIME

// fOwnerEx is struct f_owner_ex.
type fOwnerEx struct {
	Type int32
	Pid  int32
}

// The f_owner_ex types (fcntl(2)).
const (
	fOwnerTID  = 0
	fOwnerPID  = 1
	fOwnerPGRP = 2
)

// ownerTypes names the f_owner_ex types for messages, by type.
var ownerTypes = []string{"thread", "process", "process group"}

// audit applies the rule that nothing fdinfo shows is lost silently: every
// line of the fdinfo of fd s must be saved by its kind k, or the dump
// refuses, naming the field. pos, flags, mnt_id and ino are common to all
// kinds (see the package doc).
func audit(s *fdState, k *kind) error {
	if !k.pos && s.info.Pos != 0 {
		return fmt.Errorf("fdinfo pos %d on a file without a position: %w", s.info.Pos, ErrUnsupported)
	}
	keys := make([]string, 0, len(s.info.Extra))
	for key := range s.info.Extra {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if key == "lock" && !k.locks {
			return fmt.Errorf("file lock (fdinfo lock: %s): %w", strings.ReplaceAll(s.info.Extra[key], "\n", "; "), ErrUnsupported)
		}
		if key != "lock" && !slices.Contains(k.fields, key) {
			return fmt.Errorf("fdinfo field %q (%s) is not saved: %w", key, s.info.Extra[key], ErrUnsupported)
		}
	}
	return nil
}

// dumpOwner records the SIGIO owner and signal of fd s into fd. They are
// not in /proc: rtcr takes a copy of the fd (pidfd_getfd, the same open
// file) and asks fcntl itself, without injecting anything. The owner read
// from rtcr's pid namespace must be a thread, process or process group of
// the tree; one outside the tree is refused (its id could name another
// process by the time of the restore).
func dumpOwner(s *fdState, fd *image.FD) error {
	if s.info.Flags&unix.O_PATH != 0 {
		return nil // fcntl refuses F_GETOWN_EX on O_PATH fds: none is set
	}
	dup, err := s.copy()
	if err != nil {
		return err
	}
	defer unix.Close(dup)
	var o fOwnerEx
	if _, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(dup), unix.F_GETOWN_EX, uintptr(unsafe.Pointer(&o))); e != 0 {
		return fmt.Errorf("fcntl F_GETOWN_EX: %w", e)
	}
	sig, err := unix.FcntlInt(uintptr(dup), unix.F_GETSIG, 0)
	if err != nil {
		return fmt.Errorf("fcntl F_GETSIG: %w", err)
	}
	fd.Sig = sig
	if o.Type == fOwnerTID && o.Pid == 0 {
		return nil // never set (the kernel's default)
	}
	if o.Type < 0 || int(o.Type) >= len(ownerTypes) {
		return fmt.Errorf("owner (F_GETOWN_EX) of unknown type %d: %w", o.Type, ErrUnsupported)
	}
	id := int(o.Pid)
	inTree := s.tree.threads[id]
	if o.Type == fOwnerPGRP {
		inTree = s.tree.groups[id]
	}
	if id != 0 && !inTree {
		return fmt.Errorf("owner (F_GETOWN_EX) is %s %d, outside the dumped tree: %w", ownerTypes[o.Type], id, ErrUnsupported)
	}
	fd.Owner = &image.FDOwner{Type: int(o.Type), Pid: id}
	return nil
}

// setStatus gives fd got the status flags of fd in the stub r, unless its
// kind k created it with them already.
func setStatus(r *ptrace.Remote, got int, k *kind, fd *image.FD) error {
	if fd.Flags&unix.O_PATH != 0 || (k.exact != nil && k.exact(fd)) {
		return nil
	}
	fl := uint64(fd.Flags & statusFlags)
	if _, err := r.Syscall(unix.SYS_FCNTL, uint64(got), unix.F_SETFL, fl); err != nil {
		return fmt.Errorf("fcntl F_SETFL %#o: %w", fl, err)
	}
	return nil
}

// RestoreOwners sets the SIGIO owner and signal of the fds of the stub r
// that had one. It runs once every process and thread of the tree exists
// and every process is in its group (an owner may be any of them).
func RestoreOwners(r *ptrace.Remote, fds []image.FD) error {
	for i := range fds {
		fd := &fds[i]
		if fd.Owner != nil {
			o := fOwnerEx{Type: int32(fd.Owner.Type), Pid: int32(fd.Owner.Pid)}
			addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&o))
			if err != nil {
				return fmt.Errorf("restore owner of fd %d: %w", fd.Num, err)
			}
			if _, err := r.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_SETOWN_EX, addr); err != nil {
				return fmt.Errorf("restore owner of fd %d (%s %d): fcntl F_SETOWN_EX: %w", fd.Num, ownerTypes[fd.Owner.Type], fd.Owner.Pid, err)
			}
		}
		if fd.Owner == nil && hasLease(fd) {
			// Taking the lease made the process the owner.
			if _, err := r.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_SETOWN, 0); err != nil {
				return fmt.Errorf("restore owner of fd %d (none, its lease set one): fcntl F_SETOWN 0: %w", fd.Num, err)
			}
		}
		if fd.Sig != 0 {
			if _, err := r.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_SETSIG, uint64(fd.Sig)); err != nil {
				return fmt.Errorf("restore I/O signal of fd %d (%d): fcntl F_SETSIG: %w", fd.Num, fd.Sig, err)
			}
		}
	}
	return nil
}

// hasLease reports whether fd held a lease.
func hasLease(fd *image.FD) bool {
	for _, l := range fd.Locks {
		if l.Kind == image.LockLease {
			return true
		}
	}
	return false
}
