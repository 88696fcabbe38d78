package image

// The state of fd kinds that are objects of their own: pseudo-terminal
// pairs, file locks, SIGIO owners, unix sockets and external objects.

// Pty is one end of a pseudo-terminal pair: the pair's number at dump
// (/dev/pts/Index, whose device number Rdev is a process's Tty when the
// pair is its controlling terminal), whether this is the master and, on
// the first fd of the tree on the pair only, the pair's state.
type Pty struct {
	Index  int
	Rdev   uint64
	Master bool      `json:",omitempty"`
	State  *PtyState `json:",omitempty"`
}

// PtyState is what a pseudo-terminal pair holds: the slave's termios
// (struct termios of TCGETS), its window size (TIOCGWINSZ: rows, columns,
// x and y pixels), whether the slave is locked (TIOCGPTLCK), packet mode
// (TIOCGPKT), the bytes the slave side wrote that the master has not
// read yet, and the input the slave side has not read.
type PtyState struct {
	Iflag, Oflag, Cflag, Lflag uint32
	Line                       uint8
	Cc                         []byte
	Ispeed, Ospeed             uint32
	Winsize                    [4]uint16
	Locked, Packet             bool   `json:",omitempty"`
	Output                     []byte `json:",omitempty"`
	// Input are the bytes written to the master that the slave side
	// has not read yet (in canonical mode whole lines only, a NUL standing
	// for an end-of-file character).
	Input []byte `json:",omitempty"`
	// Owner is the slave's owner and permission bits (/dev/pts/N, which
	// a program may fchown or fchmod); nil in images of earlier versions.
	Owner *PtyOwner `json:",omitempty"`
}

// PtyOwner is the owner and permission bits (mode & 07777) of a pty
// slave's device node.
type PtyOwner struct {
	UID, GID uint32
	Mode     uint32
}

// File lock kinds.
const (
	LockFlock = "flock" // flock(2)
	LockPosix = "posix" // fcntl F_SETLK, owned by the process
	LockOFD   = "ofd"   // fcntl F_OFD_SETLK, owned by the open file description
	LockLease = "lease" // fcntl F_SETLEASE, held by the open file description
)

// FileLock is one advisory lock held through an fd: its kind (Lock*),
// whether it is a write (exclusive) lock or lease, and for POSIX and OFD
// locks the byte range (Len 0: from Start to the end of the file and beyond).
type FileLock struct {
	Kind       string
	Write      bool
	Start, Len int64 `json:",omitempty"`
}

// FDOwner is an fd's F_GETOWN_EX owner: Type is F_OWNER_TID (0),
// F_OWNER_PID (1) or F_OWNER_PGRP (2); Pid is a thread, process or process
// group id of the tree, 0 when the owner has exited.
type FDOwner struct {
	Type int
	Pid  int
}

// UnixSock is one end of an AF_UNIX socket pair: its inode and its
// peer's at dump (the fds on one inode are one socket), its type
// (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) and, on the first fd of the
// tree on it only, its state.
type UnixSock struct {
	Ino, Peer uint64
	Type      int
	State     *UnixSockState `json:",omitempty"`
	// Addr is the socket's own name (nil: unnamed); PeerAddr its peer's
	// (FDUnixPair: the other end's; FDUnix: the named socket a datagram
	// socket is connected to, Peer its inode, 0 when it is outside the
	// tree).
	Addr     *UnixAddr `json:",omitempty"`
	PeerAddr *UnixAddr `json:",omitempty"`
	// Accepted, for a stream or seqpacket pair whose ends both have a
	// name, is the end (Ino or Peer) that has its name from a listener
	// still listening at dump; 0: unknown.
	Accepted uint64 `json:",omitempty"`
	// Listen: a listening socket, with its listen(2) backlog and, in
	// order, the inodes of the clients (held in the tree) of the
	// connections waiting to be accepted.
	Listen  bool     `json:",omitempty"`
	Backlog int      `json:",omitempty"`
	Pending []uint64 `json:",omitempty"`
	// PendingOn is, for such a client, its listener's inode (PeerAddr
	// its name).
	PendingOn uint64 `json:",omitempty"`
	// PeerClosed marks a connected stream or seqpacket socket whose peer
	// was closed (shut down both ways, no peer left).
	PeerClosed bool `json:",omitempty"`
}

// UnixAddr is the name of an AF_UNIX socket.
type UnixAddr struct {
	// Name is sun_path as bound: a path, absolute or relative to Dir, or,
	// with a leading NUL byte, an abstract name.
	Name []byte
	// Path is a path name's socket file as an absolute clean path; Dir,
	// for a relative Name, the directory it was bound in (the process's
	// working directory at dump).
	Path string `json:",omitempty"`
	Dir  string `json:",omitempty"`
	// Ino, Mode, Uid, Gid: the socket file's inode, permission bits and
	// owner at dump.
	Ino      uint64 `json:",omitempty"`
	Mode     uint32 `json:",omitempty"`
	Uid, Gid uint32
}

// Abstract reports whether a is an abstract name.
func (a *UnixAddr) Abstract() bool { return len(a.Name) > 0 && a.Name[0] == 0 }

// UnixSockState is what one socket of a pair holds: the messages queued
// to it, unread (for SOCK_STREAM one run of bytes), and its options.
// Timeouts are in microseconds (0: none); PeekOff is SO_PEEK_OFF (-1: off).
type UnixSockState struct {
	Queue          [][]byte `json:",omitempty"`
	PassCred       bool     `json:",omitempty"`
	SndBuf, RcvBuf int
	SndTimeo       int64 `json:",omitempty"`
	RcvTimeo       int64 `json:",omitempty"`
	PeekOff        int
	// PassSec and PassPidfd are SO_PASSSEC and SO_PASSPIDFD; NoPassRights
	// is SO_PASSRIGHTS turned off.
	PassSec      bool `json:",omitempty"`
	PassPidfd    bool `json:",omitempty"`
	NoPassRights bool `json:",omitempty"`
	// Shutdown is the socket's own shutdown state (sock_diag
	// UNIX_DIAG_SHUTDOWN): 1 receive, 2 send, 3 both shut down.
	Shutdown int `json:",omitempty"`
}

// External pipe and socket types.
const (
	ExtPipe   = "pipe"
	ExtSocket = "socket"
)

// External is a pipe or AF_UNIX socket whose other end was outside the
// tree. ID names it for people and for --inherit-fd: "pipe:[Ino]" or
// "socket:[Ino]", as /proc/PID/fd shows it (and CRIU names it). Every fd
// of the tree with one ID is one object on restore.
type External struct {
	ID   string
	Type string // ExtPipe or ExtSocket
	Ino  uint64
	// PipeSize is a pipe's capacity; Data, on the first fd of the tree
	// with the ID only, the bytes buffered in a pipe whose read end the
	// tree held (for the tree to read).
	PipeSize int    `json:",omitempty"`
	Data     []byte `json:",omitempty"`
	// SockType is a socket's SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET;
	// Sock, on the first fd of the tree with the ID only, its options and
	// the messages queued to it.
	SockType int            `json:",omitempty"`
	Sock     *UnixSockState `json:",omitempty"`
}
