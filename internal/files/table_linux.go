package files

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ErrUnsupported reports an fd kind rtcr cannot checkpoint yet.
var ErrUnsupported = errors.New("not supported yet")

// errBadFdinfo reports an fdinfo line rtcr cannot parse.
var errBadFdinfo = errors.New("unexpected fdinfo format")

// fdState is what Dump knows about one fd before a kind claims it.
type fdState struct {
	pid, num int
	link     string // readlink of /proc/PID/fd/N
	st       unix.Stat_t
	info     *procfs.FDInfo
	tree     *Tree
	shared   int // the fd's shared open file description, 0 if none
	pidfd    int // of pid, for pidfd_getfd copies
	// mapped is, for a mapping rather than an fd (num -1), its
	// /proc/PID/map_files path (see Tree.DumpMapped).
	mapped string
}

// kind is one type of fd: dump returns ok=false when the fd is not of this
// kind; check runs before restore creates any process; open recreates the
// file inside the stub and returns a new fd there, which restore then moves
// to the fd's number. Late kinds are opened after all others (an epoll
// instance needs the fds it watches).
//
// Unless the kind is inherited, Dump audits the fd (every fdinfo line must
// be saved: pos only by kinds with pos, other lines only when listed in
// fields) and records its SIGIO owner and signal; Install gives it its
// status flags with F_SETFL, unless exact says open created it with them.
// Kinds with locks save the file locks held through the fd (lock_linux.go),
// which others refuse.
type kind struct {
	dump      func(s *fdState) (fd image.FD, ok bool, err error)
	check     func(fd *image.FD) error
	open      func(c *restoreCtx, fd *image.FD) (int, error)
	late      bool
	pos       bool
	fields    []string
	exact     func(fd *image.FD) bool
	inherited bool
	locks     bool
	// byID: the kind makes one object per external ID, whatever open
	// file descriptions the fds had (no Shared).
	byID bool
}

// restoreCtx is the state of one process's fd-table restore.
type restoreCtx struct {
	r *ptrace.Remote
	// tempBase is the lowest fd number no image fd of this process uses:
	// helper fds (both ends of recreated pipes) live from there up.
	tempBase int
	// as are the credentials files are checked with before the stub
	// opens them (nil: the restorer's own rights).
	as *image.Creds
	// keep, set by open, says the fd's status flags are left as they
	// are (the restorer's own stdio).
	keep bool
	*Restorer
}

// Restorer restores the fd tables of the processes of one tree. Pipes are
// created in the first process that has them; the others open the same
// pipe through /proc/PID/fd of that process.
type Restorer struct {
	pipes map[uint64]pipeHome
	fifos map[string]pipeHome // by path: the helper holding each FIFO open
	// deleted holds, by identity at dump, the helper fd (both ends the
	// same) holding each recreated memfd and deleted file open.
	deleted map[FileID]pipeHome
	// shared holds, by image id, the first restored fd of each open
	// file description several fds shared at dump.
	shared map[int]shareHome
	// socks holds each recreated socket pair by the lower inode of its
	// two sockets at dump.
	socks map[uint64]sockHome
	// held are the epoll watches AddHeldWatches adds.
	held []heldWatch
	// ptys holds each recreated pty pair by its number at dump;
	// ptyStates the state of each pair of the image and ptyRdevs its
	// number by the slave's device number at dump (PreparePtys).
	ptys      map[int]ptyPair
	ptyStates map[int]*image.PtyState
	ptyRdevs  map[uint64]int
	// ext holds the external objects (see Externals).
	ext externals
	// inet holds rtcr's copies of the restored TCP connections, in
	// repair mode until FinishNetwork, by inode at dump.
	inet map[uint64]*heldConn
	// move is what a restore on another host needs (netmove_linux.go).
	move netMove
	// unix holds the other unix sockets made (unixsingle_linux.go).
	unix *unixRestorer
}

