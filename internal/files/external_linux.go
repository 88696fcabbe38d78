package files

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// externalKind covers a pipe end or an AF_UNIX socket whose other end is
// held outside the dumped tree (a supervisor's pipe, a client connected to
// a server outside), at any fd. It is recorded as an external object with
// an ID ("pipe:[INODE]", "socket:[INODE]", as /proc/PID/fd shows it) and,
// once per object, what was buffered for the tree to read: the bytes in a
// pipe whose read end the tree holds (tee, see peekPipe), the messages
// queued to a socket and its options (see dumpSockState). Bytes the
// outside end sends after that are lost with the old object.
//
// Restore gives every fd with one ID one object (see Externals):
//   - with --inherit-fd N:ID, the restorer's own fd N, passed into the
//     first stub that has the ID with SCM_RIGHTS, its status flags set as
//     recorded; a pipe's buffered bytes are written into the inherited
//     pipe first (after whatever it holds already);
//   - else, for an ID some process had at fd 0–2, the restorer's own fd of
//     that number, flags untouched (as a shell gives a program its stdio);
//   - else a new pipe (or socket pair of the same type) whose other end is
//     closed, refilled with what was buffered: a reader reads that, then
//     end of file; a writer gets EPIPE (and SIGPIPE). A warning names the
//     pid, fd and ID.
var externalKind = kind{
	dump:   dumpExternal,
	check:  func(fd *image.FD) error { return nil },
	open:   openExternal,
	fields: []string{"scm_fds"},
	byID:   true,
}

func dumpExternal(s *fdState) (image.FD, bool, error) {
	switch {
	case strings.HasPrefix(s.link, "pipe:"):
		if s.tree.internal[s.st.Ino] {
			return image.FD{}, false, nil
		}
		return dumpExternalPipe(s)
	case strings.HasPrefix(s.link, "socket:"):
		return dumpExternalSocket(s)
	}
	return image.FD{}, false, nil
}

// dumpExternalPipe records a pipe end whose other end is outside the tree.
func dumpExternalPipe(s *fdState) (image.FD, bool, error) {
	ino := s.st.Ino
	e := &image.External{ID: image.ExternalID(image.ExtPipe, ino), Type: image.ExtPipe, Ino: ino}
	fd := image.FD{Flags: s.info.Flags, Desc: s.link + " (other end outside the tree)", External: e}
	dup, err := s.copy()
	if err != nil {
		return image.FD{}, false, err
	}
	defer unix.Close(dup)
	if e.PipeSize, err = unix.FcntlInt(uintptr(dup), unix.F_GETPIPE_SZ, 0); err != nil {
		return image.FD{}, false, fmt.Errorf("pipe size: %w", err)
	}
	if s.tree.saved[ino] || s.info.Flags&unix.O_ACCMODE != unix.O_RDONLY {
		// Bytes in a pipe the tree writes to are the outside
		// reader's: they stay in the old pipe.
		return fd, true, nil
	}
	s.tree.saved[ino] = true
	size, data, err := peekPipe(s.pid, s.num)
	if err != nil {
		return image.FD{}, false, err
	}
	e.PipeSize, e.Data = size, data
	return fd, true, nil
}

// dumpExternalSocket records an unnamed, connected AF_UNIX socket whose
// peer is outside the tree. Other sockets are left to the other kinds.
func dumpExternalSocket(s *fdState) (image.FD, bool, error) {
	dup, err := s.copy()
	if err != nil {
		return image.FD{}, false, err
	}
	defer unix.Close(dup)
	if dom, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_UNIX {
		return image.FD{}, false, nil
	}
	if n := strings.TrimSpace(s.info.Extra["scm_fds"]); n != "" && n != "0" {
		return image.FD{}, false, nil // refused by unixPairKind, naming it
	}
	ino := s.st.Ino
	info, err := unixDiag(uint32(ino))
	if err != nil {
		return image.FD{}, false, err
	}
	if info.peer == 0 || s.tree.sockets[uint64(info.peer)] || info.named || info.state == abi.TCP_LISTEN {
		return image.FD{}, false, nil
	}
	switch info.typ {
	case unix.SOCK_STREAM, unix.SOCK_SEQPACKET:
	case unix.SOCK_DGRAM:
		// A datagram socket connected to a named socket is connected
		// again by its name (unixKind); only one whose peer has no
		// name is external.
		peer, err := unixDiag(info.peer)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("peer socket:[%d]: %w", info.peer, err)
		}
		if peer.named {
			return image.FD{}, false, nil
		}
	default:
		return image.FD{}, false, nil
	}
	e := &image.External{ID: image.ExternalID(image.ExtSocket, ino), Type: image.ExtSocket, Ino: ino, SockType: info.typ}
	fd := image.FD{Flags: s.info.Flags, Desc: fmt.Sprintf("%s (%s, peer socket:[%d] outside the tree)", s.link, sockTypeName(info.typ), info.peer), External: e}
	if s.tree.socksSaved[ino] {
		return fd, true, nil
	}
	// The peer is not frozen: what it sends after this is lost with
	// the old socket, so the queue length is not compared. A new pair's
	// unnamed end sends the messages again: a datagram from a named
	// sender is refused.
	if e.Sock, err = dumpSockState(dup, info.typ, "", true, false); err != nil {
		return image.FD{}, false, err
	}
	s.tree.socksSaved[ino] = true
	return fd, true, nil
}

