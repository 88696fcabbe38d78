package files

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ptsMajor is the major device number of every pty slave
// (UNIX98_PTY_SLAVE_MAJOR); the minor is the pair's number.
const ptsMajor = 136

// ptyKind covers pseudo-terminal pairs whose master is held in the tree:
// the master (an open of /dev/ptmx, fdinfo "tty-index") and the slaves
// (/dev/pts/N of the same devpts). The pair's state is saved once, with
// the first fd of the tree on it, read on a copy of the master (termios
// ioctls on a master act on its slave): termios, window size, lock and
// packet mode, the slave's owner and mode (a program may fchown it), and
// the bytes the slave side wrote that the master has not read, which are
// read and at once written back through the slave with output processing off (a tty cannot be peeked). Input the master wrote
// that the slave side has not read yet is saved the same way (writeInput),
// in canonical mode read with ICANON off for the moment (drainCanonical)
// and written back as lines; a partial line there is refused. A slave at fds 0-2
// whose master is outside the tree is left to inheritKind (tried after
// this one); elsewhere it is refused.
//
// Restore creates a new pair (its number may differ: ptsname changes) in
// the first process that has an end, or earlier for the session leader
// whose controlling terminal it was (ControllingPty), keeping master and
// slave as helper fds there until Sweep: every master fd is a copy of the
// helper (one open file description), every slave fd a new open of the
// slave through /proc.
var ptyKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.st.Mode&unix.S_IFMT != unix.S_IFCHR {
			return image.FD{}, false, nil
		}
		fd := image.FD{Flags: s.info.Flags, Desc: s.link}
		switch {
		case s.link == "/dev/ptmx" || s.link == "/dev/pts/ptmx":
			idx, err := strconv.Atoi(s.info.Extra["tty-index"])
			if err != nil {
				return image.FD{}, false, fmt.Errorf("pty master without a tty-index in fdinfo: %w", errBadFdinfo)
			}
			fd.Pty = &image.Pty{Index: idx, Rdev: unix.Mkdev(ptsMajor, uint32(idx)), Master: true}
		case unix.Major(s.st.Rdev) == ptsMajor && strings.HasPrefix(s.link, "/dev/pts/") && s.st.Dev == s.tree.ptsDev:
			idx := int(unix.Minor(s.st.Rdev))
			if _, ok := s.tree.ptyMasters[idx]; !ok {
				if s.num <= 2 {
					return image.FD{}, false, nil // a terminal rtcr restore hands over
				}
				return image.FD{}, false, fmt.Errorf("pty slave %s whose master is outside the tree: %w", s.link, ErrUnsupported)
			}
			fd.Pty = &image.Pty{Index: idx, Rdev: s.st.Rdev}
		default:
			return image.FD{}, false, nil
		}
		if s.tree.ptySaved[fd.Pty.Index] {
			return fd, true, nil
		}
		s.tree.ptySaved[fd.Pty.Index] = true
		st, err := dumpPty(s.tree.ptyMasters[fd.Pty.Index], s.tree.ptySlaves[fd.Pty.Index])
		if err != nil {
			return image.FD{}, false, fmt.Errorf("pty %d: %w", fd.Pty.Index, err)
		}
		fd.Pty.State = st
		return fd, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		home, err := c.ptyHome(fd.Pty.Index)
		if err != nil {
			return -1, err
		}
		if fd.Pty.Master {
			return takeIn(c, home.pid, home.nspid, home.master)
		}
		path := fmt.Sprintf("/proc/%d/fd/%d", home.pid, home.slave)
		got, err := c.r.OpenAt(path, fd.Flags&unix.O_ACCMODE|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return -1, fmt.Errorf("open the new pty slave: %w", err)
		}
		return got, nil
	},
	fields: []string{"tty-index"},
}