// pipeHome is where a recreated pipe's helper fds live.
type pipeHome struct {
	pid   int
	nspid int    // pid as the stubs see it (set for pipes)
	ends  [2]int // read end, write end
}

// NewRestorer returns a Restorer for one restore.
func NewRestorer() *Restorer {
	return &Restorer{pipes: map[uint64]pipeHome{}, fifos: map[string]pipeHome{}, deleted: map[FileID]pipeHome{}, shared: map[int]shareHome{}, socks: map[uint64]sockHome{},
		ptys: map[int]ptyPair{}, ptyStates: map[int]*image.PtyState{}, ptyRdevs: map[uint64]int{}}
}

// kinds is tried in order; the first whose dump claims an fd owns it.
var kinds = []struct {
	name string
	k    kind
}{
	{image.FDMemfd, memfdKind},     // before pathKind: a memfd is a deleted regular file
	{image.FDDeleted, deletedKind}, // before pathKind, after memfdKind
	{image.FDFile, pathKind},
	{image.FDPty, ptyKind},           // before inheritKind: a pty slave at fds 0-2 with its master in the tree
	{image.FDExternal, externalKind}, // before inheritKind, pipeKind and unixPairKind
	{image.FDInherit, inheritKind},
	{image.FDPipe, pipeKind},
	{image.FDFifo, fifoKind},
	{image.FDEventfd, eventfdKind},
	{image.FDEpoll, epollKind},
	{image.FDInotify, inotifyKind},
	{image.FDFanotify, fanotifyKind},
	{image.FDTimerfd, timerfdKind},
	{image.FDSignalfd, signalfdKind},
	{image.FDUnixPair, unixPairKind},
	{image.FDInet, inetKind},
	{image.FDUnix, unixKind}, // after unixPairKind
	{image.FDPidfd, pidfdKind},
	{image.FDNamespace, nsKind},
	{image.FDCtty, cttyKind},
}

func kindOf(name string) (*kind, error) {
	for i := range kinds {
		if kinds[i].name == name {
			return &kinds[i].k, nil
		}
	}
	return nil, fmt.Errorf("unknown fd kind %q", name)
}

// Dump records every open fd of process pid.
func Dump(pid int) ([]image.FD, error) {
	t, err := NewTree([]int{pid})
	if err != nil {
		return nil, err
	}
	return t.Dump(pid)
}

// Tree is what the fd dump of one process tree knows across processes.
type Tree struct {
	// internal holds the pipes (by inode) that have both a read and a
	// write end in the tree, or one end in the tree and the other closed
	// everywhere (see otherEndClosed): they are restored as pipes even
	// at fds 0–2, where an external pipe is inherited. The restored
	// pipe's ends the tree does not hold are closed once every process
	// has its fds (Sweep).
	internal map[uint64]bool
	// saved holds the pipes whose buffered bytes are saved already.
	saved map[uint64]bool
	// fifos holds the FIFOs whose buffered bytes are saved already.
	fifos map[FileID]bool
	// threads and groups are the thread ids and process group ids of
	// the tree (in rtcr's pid namespace): the owners an fd may have.
	threads, groups map[int]bool
	// deleted holds the memfds and deleted files whose contents are
	// saved already.
	deleted map[FileID]bool
	// shared holds the id of the open file description of every fd
	// that shares it with another fd of the tree (see findShared).
	shared map[fdRef]int
	// sockets holds the inodes of the sockets the tree holds; socksSaved
	// those whose state is saved already.
	sockets, socksSaved map[uint64]bool
	// epollHeld holds, for each epoll watch whose fd no longer names the
	// watched file, the shared id of the fd of the tree that holds it
	// (see findEpollHeld).
	epollHeld map[epollWatch]int
	// ptyMasters holds the first fd of the tree on each pty master, by
	// pair number; ptySaved the pairs whose state is saved already;
	// ptsDev is the device of /dev/pts, where the slaves are (see
	// findPtys).
	ptyMasters map[int]fdRef
	ptySaved   map[int]bool
	ptySlaves  map[int]bool // pairs of which the tree holds a slave
	ptsDev     uint64
	// inet is the network lock and the TCP connections held (LockNetwork).
	inet *inetTree
	// pids are the processes of the tree.
	pids []int
	// skip are fds that are not the program's (rtcr's dirty tracking):
	// never dumped.
	skip map[fdRef]bool
	// links holds, while NewTree scans, each process's fds (fdLinks).
	links map[int][]fdLink
	// tableOf holds the processes that share the fd table of an earlier
	// one (the value; see sharedTables): their fds are that one's.
	tableOf map[int]int
}

