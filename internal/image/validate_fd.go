package image

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Bounds of fd state read from an image.
const (
	maxEpollTargets = 1 << 16
	maxPipeData     = 64 << 20
	// MaxMemfdData bounds the bytes of data of one memfd or deleted
	// file, which the manifest holds.
	MaxMemfdData = 16 << 20
	// maxMemfdSize bounds the size of a memfd or deleted file (holes
	// included).
	maxMemfdSize = 1 << 40
	// maxMemfdName is the longest name memfd_create takes.
	maxMemfdName = 249
	// memfdSeals are the F_SEAL_* bits: SEAL, SHRINK, GROW, WRITE,
	// FUTURE_WRITE, EXEC.
	memfdSeals = 0x3f
	// maxInotifyWatches bounds the watches of one inotify fd.
	maxInotifyWatches = 1 << 16
	// maxLocks bounds the file locks held through one fd.
	maxLocks = 1 << 16
	// maxUnixBacklog bounds a listening unix socket's backlog.
	maxUnixBacklog = 1 << 20
	// maxSunPath is the size of sun_path.
	maxSunPath = 108
)

func validateFDs(fds []FD) error {
	seen := make(map[int]bool, len(fds))
	for i := range fds {
		fd := &fds[i]
		if fd.Num < 0 || fd.Num >= MaxFD {
			return fmt.Errorf("fd %d: number out of range 0-%d", fd.Num, MaxFD-1)
		}
		if seen[fd.Num] {
			return fmt.Errorf("fd %d: duplicate", fd.Num)
		}
		seen[fd.Num] = true
		if o := fd.Owner; o != nil && (o.Type < 0 || o.Type > 2 || o.Pid < 0) {
			return fmt.Errorf("fd %d: owner type %d id %d", fd.Num, o.Type, o.Pid)
		}
		if fd.Shared < 0 || (fd.Shared != 0 && (fd.Kind == FDInherit || fd.Kind == FDExternal)) {
			return fmt.Errorf("fd %d: shared open file id %d on a %q fd", fd.Num, fd.Shared, fd.Kind)
		}
		if fd.Sig < 0 || fd.Sig > maxSignal {
			return fmt.Errorf("fd %d: I/O signal %d out of range 0-%d", fd.Num, fd.Sig, maxSignal)
		}
		if fd.Pty != nil && fd.Kind != FDPty {
			return fmt.Errorf("fd %d: pty state on a %q fd", fd.Num, fd.Kind)
		}
		if fd.Fanotify != nil && fd.Kind != FDFanotify {
			return fmt.Errorf("fd %d: fanotify group on a %q fd", fd.Num, fd.Kind)
		}
		if err := validateLocks(fd); err != nil {
			return fmt.Errorf("fd %d: %w", fd.Num, err)
		}
		switch fd.Kind {
		case FDFile:
			if !isCleanAbs(fd.Path) {
				return fmt.Errorf("fd %d: path %q is not absolute and clean", fd.Num, fd.Path)
			}
			// What a dump records: regular files, directories, a few
			// character devices and symbolic links held with O_PATH;
			// never a FIFO, socket or block device.
			switch t := fd.Mode & unix.S_IFMT; t {
			case unix.S_IFREG, unix.S_IFDIR, unix.S_IFCHR:
			case unix.S_IFLNK:
				if fd.Flags&unix.O_PATH == 0 {
					return fmt.Errorf("fd %d: %s is a symbolic link open without O_PATH", fd.Num, fd.Path)
				}
			default:
				return fmt.Errorf("fd %d: %s has file type %#o, want a regular file, directory, character device or symbolic link", fd.Num, fd.Path, t)
			}
		case FDInherit:
			if fd.Num > 2 {
				return fmt.Errorf("fd %d: kind %q is only valid for fds 0-2", fd.Num, fd.Kind)
			}
		case FDEventfd:
			if fd.Count > MaxEventfdCount {
				return fmt.Errorf("fd %d: eventfd counter %d above the largest, %d", fd.Num, fd.Count, uint64(MaxEventfdCount))
			}
		case FDEpoll:
			if len(fd.Epoll) > maxEpollTargets {
				return fmt.Errorf("fd %d: %d epoll targets, at most %d", fd.Num, len(fd.Epoll), maxEpollTargets)
			}
			for _, e := range fd.Epoll {
				if e.Fd < 0 || e.Fd >= MaxFD || e.Held < 0 {
					return fmt.Errorf("fd %d: epoll target fd %d out of range 0-%d or held by open file %d", fd.Num, e.Fd, MaxFD-1, e.Held)
				}
			}
		case FDPipe:
			if fd.PipeID == 0 || fd.PipeSize < 0 || fd.PipeSize > maxPipeData || len(fd.PipeData) > fd.PipeSize {
				return fmt.Errorf("fd %d: pipe id %d of %d bytes with %d buffered", fd.Num, fd.PipeID, fd.PipeSize, len(fd.PipeData))
			}
		case FDMemfd:
			if err := validateMemfd(fd); err != nil {
				return fmt.Errorf("fd %d: memfd %w", fd.Num, err)
			}
		case FDDeleted:
			if err := validateDeleted(fd); err != nil {
				return fmt.Errorf("fd %d: %w", fd.Num, err)
			}
			if err := validateDataRuns(fd); err != nil {
				return fmt.Errorf("fd %d: deleted file %w", fd.Num, err)
			}
		case FDFanotify:
			if err := validateFanotify(fd); err != nil {
				return fmt.Errorf("fd %d: fanotify group %w", fd.Num, err)
			}
		case FDInotify:
			if len(fd.Inotify) > maxInotifyWatches {
				return fmt.Errorf("fd %d: %d inotify watches, at most %d", fd.Num, len(fd.Inotify), maxInotifyWatches)
			}
			last := 0
			for _, w := range fd.Inotify {
				if w.Wd <= last || (!isCleanAbs(w.Path) && (w.Path != "" || w.FileIno == 0)) {
					return fmt.Errorf("fd %d: inotify watch %d on %q: wds must ascend from 1, paths be absolute and clean", fd.Num, w.Wd, w.Path)
				}
				last = w.Wd
			}
		case FDTimerfd:
			switch fd.TimerClock {
			case unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME, unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM:
			default:
				return fmt.Errorf("fd %d: timerfd clock %d", fd.Num, fd.TimerClock)
			}
			if fd.TimerFlags&^unix.TFD_TIMER_ABSTIME != 0 || fd.TimerValue < 0 || fd.TimerInterval < 0 {
				return fmt.Errorf("fd %d: timerfd flags %#o value %d interval %d", fd.Num, fd.TimerFlags, fd.TimerValue, fd.TimerInterval)
			}
		case FDFifo:
			if !isCleanAbs(fd.Path) || fd.Mode&unix.S_IFMT != unix.S_IFIFO {
				return fmt.Errorf("fd %d: FIFO path %q with mode %#o, want an absolute clean path of a FIFO", fd.Num, fd.Path, fd.Mode)
			}
			if fd.PipeSize < 0 || fd.PipeSize > maxPipeData || len(fd.PipeData) > fd.PipeSize {
				return fmt.Errorf("fd %d: FIFO of %d bytes with %d buffered", fd.Num, fd.PipeSize, len(fd.PipeData))
			}
		case FDPty:
			if err := validatePty(fd); err != nil {
				return fmt.Errorf("fd %d: pty %w", fd.Num, err)
			}
		case FDSignalfd:
		case FDPidfd: // its process is checked with the others (validate.go)
		case FDCtty:
			if fd.Path != "/dev/tty" {
				return fmt.Errorf("fd %d: controlling terminal fd on %q, want /dev/tty", fd.Num, fd.Path)
			}
		case FDNamespace:
			switch fd.NsType {
			case "net", "uts", "ipc", "mnt", "cgroup", "user", "pid", "time":
			default:
				return fmt.Errorf("fd %d: namespace type %q unknown", fd.Num, fd.NsType)
			}
			if fd.NsIno == 0 {
				return fmt.Errorf("fd %d: %s namespace without an inode", fd.Num, fd.NsType)
			}
		case FDExternal:
			if err := validateExternal(fd); err != nil {
				return fmt.Errorf("fd %d: external %w", fd.Num, err)
			}
		case FDUnixPair:
			if err := validateUnixSock(fd); err != nil {
				return fmt.Errorf("fd %d: socket pair %w", fd.Num, err)
			}
		case FDInet:
			if err := validateInet(fd); err != nil {
				return fmt.Errorf("fd %d: TCP/UDP socket %w", fd.Num, err)
			}
		case FDUnix:
			if err := validateUnixSock(fd); err != nil {
				return fmt.Errorf("fd %d: unix socket %w", fd.Num, err)
			}
		default:
			return fmt.Errorf("fd %d: unknown kind %q", fd.Num, fd.Kind)
		}
	}
	return nil
}

