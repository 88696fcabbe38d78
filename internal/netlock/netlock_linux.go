// Package netlock keeps the TCP connections and ports of a dumped tree
// from being answered by the kernel while the tree is down: a table of
// nftables rules (family inet, named rtcr_ and the dump's generation)
// drops every packet of each connection's 4-tuple, in and out, and every
// packet to each listening TCP or bound UDP port. The dump installs it
// before it reads the sockets' state; a restore deletes it once the
// sockets are back (a restore on a host without it, a migration's
// destination, installs the same table first: files.LockRestore); a dump that leaves the tree running (or fails)
// deletes it before letting the tree go. It drives the nft command
// (Debian package nftables).
//
// While a dump runs, the lock is a lease: its rules apply only until a
// deadline (an nft `meta time` rule in the table's chain "lease", which
// both hook chains jump to first), and a Keeper renews the deadline. A
// dump killed with SIGKILL so stops blocking its tree's connections once
// the lease runs out; a dump that completed and killed its tree makes
// the lock permanent (Hold) for the restore.
package netlock

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Conn is a TCP connection (Remote valid) or a listening TCP or bound
// UDP port (Remote invalid; an unspecified Local address stands for
// every address) to lock. Addresses of IPv4-mapped IPv6 sockets are given
// as IPv4 ones: their packets are IPv4.
type Conn struct {
	UDP           bool
	Local, Remote netip.AddrPort
}

// ErrNoNft reports that the nft command is missing.
var ErrNoNft = errors.New("the network lock needs the nft command (Debian package nftables)")

// Lock installs table name with rules dropping the packets of conns,
// until the time until (the zero time: for good).
func Lock(name string, conns []Conn, until time.Time) error {
	var in, out []string
	for _, c := range conns {
		proto := "tcp"
		if c.UDP {
			proto = "udp"
		}
		if !c.Remote.IsValid() {
			m := fmt.Sprintf("%s dport %d", proto, c.Local.Port())
			if !c.Local.Addr().IsUnspecified() {
				m = fmt.Sprintf("%s daddr %s %s", ipKw(c.Local.Addr()), c.Local.Addr(), m)
			}
			in = append(in, m+" drop")
			continue
		}
		l, r := c.Local.Addr().Unmap(), c.Remote.Addr().Unmap()
		in = append(in, fmt.Sprintf("%s saddr %s %s daddr %s %s sport %d %s dport %d drop", ipKw(l), r, ipKw(l), l, proto, c.Remote.Port(), proto, c.Local.Port()))
		out = append(out, fmt.Sprintf("%s saddr %s %s daddr %s %s sport %d %s dport %d drop", ipKw(l), l, ipKw(l), r, proto, c.Local.Port(), proto, c.Remote.Port()))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", name)
	fmt.Fprintf(&b, "\tchain lease {\n")
	if !until.IsZero() {
		fmt.Fprintf(&b, "\t\t%s\n", leaseRule(until))
	}
	fmt.Fprintf(&b, "\t}\n")
	fmt.Fprintf(&b, "\tchain in {\n\t\ttype filter hook input priority -400; policy accept;\n\t\tjump lease\n")
	for _, r := range in {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	fmt.Fprintf(&b, "\t}\n\tchain out {\n\t\ttype filter hook output priority -400; policy accept;\n\t\tjump lease\n")
	for _, r := range out {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	fmt.Fprintf(&b, "\t}\n}\n")
	if err := nft(b.String(), "-f", "-"); err != nil {
		return fmt.Errorf("network lock %s: %w", name, err)
	}
	return nil
}

// leaseRule is the rule that lets every packet through once until has
// passed: accept in a chain jumped to ends the hook chain's walk.
func leaseRule(until time.Time) string {
	return fmt.Sprintf("meta time > %d accept", until.Unix())
}

// Renew moves the deadline of lock name to until, in one nft
// transaction (the old deadline holds until the new one is in).
func Renew(name string, until time.Time) error {
	if err := nft(fmt.Sprintf("flush chain inet %s lease\nadd rule inet %s lease %s\n", name, name, leaseRule(until)), "-f", "-"); err != nil {
		return fmt.Errorf("renew network lock %s: %w", name, err)
	}
	return nil
}

// Hold makes lock name hold for good: its lease rule goes.
func Hold(name string) error {
	if err := nft("", "flush", "chain", "inet", name, "lease"); err != nil {
		return fmt.Errorf("keep network lock %s: %w", name, err)
	}
	return nil
}

// ipKw is the nft keyword of a's family.
func ipKw(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ip"
	}
	return "ip6"
}

// Available reports whether the nft command is installed.
func Available() bool {
	_, err := exec.LookPath("nft")
	return err == nil
}

// Unlock deletes table name; a table that is gone already is no error.
func Unlock(name string) error {
	if !Exists(name) {
		return nil
	}
	if err := nft("", "delete", "table", "inet", name); err != nil {
		return fmt.Errorf("remove network lock %s: %w", name, err)
	}
	return nil
}

// Exists reports whether table name is installed.
func Exists(name string) bool {
	return nft("", "list", "table", "inet", name) == nil
}

// Rules returns the rules of table name as nft lists them.
func Rules(name string) (string, error) {
	path, err := exec.LookPath("nft")
	if err != nil {
		return "", ErrNoNft
	}
	b, err := exec.Command(path, "list", "table", "inet", name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list table inet %s: %w: %s", name, err, bytes.TrimSpace(b))
	}
	return string(b), nil
}

// nft runs the nft command with args, stdin as its input.
func nft(stdin string, args ...string) error {
	path, err := exec.LookPath("nft")
	if err != nil {
		return ErrNoNft
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(b))
	}
	return nil
}