// Skip leaves fd num of process pid out of the dump: it belongs to rtcr
// (the userfaultfd of dirty tracking), not to the program.
func (t *Tree) Skip(pid, num int) {
	if t.skip == nil {
		t.skip = map[fdRef]bool{}
	}
	t.skip[fdRef{pid, num}] = true
}

// NewTree scans the fds of the processes pids of one tree.
func NewTree(pids []int) (*Tree, error) {
	t := &Tree{internal: map[uint64]bool{}, saved: map[uint64]bool{}, fifos: map[FileID]bool{}, threads: map[int]bool{}, groups: map[int]bool{},
		sockets: map[uint64]bool{}, socksSaved: map[uint64]bool{}}
	var err error
	if t.tableOf, err = sharedTables(pids); err != nil {
		return nil, err
	}
	// The fds of a process sharing an earlier one's table are that one's:
	// scanned and dumped once.
	for _, pid := range pids {
		if t.tableOf[pid] == 0 {
			t.pids = append(t.pids, pid)
		}
	}
	ends := map[uint64]int{}  // bit 0: a read end seen, bit 1: a write end
	one := map[uint64]fdRef{} // one fd of the tree on each pipe
	for _, pid := range pids {
		tids, err := procfs.ListTasks(pid)
		if err != nil {
			return nil, err
		}
		for _, tid := range tids {
			t.threads[tid] = true
		}
		st, err := procfs.ReadStat(pid)
		if err != nil {
			return nil, err
		}
		t.groups[st.Pgrp] = true
		if t.tableOf[pid] != 0 {
			continue
		}
		fds, err := t.fdLinks(pid)
		if err != nil {
			return nil, err
		}
		for _, fd := range fds {
			n, link := fd.num, fd.link
			if ino := sockIno(link); ino != 0 {
				t.sockets[ino] = true
				continue
			}
			if !strings.HasPrefix(link, "pipe:") {
				continue
			}
			ino, err := strconv.ParseUint(strings.Trim(link, "pipe:[]"), 10, 64)
			if err != nil {
				continue
			}
			info, err := procfs.ReadFDInfo(pid, n)
			if err != nil {
				return nil, fmt.Errorf("fd %d of %d: %w", n, pid, err)
			}
			one[ino] = fdRef{pid, n}
			switch info.Flags & unix.O_ACCMODE {
			case unix.O_RDONLY:
				ends[ino] |= 1
			case unix.O_WRONLY:
				ends[ino] |= 2
			default:
				ends[ino] |= 3
			}
		}
	}
	for ino, e := range ends {
		t.internal[ino] = e == 3
		if e != 3 {
			closed, err := otherEndClosed(one[ino], e == 1)
			if err != nil {
				return nil, err
			}
			t.internal[ino] = closed
		}
	}
	if err := t.findShared(t.pids); err != nil {
		return nil, err
	}
	if err := t.findEpollHeld(t.pids); err != nil {
		return nil, err
	}
	if err := t.findPtys(t.pids); err != nil {
		return nil, err
	}
	t.links = nil // the fds change once rtcr injects; Dump lists them again
	return t, nil
}