// validateMemfd checks a memfd's name, seals, size and data runs (in
// order, apart, inside the size, at most MaxMemfdData bytes in all).
func validateMemfd(fd *FD) error {
	if len(fd.MemfdName) > maxMemfdName || strings.IndexByte(fd.MemfdName, 0) >= 0 {
		return fmt.Errorf("name %q: longer than %d bytes or with a NUL", fd.MemfdName, maxMemfdName)
	}
	if fd.MemfdSeals&^memfdSeals != 0 {
		return fmt.Errorf("seals %#x: unknown bits", fd.MemfdSeals)
	}
	return validateDataRuns(fd)
}

// validateDataRuns checks the size, position and data runs of a memfd or
// deleted file: runs in order, apart, inside the size, at most
// MaxMemfdData bytes in all.
func validateDataRuns(fd *FD) error {
	if fd.Size < 0 || fd.Size > maxMemfdSize || fd.Offset < 0 {
		return fmt.Errorf("size %d or position %d out of range", fd.Size, fd.Offset)
	}
	var end, total int64
	for _, r := range fd.MemfdData {
		total += int64(len(r.Data))
		if r.Off < end || len(r.Data) == 0 || total > MaxMemfdData || int64(len(r.Data)) > fd.Size-r.Off {
			return fmt.Errorf("data run of %d bytes at %d: overlapping, empty, beyond size %d or over %d bytes in all", len(r.Data), r.Off, fd.Size, MaxMemfdData)
		}
		end = r.Off + int64(len(r.Data))
	}
	return nil
}