// findPtys records the pty masters the processes pids hold, by pair
// number, and the devpts their slaves live on.
func (t *Tree) findPtys(pids []int) error {
	t.ptyMasters, t.ptySaved, t.ptySlaves = map[int]fdRef{}, map[int]bool{}, map[int]bool{}
	var st unix.Stat_t
	if err := unix.Stat("/dev/pts", &st); err == nil {
		t.ptsDev = st.Dev
	}
	for _, pid := range pids {
		fds, err := t.fdLinks(pid)
		if err != nil {
			return err
		}
		for _, fd := range fds {
			n, link := fd.num, fd.link
			if idx, ok := strings.CutPrefix(link, "/dev/pts/"); ok && idx != "ptmx" {
				if i, err := strconv.Atoi(idx); err == nil {
					t.ptySlaves[i] = true
				}
				continue
			}
			if link != "/dev/ptmx" && link != "/dev/pts/ptmx" {
				continue
			}
			info, err := procfs.ReadFDInfo(pid, n)
			if err != nil {
				return fmt.Errorf("fd %d of %d: %w", n, pid, err)
			}
			if idx, err := strconv.Atoi(info.Extra["tty-index"]); err == nil {
				if _, ok := t.ptyMasters[idx]; !ok {
					t.ptyMasters[idx] = fdRef{pid, n}
				}
			}
		}
	}
	return nil
}