// Dump records every open fd of process pid of the tree.
func (t *Tree) Dump(pid int) ([]image.FD, error) {
	nums, err := procfs.ListFDs(pid)
	if err != nil {
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	var out []image.FD
	for _, n := range nums {
		if t.skip[fdRef{pid, n}] {
			continue
		}
		fd, err := dumpOne(pid, n, pidfd, t)
		if err != nil {
			return nil, err
		}
		out = append(out, fd)
	}
	return out, nil
}

func dumpOne(pid, n, pidfd int, t *Tree) (image.FD, error) {
	s := &fdState{pid: pid, num: n, tree: t, shared: t.shared[fdRef{pid, n}], pidfd: pidfd}
	var err error
	if s.link, err = procfs.ReadFDLink(pid, n); err != nil {
		return image.FD{}, fmt.Errorf("dump fd %d of %d: %w", n, pid, err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, n), &s.st); err != nil {
		return image.FD{}, fmt.Errorf("dump fd %d (%s) of %d: %w", n, s.link, pid, err)
	}
	if s.info, err = procfs.ReadFDInfo(pid, n); err != nil {
		return image.FD{}, fmt.Errorf("dump fd %d (%s) of %d: %w", n, s.link, pid, err)
	}
	for _, k := range kinds {
		fd, ok, err := k.k.dump(s)
		if err != nil {
			return image.FD{}, fmt.Errorf("dump fd %d (%s) of %d: %w", n, s.link, pid, err)
		}
		if !ok {
			continue
		}
		fd.Num, fd.Kind = n, k.name
		if k.k.inherited {
			return fd, nil
		}
		if err := audit(s, &k.k); err != nil {
			return image.FD{}, fmt.Errorf("dump fd %d (%s) of %d: %w", n, s.link, pid, err)
		}
		if err := dumpOwner(s, &fd); err != nil {
			return image.FD{}, fmt.Errorf("dump fd %d (%s) of %d: %w", n, s.link, pid, err)
		}
		if k.k.locks {
			if fd.Locks, err = dumpLocks(s); err != nil {
				return image.FD{}, fmt.Errorf("dump fd %d (%s) of %d: %w", n, s.link, pid, err)
			}
		}
		if !k.k.byID {
			fd.Shared = s.shared
		}
		return fd, nil
	}
	return image.FD{}, fmt.Errorf("dump fd %d (%s) of %d: %s: %w", n, s.link, pid, describe(s), ErrUnsupported)
}

// Check verifies, before any process is created, that every fd of the
// image can be restored here.
func Check(fds []image.FD) error {
	for i := range fds {
		k, err := kindOf(fds[i].Kind)
		if err != nil {
			return fmt.Errorf("restore fd %d: %w", fds[i].Num, err)
		}
		if err := k.check(&fds[i]); err != nil {
			return fmt.Errorf("restore fd %d (%s): %w", fds[i].Num, fds[i].Kind, err)
		}
		if err := checkLocks(&fds[i]); err != nil {
			return fmt.Errorf("restore fd %d (%s): %w", fds[i].Num, fds[i].Kind, err)
		}
	}
	return nil
}

// Restore installs the image's fds in the stub r at their numbers and
// closes every other fd the stub has (a single-process restore).
func Restore(r *ptrace.Remote, fds []image.FD) error {
	rs := NewRestorer()
	rs.PreparePtys([]image.Process{{FDs: fds}})
	if err := rs.Install(r, fds, nil); err != nil {
		return err
	}
	if err := rs.AddHeldWatches(); err != nil {
		return err
	}
	return Sweep(r, fds)
}

// Install puts the image's fds fds in the stub r at their numbers. Files
// reopened by path are first opened with credentials as (nil: with the
// restorer's own rights; see CheckAccess).
func (rs *Restorer) Install(r *ptrace.Remote, fds []image.FD, as *image.Creds) error {
	sorted := append([]image.FD(nil), fds...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Num < sorted[j].Num })
	if rs.ext.homes == nil {
		_ = rs.Externals([]image.Process{{FDs: fds}}, nil, nil) // no --inherit-fd: cannot fail
	}
	c := &restoreCtx{r: r, as: as, Restorer: rs}
	for _, fd := range sorted {
		c.tempBase = max(c.tempBase, fd.Num+1)
	}
	if err := raiseNofile(r.Pid, c.tempBase); err != nil {
		return err
	}
	for _, late := range []bool{false, true} {
		for i := range sorted {
			fd := &sorted[i]
			k, err := kindOf(fd.Kind)
			if err != nil {
				return fmt.Errorf("restore fd %d: %w", fd.Num, err)
			}
			if k.late != late {
				continue
			}
			if h, ok := rs.shared[fd.Shared]; ok && fd.Shared != 0 && !k.inherited {
				// The open file description exists: its status
				// flags and position are restored already.
				got, err := openShared(c, h, fd)
				if err == nil {
					err = place(r, got, fd)
				}
				if err != nil {
					return fmt.Errorf("restore fd %d (%s %s): %w", fd.Num, fd.Kind, fd.Desc, err)
				}
				continue
			}
			c.keep = false
			got, err := k.open(c, fd)
			if err != nil {
				return fmt.Errorf("restore fd %d (%s %s): %w", fd.Num, fd.Kind, fd.Desc, err)
			}
			if !k.inherited && !c.keep {
				if err := setStatus(r, got, k, fd); err != nil {
					return fmt.Errorf("restore fd %d (%s %s): %w", fd.Num, fd.Kind, fd.Desc, err)
				}
			}
			if err := place(r, got, fd); err != nil {
				return fmt.Errorf("restore fd %d (%s %s): %w", fd.Num, fd.Kind, fd.Desc, err)
			}
			if fd.Shared != 0 && !k.inherited {
				rs.shared[fd.Shared] = shareHome{pid: r.Pid, nspid: r.NsPid, fd: *fd}
			}
		}
	}
	return nil
}

