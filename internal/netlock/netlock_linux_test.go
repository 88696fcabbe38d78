package netlock

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestLockRules installs a lock for an IPv4 and an IPv6 connection, an
// IPv4-mapped one, a listening port on every address and a bound UDP
// port, checks the rules nft lists, and removes it.
func TestLockRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed")
	}
	name := "rtcr_00000000000000aa"
	conns := []Conn{
		{Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.2:4000")},
		{Local: netip.MustParseAddrPort("[::1]:81"), Remote: netip.MustParseAddrPort("[::1]:4001")},
		{Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:82"), Remote: netip.MustParseAddrPort("[::ffff:127.0.0.3]:4002")},
		{Local: netip.MustParseAddrPort("[::]:83")},
		{UDP: true, Local: netip.MustParseAddrPort("127.0.0.1:53")},
	}
	if err := Lock(name, conns, time.Time{}); err != nil {
		t.Fatal(err)
	}
	defer Unlock(name)
	if !Exists(name) {
		t.Fatalf("table %s not there", name)
	}
	rules, err := Rules(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ip saddr 127.0.0.2 ip daddr 127.0.0.1 tcp sport 4000 tcp dport 80 drop",
		"ip saddr 127.0.0.1 ip daddr 127.0.0.2 tcp sport 80 tcp dport 4000 drop",
		"ip6 saddr ::1 ip6 daddr ::1 tcp sport 4001 tcp dport 81 drop",
		"ip saddr 127.0.0.3 ip daddr 127.0.0.1 tcp sport 4002 tcp dport 82 drop",
		"tcp dport 83 drop",
		"ip daddr 127.0.0.1 udp dport 53 drop",
		"jump lease",
		"hook input priority",
		"hook output priority",
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	if err := Unlock(name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatalf("table %s still there after Unlock", name)
	}
	if err := Unlock(name); err != nil {
		t.Fatalf("Unlock of a table that is gone: %v", err)
	}
}

// TestLease locks a listening loopback port with a lease of a few
// seconds: a connect is dropped while it holds and succeeds once it has
// lapsed; renewed, the lock holds again; held for good (Hold), its lease
// rule is gone and it still drops.
func TestLease(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := netip.MustParseAddrPort(l.Addr().String())
	name := "rtcr_00000000000000ab"
	const lease = 4 * time.Second
	until := time.Now().Add(lease)
	if err := Lock(name, []Conn{{Local: addr}}, until); err != nil {
		t.Fatal(err)
	}
	defer Unlock(name)
	dropped := func() bool {
		c, err := net.DialTimeout("tcp4", addr.String(), 300*time.Millisecond)
		if err == nil {
			c.Close()
			return false
		}
		return true
	}
	if time.Until(until) > time.Second {
		if !dropped() {
			t.Fatalf("a connect to %s went through while the lease held", addr)
		}
	} else {
		t.Logf("machine too slow to see the lease hold (%v left); not checked", time.Until(until))
	}
	deadline := time.Now().Add(60 * time.Second)
	for dropped() {
		if time.Now().After(deadline) {
			t.Fatalf("connects to %s still dropped 60 s after a %v lease", addr, lease)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := Renew(name, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !dropped() {
		t.Fatalf("a connect to %s went through after the lease was renewed", addr)
	}
	if err := Hold(name); err != nil {
		t.Fatal(err)
	}
	rules, err := Rules(name)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rules, "meta time") {
		t.Fatalf("a held lock still has its lease rule:\n%s", rules)
	}
	if !dropped() {
		t.Fatalf("a connect to %s went through a held lock", addr)
	}
}