// sockTypeName names a socket type for people.
func sockTypeName(typ int) string {
	switch typ {
	case unix.SOCK_STREAM:
		return "stream"
	case unix.SOCK_DGRAM:
		return "datagram"
	case unix.SOCK_SEQPACKET:
		return "seqpacket"
	}
	return "type " + strconv.Itoa(typ)
}

// WarnFunc receives a restore warning about fd fd of process pid (its pid
// in the image) on external object id.
type WarnFunc func(pid, fd int, id, msg string)

// externals is what a Restorer knows of the external objects of a tree.
type externals struct {
	// given holds, by ID, the restorer's fd each object becomes.
	given map[string]givenFd
	// homes holds, by ID, the fd of a stub holding each restored object.
	homes map[string]extHome
	// state holds, by ID, the object as its first fd in the image
	// records it, with what was buffered (see image.External).
	state map[string]*image.External
	warn  WarnFunc
}

// givenFd is a restorer fd an external object becomes: named by the user
// (--inherit-fd) or one of the restorer's fds 0–2 by default.
type givenFd struct {
	fd       int
	explicit bool
}

// extHome is where a restored external object lives: an fd of a stub.
type extHome struct {
	pid, nsPid, fd int
	fresh          bool // a new pipe or socket pair, not a restorer fd
}

