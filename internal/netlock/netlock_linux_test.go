package netlock

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
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
	if err := Lock(name, conns); err != nil {
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