// dumpPty reads the state of the pty pair whose master is fd m.num of
// process m.pid, on rtcr's copies of the master and of a new open of its
// slave (TIOCGPTPEER). Unless the tree holds a slave (slaves), the slave
// must have been closed (the master polls POLLHUP): one open outside the
// tree, or never opened yet, is refused.
func dumpPty(m fdRef, slaves bool) (*image.PtyState, error) {
	master, err := getfd(m.pid, m.num)
	if err != nil {
		return nil, err
	}
	defer unix.Close(master)
	if !slaves {
		p := []unix.PollFd{{Fd: int32(master), Events: unix.POLLIN}}
		if _, err := unix.Poll(p, 0); err != nil {
			return nil, fmt.Errorf("poll the master: %w", err)
		}
		if p[0].Revents&unix.POLLHUP == 0 {
			return nil, fmt.Errorf("no process of the tree holds its slave, which is open outside the tree or was never opened: %w", ErrUnsupported)
		}
	}
	peer, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if errno != 0 {
		return nil, fmt.Errorf("open the slave (TIOCGPTPEER): %w", errno)
	}
	slave := int(peer)
	defer unix.Close(slave)
	tio, err := unix.IoctlGetTermios(master, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("TCGETS: %w", err)
	}
	var sst unix.Stat_t
	if err := unix.Fstat(slave, &sst); err != nil {
		return nil, fmt.Errorf("stat the slave: %w", err)
	}
	ws, err := unix.IoctlGetWinsize(master, unix.TIOCGWINSZ)
	if err != nil {
		return nil, fmt.Errorf("TIOCGWINSZ: %w", err)
	}
	st := &image.PtyState{Iflag: tio.Iflag, Oflag: tio.Oflag, Cflag: tio.Cflag, Lflag: tio.Lflag, Line: tio.Line,
		Cc: append([]byte(nil), tio.Cc[:]...), Ispeed: tio.Ispeed, Ospeed: tio.Ospeed,
		Winsize: [4]uint16{ws.Row, ws.Col, ws.Xpixel, ws.Ypixel},
		Owner:   &image.PtyOwner{UID: sst.Uid, GID: sst.Gid, Mode: sst.Mode & 0o7777}}
	ints := []struct {
		fd   int
		req  uint
		name string
		v    int
	}{{master, unix.TIOCGPTLCK, "TIOCGPTLCK", 0}, {master, unix.TIOCGPKT, "TIOCGPKT", 0},
		{slave, unix.TIOCGETD, "TIOCGETD", 0}, {slave, unix.TIOCGEXCL, "TIOCGEXCL", 0},
		{slave, unix.TIOCINQ, "FIONREAD on the slave", 0}, {master, unix.TIOCINQ, "FIONREAD on the master", 0}}
	for i := range ints {
		if ints[i].v, err = unix.IoctlGetInt(ints[i].fd, ints[i].req); err != nil {
			return nil, fmt.Errorf("%s: %w", ints[i].name, err)
		}
	}
	st.Locked, st.Packet = ints[0].v != 0, ints[1].v != 0
	switch {
	case ints[2].v != 0:
		return nil, fmt.Errorf("line discipline %d (TIOCGETD), only N_TTY is restored: %w", ints[2].v, ErrUnsupported)
	case ints[3].v != 0:
		return nil, fmt.Errorf("exclusive mode (TIOCEXCL): %w", ErrUnsupported)
	case ints[5].v != 0 && st.Packet:
		return nil, fmt.Errorf("%d bytes buffered for the master in packet mode (TIOCPKT): %w", ints[5].v, ErrUnsupported)
	}
	switch {
	case tio.Lflag&unix.ICANON != 0:
		// FIONREAD counts complete lines only: a partial line is seen
		// with ICANON off.
		if st.Input, err = drainCanonical(master, slave, tio); err != nil {
			return nil, err
		}
	case ints[4].v != 0:
		if st.Input, err = drainInput(master, slave, tio); err != nil {
			return nil, err
		}
	}
	if ints[5].v != 0 {
		if st.Output, err = drainPty(master, slave, tio); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// drainInput reads the bytes the slave side of a pty in non-canonical
// mode has not read yet (on slave, rtcr's own non-blocking open of it) and
// writes them back through master (writeInput).
func drainInput(master, slave int, tio *unix.Termios) ([]byte, error) {
	in, err := readInput(slave)
	if err != nil {
		return nil, err
	}
	if err := writeInput(master, slave, tio, in, false); err != nil {
		return nil, fmt.Errorf("put %d bytes of input back into the pty (they are lost): %w", len(in), err)
	}
	return in, nil
}

// readInput reads every byte the slave side can read now (slave is
// non-blocking).
func readInput(slave int) ([]byte, error) {
	var in []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(slave, buf)
		if errors.Is(err, unix.EAGAIN) || err == nil && n == 0 {
			return in, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the slave's unread input: %w", err)
		}
		in = append(in, buf[:n]...)
	}
}

// drainCanonical reads the input of a pty in canonical mode that the
// slave side has not read yet: with ICANON off for the time of the read
// (VMIN and VTIME 0), every byte of the line buffer can be read, a
// partial line too, in order. The bytes are written back with tio
// (canonical) again by writeInput, which makes the lines lines again.
// Refused, once they are back: input canonInput refuses (a partial line,
// a character line editing would act on).
func drainCanonical(master, slave int, tio *unix.Termios) ([]byte, error) {
	// FIONREAD in canonical mode does not count the end-of-file
	// characters of the buffer (each a NUL there, ending a line), and
	// counts a NUL received as input: it tells which the NULs read are.
	lines, err := unix.IoctlGetInt(slave, unix.TIOCINQ)
	if err != nil {
		return nil, fmt.Errorf("FIONREAD: %w", err)
	}
	raw := *tio
	raw.Lflag &^= unix.ICANON
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 0, 0
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, &raw); err != nil {
		return nil, fmt.Errorf("TCSETS (ICANON off): %w", err)
	}
	in, rerr := readInput(slave)
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, tio); err != nil {
		return nil, fmt.Errorf("TCSETS (ICANON on again; %d bytes of input lost): %w", len(in), err)
	}
	end := lineEnd(in)
	nuls := strings.Count(string(in[:end]), "\x00")
	eof := lines == end-nuls
	if len(in) > 0 {
		if err := writeInput(master, slave, tio, in, eof); err != nil {
			return nil, fmt.Errorf("put %d bytes of input back into the pty (they are lost): %w", len(in), err)
		}
	}
	if rerr != nil {
		return nil, rerr
	}
	if !eof {
		return nil, fmt.Errorf("%d bytes written to the master not yet read by the slave side, in canonical mode: NUL bytes received as input (FIONREAD %d): %w", len(in), lines, ErrUnsupported)
	}
	if err := canonInput(tio, in); err != nil {
		return nil, fmt.Errorf("%d bytes written to the master not yet read by the slave side, in canonical mode: %w: %w", len(in), err, ErrUnsupported)
	}
	if len(in) > image.MaxMemfdData {
		return nil, fmt.Errorf("more than %d bytes of unread input: %w", image.MaxMemfdData, ErrUnsupported)
	}
	return in, nil
}