// validateShared checks the fds that shared one open file description:
// all of one kind, with the same status flags, position and path, the
// saved contents (pipe or file data) on the first only, which restore
// creates the object from.
func validateShared(procs []Process) error {
	first := map[int]*FD{}
	for i := range procs {
		for j := range procs[i].FDs {
			fd := &procs[i].FDs[j]
			if fd.Shared == 0 {
				continue
			}
			f, ok := first[fd.Shared]
			if !ok {
				first[fd.Shared] = fd
				continue
			}
			if fd.Kind != f.Kind || fd.Flags&^unix.O_CLOEXEC != f.Flags&^unix.O_CLOEXEC || fd.Offset != f.Offset || fd.Path != f.Path {
				return fmt.Errorf("pid %d: fd %d: shared open file %d is a %s %q flags %#o at %d, was a %s %q flags %#o at %d on fd %d",
					procs[i].Pid, fd.Num, fd.Shared, fd.Kind, fd.Path, fd.Flags, fd.Offset, f.Kind, f.Path, f.Flags, f.Offset, f.Num)
			}
			if len(fd.PipeData) > 0 || len(fd.MemfdData) > 0 {
				return fmt.Errorf("pid %d: fd %d: shared open file %d holds contents, which only its first fd may", procs[i].Pid, fd.Num, fd.Shared)
			}
		}
	}
	// An epoll watching a file no fd of its own names watches the open
	// file of another fd of the tree.
	for i := range procs {
		for _, fd := range procs[i].FDs {
			for _, t := range fd.Epoll {
				if t.Held != 0 && first[t.Held] == nil {
					return fmt.Errorf("pid %d: fd %d: epoll watch of fd %d on shared open file %d, which no fd holds", procs[i].Pid, fd.Num, t.Fd, t.Held)
				}
			}
		}
	}
	return nil
}