// raiseNofile raises the soft RLIMIT_NOFILE of the stub pid to its hard
// limit for the fds step: the stub has the soft limit rtcr was started
// with (often 1024; Go gives children the limit it found), but it must
// hold the image's fds and the helper fds above them. The attributes step
// then sets the process's own limits (lower than its open fds is allowed,
// as for the process that was dumped). top is the highest fd number of the
// image plus one.
func raiseNofile(pid, top int) error {
	var rl unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &rl); err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE of %d: %w", pid, err)
	}
	if uint64(top) > rl.Max {
		return fmt.Errorf("restore fd %d: above the hard RLIMIT_NOFILE %d of the restoring process %d (rtcr's own): %w", top-1, rl.Max, pid, unix.EMFILE)
	}
	if rl.Cur >= rl.Max {
		return nil
	}
	rl.Cur = rl.Max
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &rl, nil); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE of %d to %d: %w", pid, rl.Max, err)
	}
	return nil
}

// Sweep closes every fd of the stub r that is not among fds: inherited
// ones and the helper fds of recreated pipes. In a tree it must run after
// every process's Install.
func Sweep(r *ptrace.Remote, fds []image.FD) error {
	want := map[int]bool{}
	for _, fd := range fds {
		want[fd.Num] = true
	}
	have, err := procfs.ListFDs(r.Pid)
	if err != nil {
		return err
	}
	for _, n := range have {
		if !want[n] {
			if err := r.Close(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// place moves fd got to fd.Num with the image's close-on-exec flag.
func place(r *ptrace.Remote, got int, fd *image.FD) error {
	cloexec := fd.Flags&unix.O_CLOEXEC != 0
	if got != fd.Num {
		flags := uint64(0)
		if cloexec {
			flags = unix.O_CLOEXEC
		}
		if _, err := r.Syscall(unix.SYS_DUP3, uint64(got), uint64(fd.Num), flags); err != nil {
			return fmt.Errorf("dup3 %d to %d: %w", got, fd.Num, err)
		}
		return r.Close(got)
	}
	fdFlags := uint64(0)
	if cloexec {
		fdFlags = unix.FD_CLOEXEC
	}
	if _, err := r.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_SETFD, fdFlags); err != nil {
		return fmt.Errorf("set close-on-exec: %w", err)
	}
	return nil
}