// lineEnd returns the length of the complete lines of canonical input
// in: up to its last newline or NUL (an end-of-file character).
func lineEnd(in []byte) int {
	for i := len(in) - 1; i >= 0; i-- {
		if in[i] == '\n' || in[i] == 0 {
			return i + 1
		}
	}
	return 0
}

// canonInput checks input saved of a pty in canonical mode (termios
// tio), where a NUL stands for an end-of-file character: writing it back
// with ICANON on rebuilds its lines only if it is whole lines, each
// ending in a newline or an end-of-file character (which needs VEOF),
// with none of the characters canonical input acts on with IEXTEN off
// (VEOF, VEOL, VEOL2, VERASE, VKILL) as input.
func canonInput(tio *unix.Termios, in []byte) error {
	if len(in) == 0 {
		return nil
	}
	if end := lineEnd(in); end < len(in) {
		return fmt.Errorf("a partial line of %d bytes (not ended yet)", len(in)-end)
	}
	for i, b := range in {
		if b == 0 && tio.Cc[unix.VEOF] == 0 {
			return fmt.Errorf("an end-of-file character at byte %d without VEOF", i)
		}
		for _, c := range []int{unix.VEOF, unix.VEOL, unix.VEOL2, unix.VERASE, unix.VKILL} {
			if tio.Cc[c] != 0 && b == tio.Cc[c] {
				return fmt.Errorf("control character %#x (c_cc[%d]) at byte %d", b, c, i)
			}
		}
	}
	return nil
}

// writeInput writes data through the master of a pty to its slave side
// as input, unprocessed (in canonical mode, lines are lines again): the slave's termios has
// input processing, echo and signal characters off until the kernel has
// queued every byte (its input is processed later, by a work queue, with
// the termios of that moment), then gets tio again.
func writeInput(master, slave int, tio *unix.Termios, data []byte, eof bool) error {
	if len(data) == 0 {
		return nil
	}
	before, err := unix.IoctlGetInt(slave, unix.TIOCINQ)
	if err != nil {
		return fmt.Errorf("FIONREAD: %w", err)
	}
	// FIONREAD counts what can be read: in canonical mode the complete
	// lines (what follows the last line end is a partial line, only put
	// back before a refusal), without their end-of-file characters.
	want := len(data)
	if tio.Lflag&unix.ICANON != 0 {
		want = lineEnd(data)
		if eof && tio.Cc[unix.VEOF] != 0 {
			want -= strings.Count(string(data[:want]), "\x00")
			data = []byte(strings.ReplaceAll(string(data), "\x00", string(tio.Cc[unix.VEOF])))
		}
	}
	raw := *tio
	raw.Iflag = 0
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ISIG | unix.IEXTEN
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, &raw); err != nil {
		return fmt.Errorf("TCSETS: %w", err)
	}
	defer unix.IoctlSetTermios(slave, unix.TCSETS, tio)
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(master, rest)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		rest = rest[n:]
	}
	deadline := time.Now().Add(inputWait)
	for {
		n, err := unix.IoctlGetInt(slave, unix.TIOCINQ)
		if err != nil {
			return fmt.Errorf("FIONREAD: %w", err)
		}
		if n >= before+want {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d bytes arrived within %v", n-before, want, inputWait)
		}
		time.Sleep(time.Millisecond)
	}
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, tio); err != nil {
		return fmt.Errorf("TCSETS: %w", err)
	}
	return nil
}

// inputWait bounds the wait for the kernel to queue input written to a
// pty master (a busy machine delays its work queue).
const inputWait = 10 * time.Second

// drainPty reads the bytes buffered for the master of a pty pair and
// writes them back through slave with output processing (OPOST) off, so
// the master finds them again as they were; tio is the slave's termios,
// set again after.
func drainPty(master, slave int, tio *unix.Termios) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.IoctlGetInt(master, unix.TIOCINQ)
		if err != nil {
			return nil, fmt.Errorf("FIONREAD on the master: %w", err)
		}
		if n == 0 {
			break
		}
		if len(out)+n > image.MaxMemfdData {
			return nil, fmt.Errorf("more than %d bytes buffered for the master: %w", image.MaxMemfdData, ErrUnsupported)
		}
		got, err := unix.Read(master, buf[:min(n, len(buf))])
		if err != nil {
			return nil, fmt.Errorf("read the master's buffered bytes: %w", err)
		}
		out = append(out, buf[:got]...)
	}
	if err := writeRaw(slave, tio, out); err != nil {
		return nil, fmt.Errorf("put %d bytes back into the pty (they are lost): %w", len(out), err)
	}
	return out, nil
}