// validateUnixSock checks a socket pair end's identity, type and queue
// (at most MaxMemfdData bytes in all).
func validateUnixSock(fd *FD) error {
	s := fd.Sock
	pair := fd.Kind == FDUnixPair
	if s != nil && s.State != nil && (s.State.Shutdown < 0 || s.State.Shutdown > 3) {
		return fmt.Errorf("shutdown state %d, want 0-3", s.State.Shutdown)
	}
	// A datagram socket may be connected to its own name (not a pair).
	self := s != nil && !pair && s.Type == unix.SOCK_DGRAM
	if s == nil || s.Ino == 0 || (pair && s.Peer == 0) || (s.Ino == s.Peer && !self) {
		return fmt.Errorf("without a socket and a peer")
	}
	switch s.Type {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return fmt.Errorf("of type %d", s.Type)
	}
	for _, a := range []*UnixAddr{s.Addr, s.PeerAddr} {
		if a == nil {
			continue
		}
		if err := validateUnixAddr(a); err != nil {
			return err
		}
	}
	if len(s.Pending) > 0 && (!s.Listen || len(s.Pending) > s.Backlog+1) {
		return fmt.Errorf("with %d connections waiting to be accepted, backlog %d", len(s.Pending), s.Backlog)
	}
	for _, p := range s.Pending {
		if p == 0 || p == s.Ino {
			return fmt.Errorf("waiting connection from socket:[%d]", p)
		}
	}
	if s.PendingOn != 0 && (pair || s.Type == unix.SOCK_DGRAM || s.PeerAddr == nil || s.Peer != 0 || s.Listen) {
		return fmt.Errorf("waiting to be accepted by socket:[%d] without its name, or as a %d socket", s.PendingOn, s.Type)
	}
	if s.Listen && (pair || s.Addr == nil || s.Type == unix.SOCK_DGRAM || s.Peer != 0 || s.PeerAddr != nil || s.Backlog < 0 || s.Backlog > maxUnixBacklog) {
		return fmt.Errorf("listening with backlog %d, type %d, peer %d", s.Backlog, s.Type, s.Peer)
	}
	if s.Accepted != 0 && (!pair || (s.Accepted != s.Ino && s.Accepted != s.Peer)) {
		return fmt.Errorf("accepted end socket:[%d] not one of the pair", s.Accepted)
	}
	if !pair && s.Peer != 0 && s.PeerAddr == nil {
		return fmt.Errorf("connected to socket:[%d] without its name", s.Peer)
	}
	if !pair && s.PeerAddr != nil && s.Type != unix.SOCK_DGRAM && s.PendingOn == 0 {
		return fmt.Errorf("of type %d connected by name (only datagram sockets are)", s.Type)
	}
	if st := s.State; st != nil {
		total := 0
		for _, m := range st.Queue {
			total += len(m)
		}
		if total > MaxMemfdData || st.SndBuf < 0 || st.RcvBuf < 0 || st.SndTimeo < 0 || st.RcvTimeo < 0 || st.PeekOff < -1 {
			return fmt.Errorf("with %d bytes queued, buffers %d/%d, timeouts %d/%d, peek offset %d", total, st.SndBuf, st.RcvBuf, st.SndTimeo, st.RcvTimeo, st.PeekOff)
		}
	}
	return nil
}

// validateLocks checks the file locks of an fd: only on files reopened by
// path, of a known kind, a flock without a range, a range inside int64.
func validateLocks(fd *FD) error {
	if len(fd.Locks) == 0 {
		return nil
	}
	if fd.Kind != FDFile || len(fd.Locks) > maxLocks {
		return fmt.Errorf("%d file locks on a %q fd, at most %d and on a file", len(fd.Locks), fd.Kind, maxLocks)
	}
	for _, l := range fd.Locks {
		bad := l.Start < 0 || l.Len < 0 || l.Len > math.MaxInt64-l.Start
		switch l.Kind {
		case LockFlock, LockLease:
			bad = bad || l.Start != 0 || l.Len != 0
		case LockPosix, LockOFD:
		default:
			bad = true
		}
		if bad {
			return fmt.Errorf("file lock %q from %d length %d", l.Kind, l.Start, l.Len)
		}
	}
	return nil
}

// validateUnixAddr checks a unix socket name: at most 108 bytes; an
// abstract name (leading NUL) has no path; a path name has no NUL, and
// its Path is the absolute clean path it names (from Dir, absolute and
// clean, when it is relative), permission bits only in Mode.
func validateUnixAddr(a *UnixAddr) error {
	if len(a.Name) == 0 || len(a.Name) > maxSunPath {
		return fmt.Errorf("name of %d bytes, want 1-%d", len(a.Name), maxSunPath)
	}
	if a.Abstract() {
		if a.Path != "" || a.Dir != "" {
			return fmt.Errorf("abstract name with path %q, dir %q", a.Path, a.Dir)
		}
		return nil
	}
	name := string(a.Name)
	want := ""
	switch {
	case strings.IndexByte(name, 0) >= 0:
	case strings.HasPrefix(name, "/") && a.Dir == "":
		want = filepath.Clean(name)
	case !strings.HasPrefix(name, "/") && isCleanAbs(a.Dir):
		want = filepath.Join(a.Dir, name)
	}
	if want == "" || want == "/" || a.Path != want || !isCleanAbs(a.Path) || a.Mode&^0o777 != 0 {
		return fmt.Errorf("name %q in %q with path %q and mode %#o: want a path name that is the absolute clean path, permission bits only", name, a.Dir, a.Path, a.Mode)
	}
	return nil
}

