package netlock

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDrainScript checks the text of a drain table: one rule per
// listener address (duplicates once), dropping only the SYNs that open
// a connection, an IPv4-mapped address as IPv4, an unspecified one for
// the port on every address; the table replaced in one transaction.
func TestDrainScript(t *testing.T) {
	got := DrainScript("rtcr_00000000000000ab_drain_7", []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:80"),
		netip.MustParseAddrPort("[::1]:81"),
		netip.MustParseAddrPort("[::ffff:127.0.0.2]:82"),
		netip.MustParseAddrPort("[::]:83"),
		netip.MustParseAddrPort("0.0.0.0:84"),
		netip.MustParseAddrPort("127.0.0.1:80"),
	}, time.Unix(1800000000, 0))
	want := `add table inet rtcr_00000000000000ab_drain_7
delete table inet rtcr_00000000000000ab_drain_7
table inet rtcr_00000000000000ab_drain_7 {
	chain lease {
		meta time > 1800000000 accept
	}
	chain in {
		type filter hook input priority -400; policy accept;
		jump lease
		ip daddr 127.0.0.1 tcp dport 80 tcp flags & (syn | ack) == syn drop
		ip6 daddr ::1 tcp dport 81 tcp flags & (syn | ack) == syn drop
		ip daddr 127.0.0.2 tcp dport 82 tcp flags & (syn | ack) == syn drop
		tcp dport 83 tcp flags & (syn | ack) == syn drop
		tcp dport 84 tcp flags & (syn | ack) == syn drop
	}
}
`
	if got != want {
		t.Errorf("drain script:\n%s\nwant:\n%s", got, want)
	}
	if n := DrainName("00000000000000ab", 7); n != "rtcr_00000000000000ab_drain_7" || !drainRe.MatchString(n) {
		t.Errorf("DrainName: %q", n)
	}
}

// TestDrainInstall installs a drain table, replaces it with another set
// of listeners, checks the rules nft lists, and lets SweepDrains remove
// the table of a gone rtcr while it keeps this process's.
func TestDrainInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed")
	}
	mine := DrainName("00000000000000ac", os.Getpid())
	defer Unlock(mine)
	if err := Drain(mine, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:80")}); err != nil {
		t.Fatal(err)
	}
	if err := Drain(mine, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:90"), netip.MustParseAddrPort("[::]:91")}); err != nil {
		t.Fatal(err)
	}
	rules, err := Rules(mine)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ip daddr 127.0.0.1 tcp dport 90 tcp flags syn / syn,ack drop",
		"tcp dport 91 tcp flags syn / syn,ack drop",
		"hook input priority",
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	if strings.Contains(rules, "dport 80") {
		t.Errorf("the replaced table still has the old listener:\n%s", rules)
	}
	// A table of an rtcr that is gone: the pid of a process reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	stale := DrainName("00000000000000ad", cmd.Process.Pid)
	defer Unlock(stale)
	if err := Drain(stale, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:92")}); err != nil {
		t.Fatal(err)
	}
	swept, err := SweepDrains()
	if err != nil {
		t.Fatal(err)
	}
	if Exists(stale) || !strings.Contains(strings.Join(swept, " "), stale) {
		t.Errorf("stale table %s: swept %v, still there %v", stale, swept, Exists(stale))
	}
	if !Exists(mine) {
		t.Errorf("SweepDrains removed %s, whose rtcr (this test) is alive", mine)
	}
}