// writeRaw writes data through the slave of a pty with output processing
// off, then gives it termios tio.
func writeRaw(slave int, tio *unix.Termios, data []byte) error {
	raw := *tio
	raw.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, &raw); err != nil {
		return fmt.Errorf("TCSETS: %w", err)
	}
	for len(data) > 0 {
		n, err := unix.Write(slave, data)
		if err != nil {
			_ = unix.IoctlSetTermios(slave, unix.TCSETS, tio)
			return fmt.Errorf("write: %w", err)
		}
		data = data[n:]
	}
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, tio); err != nil {
		return fmt.Errorf("TCSETS: %w", err)
	}
	return nil
}

// ptyPair is a recreated pty pair: the helper fds of its master and slave
// in the stub pid (nspid: its pid as the stubs see it).
type ptyPair struct {
	pid, nspid    int
	master, slave int
}

// ptyHome returns the recreated pair of the image's pair idx, creating it
// in the stub of c if it does not exist yet.
func (c *restoreCtx) ptyHome(idx int) (ptyPair, error) {
	if home, ok := c.ptys[idx]; ok {
		return home, nil
	}
	st := c.ptyStates[idx]
	if st == nil {
		return ptyPair{}, fmt.Errorf("pty %d without its state (see PreparePtys): %w", idx, image.ErrCorrupt)
	}
	home, err := createPty(c, st)
	if err != nil {
		return ptyPair{}, fmt.Errorf("create pty pair for pty %d: %w", idx, err)
	}
	c.ptys[idx] = home
	return home, nil
}