// maxPtyIndex bounds a pty pair's number (the kernel's limit is 1<<20).
const maxPtyIndex = 1 << 20

// validatePty checks a pty end's pair number, its control characters and
// the bytes buffered in it (at most MaxMemfdData).
func validatePty(fd *FD) error {
	p := fd.Pty
	if p == nil || p.Index < 0 || p.Index >= maxPtyIndex {
		return fmt.Errorf("without a pair number below %d", maxPtyIndex)
	}
	if st := p.State; st != nil {
		if len(st.Cc) != len(unix.Termios{}.Cc) || len(st.Output)+len(st.Input) > MaxMemfdData {
			return fmt.Errorf("%d with %d control characters and %d bytes buffered", p.Index, len(st.Cc), len(st.Output)+len(st.Input))
		}
	}
	return nil
}

// validateUnixPeers checks every socket a unix socket of the image names
// as its peer is one the image holds: restore connects the socket once
// its peer is made.
func validateUnixPeers(procs []Process) error {
	have := map[uint64]bool{}
	for i := range procs {
		for _, fd := range procs[i].FDs {
			if fd.Sock != nil {
				have[fd.Sock.Ino] = true
			}
		}
	}
	for i := range procs {
		for _, fd := range procs[i].FDs {
			s := fd.Sock
			if s == nil {
				continue
			}
			peers := []uint64{s.Peer, s.PendingOn}
			peers = append(peers, s.Pending...)
			for _, p := range peers {
				if p != 0 && !have[p] {
					return fmt.Errorf("pid %d: fd %d: unix socket connected to socket:[%d], which no fd of the image holds", procs[i].Pid, fd.Num, p)
				}
			}
		}
	}
	return nil
}

// validateDeleted checks the path, type and identity of a deleted file,
// directory, FIFO or device node: a directory (empty, as rmdir left it)
// and a device node have no contents, a FIFO only its buffered bytes, and
// a device node must be one of StatelessDevices.
func validateDeleted(fd *FD) error {
	t := fd.Mode & unix.S_IFMT
	known := t == unix.S_IFREG || t == unix.S_IFDIR || t == unix.S_IFIFO || t == unix.S_IFCHR
	if !isCleanAbs(fd.Path) || fd.Path == "/" || !known || fd.FileIno == 0 {
		return fmt.Errorf("deleted file %q with mode %#o inode %d, want an absolute clean path of a regular file, directory, FIFO or device", fd.Path, fd.Mode, fd.FileIno)
	}
	if fd.GoneDirs < 0 || fd.GoneDirs > MaxGoneDirs || strings.Count(fd.Path, "/") <= fd.GoneDirs {
		return fmt.Errorf("deleted file %q with %d removed directories (at most %d, below /)", fd.Path, fd.GoneDirs, MaxGoneDirs)
	}
	if t != unix.S_IFREG && (len(fd.MemfdData) != 0 || fd.Size != 0) {
		return fmt.Errorf("deleted %q of mode %#o with contents", fd.Path, fd.Mode)
	}
	if t != unix.S_IFIFO && (fd.PipeSize != 0 || len(fd.PipeData) != 0) {
		return fmt.Errorf("deleted %q of mode %#o with pipe contents", fd.Path, fd.Mode)
	}
	if t == unix.S_IFIFO && (fd.PipeSize < 0 || fd.PipeSize > maxPipeData || len(fd.PipeData) > fd.PipeSize) {
		return fmt.Errorf("deleted FIFO of %d bytes with %d buffered", fd.PipeSize, len(fd.PipeData))
	}
	if (t == unix.S_IFCHR) != StatelessDevices[fd.FileRdev] {
		return fmt.Errorf("deleted %q of mode %#o with device number %#x, want a device node of /dev/null, zero, full, random or urandom", fd.Path, fd.Mode, fd.FileRdev)
	}
	return nil
}

// MaxGoneDirs is the most directories above a deleted file that may have
// been removed with it (FD.GoneDirs).
const MaxGoneDirs = 16

// StatelessDevices are the device numbers (st_rdev) of the character
// devices rtcr recreates as deleted device nodes: /dev/null, zero, full,
// random and urandom, which hold no per-open state.
var StatelessDevices = map[uint64]bool{
	unix.Mkdev(1, 3): true, unix.Mkdev(1, 5): true, unix.Mkdev(1, 7): true,
	unix.Mkdev(1, 8): true, unix.Mkdev(1, 9): true,
}
