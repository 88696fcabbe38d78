package abi

// sock_diag of TCP sockets (include/uapi/linux/inet_diag.h).
const (
	// TCP_SYN_RECV is the state inet_diag reports for a connection
	// whose handshake is under way (a request socket of a listener).
	TCP_SYN_RECV = 3
	// TCP_NEW_SYN_RECV is the kernel's own state of such a request.
	TCP_NEW_SYN_RECV = 12
)

// InetDiagSockID is struct inet_diag_sockid. Ports and addresses are in
// network byte order.
type InetDiagSockID struct {
	Sport  [2]byte
	Dport  [2]byte
	Src    [16]byte
	Dst    [16]byte
	If     uint32
	Cookie [2]uint32
}

// InetDiagReqV2 is struct inet_diag_req_v2.
type InetDiagReqV2 struct {
	Family   uint8
	Protocol uint8
	Ext      uint8
	Pad      uint8
	States   uint32
	ID       InetDiagSockID
}

// InetDiagMsg is struct inet_diag_msg. For a listening socket Rqueue is
// the length of its accept queue and Wqueue its backlog.
type InetDiagMsg struct {
	Family  uint8
	State   uint8
	Timer   uint8
	Retrans uint8
	ID      InetDiagSockID
	Expires uint32
	Rqueue  uint32
	Wqueue  uint32
	UID     uint32
	Inode   uint32
}