// createPty makes a pty pair in the stub of c, master and slave as helper
// fds above every image fd, and gives it the state st.
func createPty(c *restoreCtx, st *image.PtyState) (ptyPair, error) {
	r := c.r
	home := ptyPair{pid: r.Pid, nspid: r.NsPid}
	m, err := r.OpenAt("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return home, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if home.master, err = moveHigh(c, m); err != nil {
		return home, err
	}
	zero, err := r.Put(ptrace.ArgOff, make([]byte, 4))
	if err != nil {
		return home, err
	}
	if _, err := r.Syscall(unix.SYS_IOCTL, uint64(home.master), unix.TIOCSPTLCK, zero); err != nil {
		return home, fmt.Errorf("unlock (TIOCSPTLCK): %w", err)
	}
	s, err := r.Syscall(unix.SYS_IOCTL, uint64(home.master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if err != nil {
		return home, fmt.Errorf("open the slave (TIOCGPTPEER): %w", err)
	}
	if home.slave, err = moveHigh(c, int(s)); err != nil {
		return home, err
	}
	master, err := getfd(r.Pid, home.master)
	if err != nil {
		return home, err
	}
	defer unix.Close(master)
	slave, err := getfd(r.Pid, home.slave)
	if err != nil {
		return home, err
	}
	defer unix.Close(slave)
	if o := st.Owner; o != nil {
		// The stub opened /dev/ptmx as rtcr: the slave is rtcr's
		// until given its owner and mode back.
		if err := unix.Fchown(slave, int(o.UID), int(o.GID)); err != nil {
			return home, fmt.Errorf("chown the slave to %d:%d: %w", o.UID, o.GID, err)
		}
		if err := unix.Fchmod(slave, o.Mode); err != nil {
			return home, fmt.Errorf("chmod the slave to %#o: %w", o.Mode, err)
		}
	}
	tio := &unix.Termios{Iflag: st.Iflag, Oflag: st.Oflag, Cflag: st.Cflag, Lflag: st.Lflag, Line: st.Line, Ispeed: st.Ispeed, Ospeed: st.Ospeed}
	copy(tio.Cc[:], st.Cc)
	if err := writeRaw(slave, tio, st.Output); err != nil {
		return home, fmt.Errorf("termios and %d buffered bytes: %w", len(st.Output), err)
	}
	if tio.Lflag&unix.ICANON != 0 {
		if err := canonInput(tio, st.Input); err != nil {
			return home, fmt.Errorf("%d bytes of unread input in canonical mode: %w: %w", len(st.Input), err, image.ErrCorrupt)
		}
	}
	if err := writeInput(master, slave, tio, st.Input, true); err != nil {
		return home, fmt.Errorf("%d bytes of unread input: %w", len(st.Input), err)
	}
	ws := unix.Winsize{Row: st.Winsize[0], Col: st.Winsize[1], Xpixel: st.Winsize[2], Ypixel: st.Winsize[3]}
	if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, &ws); err != nil {
		return home, fmt.Errorf("TIOCSWINSZ: %w", err)
	}
	for _, set := range []struct {
		on   bool
		req  uint
		name string
	}{{st.Packet, unix.TIOCPKT, "TIOCPKT"}, {st.Locked, unix.TIOCSPTLCK, "TIOCSPTLCK"}} {
		if set.on {
			if err := unix.IoctlSetPointerInt(master, set.req, 1); err != nil {
				return home, fmt.Errorf("%s: %w", set.name, err)
			}
		}
	}
	return home, nil
}

// moveHigh moves fd tmp of the stub of c above every image fd.
func moveHigh(c *restoreCtx, tmp int) (int, error) {
	high, err := c.r.Syscall(unix.SYS_FCNTL, uint64(tmp), unix.F_DUPFD_CLOEXEC, uint64(c.tempBase))
	if err != nil {
		return -1, fmt.Errorf("move fd %d: %w", tmp, err)
	}
	return int(high), c.r.Close(tmp)
}

// PreparePtys indexes the pty pairs of the processes procs, so that a
// pair can be created by whichever process needs it first.
func (rs *Restorer) PreparePtys(procs []image.Process) {
	for i := range procs {
		for _, fd := range procs[i].FDs {
			if fd.Kind == image.FDPty && fd.Pty != nil && fd.Pty.State != nil {
				rs.ptyStates[fd.Pty.Index] = fd.Pty.State
				rs.ptyRdevs[fd.Pty.Rdev] = fd.Pty.Index
			}
		}
	}
}

// ErrNoPty says a controlling terminal is not a pty pair of the image.
var ErrNoPty = errors.New("not a pty pair of the image")

// ControllingPty makes the pty pair of the image whose slave was the
// device tty the controlling terminal of the stub r, a session leader
// with the image fds fds: the pair is created in it (unless it exists
// already) and TIOCSCTTY is injected on the slave. It returns the fd of
// the slave in the stub (a helper fd, closed by Sweep), or ErrNoPty.
func (rs *Restorer) ControllingPty(r *ptrace.Remote, fds []image.FD, tty uint64) (int, error) {
	idx, ok := rs.ptyRdevs[tty]
	if !ok {
		return -1, ErrNoPty
	}
	c := &restoreCtx{r: r, Restorer: rs}
	for _, fd := range fds {
		c.tempBase = max(c.tempBase, fd.Num+1)
	}
	if err := raiseNofile(r.Pid, c.tempBase); err != nil {
		return -1, err
	}
	home, err := c.ptyHome(idx)
	if err != nil {
		return -1, err
	}
	slave := home.slave
	if home.pid != r.Pid {
		if slave, err = r.OpenAt(fmt.Sprintf("/proc/%d/fd/%d", home.pid, home.slave), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err != nil {
			return -1, fmt.Errorf("open the new pty slave: %w", err)
		}
		if slave, err = moveHigh(c, slave); err != nil {
			return -1, err
		}
	}
	if _, err := r.Syscall(unix.SYS_IOCTL, uint64(slave), unix.TIOCSCTTY, 0); err != nil {
		return -1, fmt.Errorf("make pty %d the controlling terminal (TIOCSCTTY): %w", idx, err)
	}
	return slave, nil
}
