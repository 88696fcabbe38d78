package files

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The names of the fds no kind claims, for the dump's refusal: the kind
// precisely (a netlink socket and its protocol, a bpf map, a block device
// and its numbers), so a user knows what the program holds that rtcr
// cannot restore.

// anonKinds names the anonymous-inode files rtcr does not restore, by the
// name /proc/PID/fd shows after "anon_inode:".
var anonKinds = map[string]string{
	"[io_uring]":         "io_uring instance",
	"bpf-map":            "bpf map",
	"bpf-prog":           "bpf program",
	"bpf_link":           "bpf link",
	"bpf-link":           "bpf link",
	"bpf_iter":           "bpf iterator",
	"[perf_event]":       "perf event",
	"[userfaultfd]":      "userfaultfd",
	"[pidfd]":            "pidfd",
	"[landlock-ruleset]": "landlock ruleset",
	"[kvm-vm]":           "KVM virtual machine",
	"kvm-vcpu":           "KVM virtual CPU",
	"[dmabuf]":           "dma-buf",
	"[vfio-device]":      "VFIO device",
}

// socketFamilies names socket families (address families, AF_*).
var socketFamilies = map[int]string{
	unix.AF_UNIX: "unix", unix.AF_INET: "IPv4", unix.AF_INET6: "IPv6",
	unix.AF_NETLINK: "netlink", unix.AF_PACKET: "packet", unix.AF_VSOCK: "vsock",
	unix.AF_ALG: "AF_ALG (kernel crypto)", unix.AF_XDP: "XDP", unix.AF_KEY: "PF_KEY",
	unix.AF_BLUETOOTH: "bluetooth", unix.AF_CAN: "CAN", unix.AF_TIPC: "TIPC",
	unix.AF_RDS: "RDS", unix.AF_LLC: "LLC", unix.AF_PPPOX: "PPPoX",
	unix.AF_QIPCRTR: "Qualcomm IPC router", unix.AF_SMC: "SMC", unix.AF_MCTP: "MCTP",
	unix.AF_APPLETALK: "AppleTalk", unix.AF_X25: "X.25", unix.AF_AX25: "AX.25",
	unix.AF_IEEE802154: "IEEE 802.15.4", unix.AF_RXRPC: "RxRPC", unix.AF_KCM: "KCM",
}

// netlinkProtocols names the netlink protocols (NETLINK_*).
var netlinkProtocols = map[int]string{
	unix.NETLINK_ROUTE: "NETLINK_ROUTE", unix.NETLINK_USERSOCK: "NETLINK_USERSOCK",
	unix.NETLINK_FIREWALL: "NETLINK_FIREWALL", unix.NETLINK_SOCK_DIAG: "NETLINK_SOCK_DIAG",
	unix.NETLINK_NFLOG: "NETLINK_NFLOG", unix.NETLINK_XFRM: "NETLINK_XFRM",
	unix.NETLINK_SELINUX: "NETLINK_SELINUX", unix.NETLINK_ISCSI: "NETLINK_ISCSI",
	unix.NETLINK_AUDIT: "NETLINK_AUDIT", unix.NETLINK_FIB_LOOKUP: "NETLINK_FIB_LOOKUP",
	unix.NETLINK_CONNECTOR: "NETLINK_CONNECTOR", unix.NETLINK_NETFILTER: "NETLINK_NETFILTER",
	unix.NETLINK_KOBJECT_UEVENT: "NETLINK_KOBJECT_UEVENT", unix.NETLINK_GENERIC: "NETLINK_GENERIC",
	unix.NETLINK_CRYPTO: "NETLINK_CRYPTO", unix.NETLINK_RDMA: "NETLINK_RDMA",
}

// socketTypes names socket types (SOCK_*).
var socketTypes = map[int]string{
	unix.SOCK_STREAM: "SOCK_STREAM", unix.SOCK_DGRAM: "SOCK_DGRAM", unix.SOCK_RAW: "SOCK_RAW",
	unix.SOCK_SEQPACKET: "SOCK_SEQPACKET", unix.SOCK_RDM: "SOCK_RDM", unix.SOCK_PACKET: "SOCK_PACKET",
}

// nsKinds are the names of namespace files (nsfs) as /proc/PID/fd shows
// them, before ":[inode]".
var nsKinds = []string{"cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
	"time_for_children", "user", "uts"}

// describe names the kind of fd s, which no kind claimed, for the
// dump's refusal.
func describe(s *fdState) string {
	switch mode := s.st.Mode & unix.S_IFMT; {
	case strings.HasPrefix(s.link, "socket:"):
		return describeSocket(s)
	case strings.HasPrefix(s.link, "pipe:"):
		return "pipes"
	case strings.HasPrefix(s.link, "anon_inode:"):
		name := strings.TrimPrefix(s.link, "anon_inode:")
		if k, ok := anonKinds[name]; ok {
			return k
		}
		return fmt.Sprintf("anonymous-inode file %s", name)
	case mode == unix.S_IFBLK:
		return fmt.Sprintf("block device %d:%d", unix.Major(s.st.Rdev), unix.Minor(s.st.Rdev))
	case mode == unix.S_IFCHR:
		return fmt.Sprintf("character device %d:%d (not one of %s)", unix.Major(s.st.Rdev), unix.Minor(s.st.Rdev), strings.Join(deviceNames(), ", "))
	}
	if name, _, ok := strings.Cut(s.link, ":["); ok {
		for _, ns := range nsKinds {
			if name == ns {
				return fmt.Sprintf("%s namespace file", name)
			}
		}
	}
	return "this file type"
}

// deviceNames lists the devices pathKind reopens, sorted.
func deviceNames() []string {
	names := make([]string, 0, len(statelessDevices))
	for n := range statelessDevices {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// describeSocket names a socket by its family, type and protocol
// (SO_DOMAIN, SO_TYPE, SO_PROTOCOL, asked on a pidfd_getfd copy).
func describeSocket(s *fdState) string {
	dup, err := s.copy()
	if err != nil {
		return "socket"
	}
	defer unix.Close(dup)
	fam, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return "socket"
	}
	typ, terr := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TYPE)
	proto, perr := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	typeName := socketTypes[typ]
	if terr != nil || typeName == "" {
		typeName = fmt.Sprintf("type %d", typ)
	}
	famName, known := socketFamilies[fam]
	if !known {
		famName = "unknown family"
	}
	switch {
	case fam == unix.AF_NETLINK && perr == nil:
		p := netlinkProtocols[proto]
		if p == "" {
			p = "unknown"
		}
		return fmt.Sprintf("netlink socket (family %d, protocol %d %s)", fam, proto, p)
	case (fam == unix.AF_INET || fam == unix.AF_INET6) && perr == nil:
		switch {
		case typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP:
			return fmt.Sprintf("TCP %s socket", famName)
		case typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
			return fmt.Sprintf("UDP %s socket", famName)
		case typ == unix.SOCK_DGRAM && (proto == unix.IPPROTO_ICMP || proto == unix.IPPROTO_ICMPV6):
			return fmt.Sprintf("ICMP (ping) %s socket", famName)
		case typ == unix.SOCK_RAW:
			return fmt.Sprintf("raw %s socket (protocol %d)", famName, proto)
		}
		return fmt.Sprintf("%s socket (family %d, %s, protocol %d)", famName, fam, typeName, proto)
	}
	return fmt.Sprintf("%s socket (family %d, %s)", famName, fam, typeName)
}
