package netlock

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The drain table of a dump holds back new TCP connections to the
// tree's listening sockets while the programs accept the ones already
// queued (a connection waiting in an accept queue cannot be saved: no
// kernel interface puts one back). It drops only the incoming SYNs that
// open a connection (syn set, ack clear) to each listener's address and
// port: the handshakes under way and the established connections go on,
// and the clients' kernels send their SYNs again later (after 1 s, 3 s,
// 7 s …), when they reach the restored or still running server; nobody
// gets a reset. It lives only for the time of the dump: from the freeze
// on, the network lock drops every packet to the same ports, and after
// a kill it is that lock that holds the clients back until the restore.
// Like that lock while the dump runs, it is a lease: a dump killed with
// SIGKILL stops holding the clients back within Lease, and the next dump
// deletes the table (SweepDrains).

// drainRe matches the name of a drain table and captures the pid of the
// rtcr that made it.
var drainRe = regexp.MustCompile(`^rtcr_[0-9a-f]{16}_drain_([0-9]+)$`)

// DrainName returns the name of the drain table of the dump of
// generation gen, made by rtcr process pid.
func DrainName(gen string, pid int) string {
	return fmt.Sprintf("rtcr_%s_drain_%d", gen, pid)
}

// DrainScript returns the nft script that installs (or replaces, in one
// transaction) table name dropping every SYN that opens a TCP connection
// to one of listeners (an unspecified address stands for every address
// of the port; an IPv4-mapped one is given as IPv4, as its packets are),
// until the time until (a lease, as the network lock's: a Keeper renews
// it, and it lapses when the dump was killed).
func DrainScript(name string, listeners []netip.AddrPort, until time.Time) string {
	var b strings.Builder
	// "add" then "delete" makes the delete work whether or not the table
	// existed; nft applies the whole file as one transaction.
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\n", name, name)
	fmt.Fprintf(&b, "table inet %s {\n", name)
	fmt.Fprintf(&b, "\tchain lease {\n\t\t%s\n\t}\n", leaseRule(until))
	fmt.Fprintf(&b, "\tchain in {\n\t\ttype filter hook input priority -400; policy accept;\n\t\tjump lease\n")
	seen := map[netip.AddrPort]bool{}
	for _, l := range listeners {
		l = netip.AddrPortFrom(l.Addr().Unmap(), l.Port())
		if seen[l] {
			continue
		}
		seen[l] = true
		m := fmt.Sprintf("tcp dport %d", l.Port())
		if !l.Addr().IsUnspecified() {
			m = fmt.Sprintf("%s daddr %s %s", ipKw(l.Addr()), l.Addr(), m)
		}
		fmt.Fprintf(&b, "\t\t%s tcp flags & (syn | ack) == syn drop\n", m)
	}
	fmt.Fprintf(&b, "\t}\n}\n")
	return b.String()
}

// Drain installs, or replaces, drain table name for listeners, with a
// lease of Lease (see Keep).
func Drain(name string, listeners []netip.AddrPort) error {
	if err := nft(DrainScript(name, listeners, time.Now().Add(Lease)), "-f", "-"); err != nil {
		return fmt.Errorf("drain table %s: %w", name, err)
	}
	return nil
}

// RemoveDrain deletes drain table name with one nft call; a table that
// is gone already is no error.
func RemoveDrain(name string) error {
	err := nft("", "delete", "table", "inet", name)
	if err != nil && Exists(name) {
		return fmt.Errorf("remove drain table %s: %w", name, err)
	}
	return nil
}

// SweepDrains deletes the drain tables left by rtcr processes that are
// gone (a dump killed with SIGKILL), and returns their names. A table
// whose rtcr is alive belongs to a dump under way and stays.
func SweepDrains() ([]string, error) {
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil, ErrNoNft
	}
	out, err := exec.Command(path, "list", "tables", "inet").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("nft list tables inet: %w: %s", err, strings.TrimSpace(string(out)))
	}
	var gone []string
	for _, line := range strings.Split(string(out), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "table inet ")
		if !ok {
			continue
		}
		m := drainRe.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || !errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			continue
		}
		if err := Unlock(name); err != nil {
			return gone, err
		}
		gone = append(gone, name)
	}
	return gone, nil
}
