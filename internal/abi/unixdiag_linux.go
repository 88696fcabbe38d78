package abi

// sock_diag request for AF_UNIX sockets (include/uapi/linux/sock_diag.h,
// include/uapi/linux/unix_diag.h).
const (
	SOCK_DIAG_BY_FAMILY = 20

	UDIAG_SHOW_NAME    = 0x01
	UDIAG_SHOW_VFS     = 0x02
	UDIAG_SHOW_PEER    = 0x04
	UDIAG_SHOW_ICONS   = 0x08
	UDIAG_SHOW_RQLEN   = 0x10
	UDIAG_SHOW_MEMINFO = 0x20
	UDIAG_SHOW_UID     = 0x40

	UNIX_DIAG_NAME     = 0
	UNIX_DIAG_VFS      = 1
	UNIX_DIAG_PEER     = 2
	UNIX_DIAG_ICONS    = 3
	UNIX_DIAG_RQLEN    = 4
	UNIX_DIAG_MEMINFO  = 5
	UNIX_DIAG_SHUTDOWN = 6
	UNIX_DIAG_UID      = 7

	// TCP_ESTABLISHED and TCP_LISTEN are the socket states unix_diag
	// reports for connected and listening sockets (include/net/tcp_states.h).
	TCP_ESTABLISHED = 1
	TCP_LISTEN      = 10
)

// UnixDiagReq is struct unix_diag_req.
type UnixDiagReq struct {
	Family   uint8
	Protocol uint8
	Pad      uint16
	States   uint32
	Ino      uint32
	Show     uint32
	Cookie   [2]uint32
}

// UnixDiagMsg is struct unix_diag_msg.
type UnixDiagMsg struct {
	Family uint8
	Type   uint8
	State  uint8
	Pad    uint8
	Ino    uint32
	Cookie [2]uint32
}

// UnixDiagRqlen is struct unix_diag_rqlen.
type UnixDiagRqlen struct {
	Rqueue uint32
	Wqueue uint32
}

// UnixDiagVfs is struct unix_diag_vfs: the device (the kernel's dev_t,
// major << 20 | minor) and inode of a bound socket's file.
type UnixDiagVfs struct {
	Ino uint32
	Dev uint32
}