// ExternalIDs returns, sorted, the IDs of the external objects of procs.
func ExternalIDs(procs []image.Process) []string {
	seen := map[string]bool{}
	var ids []string
	for i := range procs {
		for _, fd := range procs[i].FDs {
			if fd.Kind == image.FDExternal && fd.External != nil && !seen[fd.External.ID] {
				seen[fd.External.ID] = true
				ids = append(ids, fd.External.ID)
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// Externals prepares the restore of the external objects of procs (the
// image, validated): inherit maps IDs to fds of the restorer
// (--inherit-fd), warn gets the warnings (nil: none). It runs before any
// process is created and refuses an ID the image does not have, an fd
// the restorer does not have open, and a pipe whose buffered bytes the
// inherited fd cannot take (not a pipe, or too little room).
func (rs *Restorer) Externals(procs []image.Process, inherit map[string]int, warn WarnFunc) error {
	rs.ext = externals{given: map[string]givenFd{}, homes: map[string]extHome{}, state: map[string]*image.External{}, warn: warn}
	first := map[string]*image.FD{}
	for i := range procs {
		for j := range procs[i].FDs {
			fd := &procs[i].FDs[j]
			if fd.Kind != image.FDExternal || fd.External == nil {
				continue
			}
			if _, ok := first[fd.External.ID]; !ok {
				first[fd.External.ID] = fd
				rs.ext.state[fd.External.ID] = fd.External
			}
			if _, ok := rs.ext.given[fd.External.ID]; !ok && fd.Num <= 2 {
				rs.ext.given[fd.External.ID] = givenFd{fd: fd.Num}
			}
		}
	}
	for id, g := range rs.ext.given {
		if _, ok := inherit[id]; ok {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(g.fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("%s was at fd %d, which becomes rtcr's own fd %d unless --inherit-fd names another: rtcr's fd %d is not open: %w", id, g.fd, g.fd, g.fd, err)
		}
	}
	ids := make([]string, 0, len(inherit))
	for id := range inherit {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		n := inherit[id]
		f, ok := first[id]
		if !ok {
			have := strings.Join(ExternalIDs(procs), ", ")
			if have == "" {
				have = "none"
			}
			return fmt.Errorf("--inherit-fd %d:%s: the image has no external object %s (it has: %s)", n, id, id, have)
		}
		if err := checkGiven(n, f); err != nil {
			return fmt.Errorf("--inherit-fd %d:%s: %w", n, id, err)
		}
		rs.ext.given[id] = givenFd{fd: n, explicit: true}
	}
	return nil
}

// checkGiven checks the restorer's fd n can become the external object
// of fd f (the first fd of the image with it): open, with the access the
// fds need, and, for a pipe's buffered bytes, a pipe with room for them.
func checkGiven(n int, f *image.FD) error {
	e := f.External
	if n < 0 {
		return fmt.Errorf("fd %d out of range", n)
	}
	if _, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err != nil {
		return fmt.Errorf("rtcr's fd %d is not open: %w", n, err)
	}
	fl, err := unix.FcntlInt(uintptr(n), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("flags of rtcr's fd %d: %w", n, err)
	}
	have, want := fl&unix.O_ACCMODE, f.Flags&unix.O_ACCMODE
	if fl&unix.O_PATH != 0 || (want != have && have != unix.O_RDWR) {
		return fmt.Errorf("rtcr's fd %d is open %s, the image's fd %d on it was open %s", n, accessName(fl), f.Num, accessName(f.Flags))
	}
	if len(e.Data) == 0 {
		return nil
	}
	room, err := pipeRoom(n)
	if err != nil {
		return fmt.Errorf("%d bytes were buffered in the pipe at dump, to be put into the inherited fd %d: %w", len(e.Data), n, err)
	}
	if room < len(e.Data) {
		return fmt.Errorf("%d bytes were buffered in the pipe at dump, inherited pipe fd %d has room for %d", len(e.Data), n, room)
	}
	return nil
}

// accessName names the access mode of open flags fl.
func accessName(fl int) string {
	switch {
	case fl&unix.O_PATH != 0:
		return "O_PATH"
	case fl&unix.O_ACCMODE == unix.O_WRONLY:
		return "write-only"
	case fl&unix.O_ACCMODE == unix.O_RDWR:
		return "read-write"
	}
	return "read-only"
}

// pipeRoom returns how many bytes can be written into the pipe at
// rtcr's fd n without blocking.
func pipeRoom(n int) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(n, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return 0, fmt.Errorf("fd %d is not a pipe (mode %#o)", n, st.Mode)
	}
	size, err := unix.FcntlInt(uintptr(n), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return 0, fmt.Errorf("pipe size of fd %d: %w", n, err)
	}
	queued, err := unix.IoctlGetInt(n, unix.TIOCINQ) // FIONREAD
	if err != nil {
		return 0, fmt.Errorf("bytes in pipe fd %d: %w", n, err)
	}
	return size - queued, nil
}

func openExternal(c *restoreCtx, fd *image.FD) (int, error) {
	e := fd.External
	home, ok := c.ext.homes[e.ID]
	if !ok {
		var err error
		if home, err = makeExternal(c, fd); err != nil {
			return -1, fmt.Errorf("%s: %w", e.ID, err)
		}
		c.ext.homes[e.ID] = home
	}
	if g := c.ext.given[e.ID]; !home.fresh && !g.explicit {
		c.keep = true // the restorer's stdio: flags untouched
	}
	if home.fresh {
		c.warnExt(fd, freshWarning(e, fd))
	}
	got, err := takeIn(c, home.pid, home.nsPid, home.fd)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", e.ID, err)
	}
	return got, nil
}

// warnExt passes a warning about fd of the stub of c to the Restorer's
// WarnFunc.
func (c *restoreCtx) warnExt(fd *image.FD, msg string) {
	if c.ext.warn != nil {
		c.ext.warn(c.r.NsPid, fd.Num, fd.External.ID, msg)
	}
}

// freshWarning says what a process sees on an external object that was
// not inherited.
func freshWarning(e *image.External, fd *image.FD) string {
	const pre = "no --inherit-fd for it: "
	switch {
	case e.Type == image.ExtPipe && fd.Flags&unix.O_ACCMODE == unix.O_RDONLY:
		return pre + "a new pipe whose write end is closed (the process reads what was buffered at dump, then end of file)"
	case e.Type == image.ExtPipe:
		return pre + "a new pipe whose read end is closed (writes fail with EPIPE and raise SIGPIPE)"
	case e.SockType == unix.SOCK_DGRAM:
		return pre + "a new datagram socket pair whose other end is closed (the process reads what was queued at dump, then waits; sends fail with ECONNREFUSED)"
	}
	return pre + "a new " + sockTypeName(e.SockType) + " socket pair whose other end is closed (the process reads what was queued at dump, then end of file; writes fail with EPIPE and raise SIGPIPE)"
}

// makeExternal creates external object fd.External in the stub of c and
// returns where it lives. What was buffered comes from the object's first
// fd in the image (the one validation lets hold it), whichever fd of the
// tree is restored first.
func makeExternal(c *restoreCtx, fd *image.FD) (extHome, error) {
	e := c.ext.state[fd.External.ID]
	if e == nil {
		e = fd.External
	}
	home := extHome{pid: c.r.Pid, nsPid: c.r.NsPid}
	if g, ok := c.ext.given[e.ID]; ok {
		if err := fillGiven(c, fd, g); err != nil {
			return home, err
		}
		got, err := giveFd(c, g.fd)
		if err != nil {
			return home, fmt.Errorf("give rtcr's fd %d: %w", g.fd, err)
		}
		home.fd = got
		return home, nil
	}
	home.fresh = true
	var ends [2]int
	var err error
	keep := 0
	if e.Type == image.ExtPipe {
		if fd.Flags&unix.O_ACCMODE != unix.O_RDONLY {
			keep = 1
		}
		ends, err = createPipe(c, &image.FD{PipeSize: e.PipeSize, PipeData: e.Data})
	} else {
		ends, err = createSocketPair(c, e.SockType)
		if err == nil && e.Sock != nil {
			err = restoreSockState(sockHome{pid: c.r.Pid, nsPid: c.r.NsPid, ends: ends}, 0, &image.UnixSock{Type: e.SockType, State: e.Sock})
		}
	}
	if err != nil {
		return home, err
	}
	if err := c.r.Close(ends[1-keep]); err != nil {
		return home, err
	}
	home.fd = ends[keep]
	return home, nil
}

// fillGiven puts what was buffered in external object fd.External into
// the restorer's fd g that it becomes: a pipe's bytes are written into
// it (checked to fit by Externals, for an inherited fd; the restorer's
// stdio is refilled when it is a pipe with room, else a warning says the
// bytes are lost). A socket's queued messages cannot be queued to a
// socket whose peer is not rtcr's: a warning says so; its options are set
// on an inherited socket.
func fillGiven(c *restoreCtx, fd *image.FD, g givenFd) error {
	e := c.ext.state[fd.External.ID]
	if e == nil {
		e = fd.External
	}
	if len(e.Data) > 0 {
		room, err := pipeRoom(g.fd)
		if err == nil && room < len(e.Data) {
			err = fmt.Errorf("it has room for %d", room)
		}
		if err == nil {
			return writePipe(g.fd, e.Data)
		}
		if g.explicit {
			return fmt.Errorf("put back %d buffered bytes: %w", len(e.Data), err)
		}
		c.warnExt(fd, fmt.Sprintf("the %d bytes buffered in the pipe at dump are lost: rtcr's fd %d cannot take them (%v)", len(e.Data), g.fd, err))
		return nil
	}
	st := e.Sock
	if st == nil {
		return nil
	}
	if n := queued(st.Queue); n > 0 {
		c.warnExt(fd, fmt.Sprintf("the %d bytes (%d messages) queued to the socket at dump are lost: rtcr cannot queue them to rtcr's fd %d", n, len(st.Queue), g.fd))
	}
	if !g.explicit {
		return nil
	}
	if dom, err := unix.GetsockoptInt(g.fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_UNIX {
		c.warnExt(fd, fmt.Sprintf("rtcr's fd %d is not a unix socket: the socket's options are not set on it", g.fd))
		return nil
	}
	return setSockOpts(g.fd, st)
}

// queued returns the number of bytes in messages q.
func queued(q [][]byte) int {
	n := 0
	for _, m := range q {
		n += len(m)
	}
	return n
}

// writePipe writes data into the pipe rtcr's fd n is an end of, through a
// write end opened through /proc (n may be the read end).
func writePipe(n int, data []byte) error {
	w, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(n), os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open a write end of rtcr's fd %d: %w", n, err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("write %d buffered bytes into rtcr's fd %d: %w", len(data), n, err)
	}
	return nil
}

// setSockOpts gives socket fd the options of st that a program sees:
// timeouts, SO_PASSCRED and the peek offset (not the buffer sizes, which
// are the inheriting socket's owner's business).
func setSockOpts(fd int, st *image.UnixSockState) error {
	for _, o := range []struct {
		opt int
		us  int64
	}{{unix.SO_SNDTIMEO, st.SndTimeo}, {unix.SO_RCVTIMEO, st.RcvTimeo}} {
		tv := unix.NsecToTimeval(o.us * 1000)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, o.opt, &tv); err != nil {
			return fmt.Errorf("setsockopt timeout %d on rtcr's fd %d: %w", o.opt, fd, err)
		}
	}
	pass := 0
	if st.PassCred {
		pass = 1
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, pass); err != nil {
		return fmt.Errorf("setsockopt SO_PASSCRED on rtcr's fd %d: %w", fd, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, st.PeekOff); err != nil {
		return fmt.Errorf("setsockopt SO_PEEK_OFF %d on rtcr's fd %d: %w", st.PeekOff, fd, err)
	}
	return nil
}
