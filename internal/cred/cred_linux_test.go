package cred_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/cred"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRoundTrip dumps the credentials and prctl state of a target, restores
// them into a stub (Restore, then RestorePrctl, the order the restore
// uses), dumps the stub and expects exactly the same values: for a root
// process with default credentials (testdata/counter.c) and for one that
// dropped to non-root ids with a non-default capability state
// (testdata/creds.c).
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name, prog, ready string
		check             func(t *testing.T, c *image.Creds, p image.Prctl)
	}{
		{"defaults", "counter", "0\n", checkDefaults},
		{"creds", "creds", "ready\n", checkCreds},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// creds.c polls for its trigger with fsuid 1003: the
			// directory must be searchable by it.
			dir, err := os.MkdirTemp("", "rtcr-cred-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			trigger := filepath.Join(dir, "trigger")
			args := []string{"1000"}
			if tc.prog == "creds" {
				args = []string{trigger}
			}
			tg := testutil.StartTarget(t, testutil.BuildC(t, tc.prog, false), tc.ready, args...)
			var want *image.Creds
			var wantP image.Prctl
			testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
				var err error
				if want, wantP, err = cred.Dump(r); err != nil {
					t.Errorf("dump target: %v", err)
				}
			})
			if t.Failed() {
				return
			}
			tc.check(t, want, wantP)

			var got *image.Creds
			var gotP image.Prctl
			testutil.InStub(t, func(r *ptrace.Remote) {
				if err := cred.Restore(r.Injector, r, want); err != nil {
					t.Errorf("restore: %v", err)
					return
				}
				if err := cred.RestorePrctl(r, wantP); err != nil {
					t.Errorf("restore prctl: %v", err)
					return
				}
				var err error
				if got, gotP, err = cred.Dump(r); err != nil {
					t.Errorf("dump stub: %v", err)
				}
			})
			if t.Failed() {
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("creds after the round trip\n got %+v\nwant %+v", got, want)
			}
			if gotP != wantP {
				t.Errorf("prctl state after the round trip %+v, want %+v", gotP, wantP)
			}
			if tc.prog == "creds" {
				// The dump left the target as it was: its own check passes.
				if err := os.WriteFile(trigger, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				testutil.WaitForFile(t, tg.Out, "OK\n", 10*time.Second)
			}
		})
	}
}

// selfBounding returns the test's own bounding set, which the targets and
// the stubs inherit.
func selfBounding(t *testing.T) uint64 {
	t.Helper()
	st, err := procfs.ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return st.CapBnd
}

func checkDefaults(t *testing.T, c *image.Creds, p image.Prctl) {
	t.Helper()
	if c.Uid|c.Euid|c.Suid|c.Fsuid|c.Gid|c.Egid|c.Sgid|c.Fsgid != 0 || c.CapAmb != 0 || c.Securebits != 0 || c.NoNewPrivs {
		t.Errorf("target creds %+v, want root defaults", c)
	}
	if c.CapBnd != selfBounding(t) {
		t.Errorf("target bounding set %#x, want the test's %#x", c.CapBnd, selfBounding(t))
	}
	if want := (image.Prctl{Dumpable: 1}); p != want {
		t.Errorf("target prctl state %+v, want %+v", p, want)
	}
}

// Capability numbers and securebits of testdata/creds.c.
const (
	capKill           = 5
	capNetBindService = 10
	capSysModule      = 16
	capSysRawio       = 17
	// SECBIT_NOROOT|SECBIT_NOROOT_LOCKED|SECBIT_KEEP_CAPS|
	// SECBIT_NO_CAP_AMBIENT_RAISE|SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
	credsSecurebits = 0x01 | 0x02 | 0x10 | 0x40 | 0x80
)

// checkCreds makes sure the dump saw what creds.c sets up, so that the
// round trip compares non-default values.
func checkCreds(t *testing.T, c *image.Creds, p image.Prctl) {
	t.Helper()
	keep := uint64(1<<capKill | 1<<capNetBindService)
	want := &image.Creds{
		Uid: 1000, Euid: 1001, Suid: 1002, Fsuid: 1003,
		Gid: 1000, Egid: 1001, Sgid: 1002, Fsgid: 1003,
		Groups: []uint32{1000, 1001},
		CapInh: keep | 1<<capSysModule, CapPrm: keep, CapEff: keep,
		CapBnd:     selfBounding(t) &^ (1<<capSysModule | 1<<capSysRawio),
		CapAmb:     1 << capNetBindService,
		Securebits: credsSecurebits,
		NoNewPrivs: true,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("target creds\n got %+v\nwant %+v", c, want)
	}
	if want := (image.Prctl{Dumpable: 0, ChildSubreaper: true, PdeathSig: int(unix.SIGUSR2)}); p != want {
		t.Errorf("target prctl state %+v, want %+v", p, want)
	}
}

// TestPrctlBeforeRestoreIsLost shows why RestorePrctl must come after
// Restore: dropping from root to uid 1000 makes the kernel reset the
// dumpable flag to /proc/sys/fs/suid_dumpable and clear the parent-death
// signal (the child-subreaper flag stays).
func TestPrctlBeforeRestoreIsLost(t *testing.T) {
	testutil.RequireRoot(t)
	b, err := os.ReadFile("/proc/sys/fs/suid_dumpable")
	if err != nil {
		t.Fatal(err)
	}
	suidDumpable, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	c := &image.Creds{Uid: 1000, Euid: 1000, Suid: 1000, Fsuid: 1000,
		Gid: 1000, Egid: 1000, Sgid: 1000, Fsgid: 1000, CapBnd: selfBounding(t)}
	set := image.Prctl{Dumpable: 1, ChildSubreaper: true, PdeathSig: int(unix.SIGUSR2)}
	var got image.Prctl
	testutil.InStub(t, func(r *ptrace.Remote) {
		if err := cred.RestorePrctl(r, set); err != nil {
			t.Errorf("restore prctl: %v", err)
			return
		}
		if err := cred.Restore(r.Injector, r, c); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		if _, got, err = cred.Dump(r); err != nil {
			t.Errorf("dump stub: %v", err)
		}
	})
	if want := (image.Prctl{Dumpable: suidDumpable, ChildSubreaper: true}); got != want {
		t.Errorf("prctl state %+v, want %+v", got, want)
	}
}

// TestRestoreRefusesBoundingBit: a bounding-set bit the stub does not have
// cannot be restored; Restore says so before changing anything.
func TestRestoreRefusesBoundingBit(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.InStub(t, func(r *ptrace.Remote) {
		before, _, err := cred.Dump(r)
		if err != nil {
			t.Errorf("dump stub: %v", err)
			return
		}
		c := *before
		c.CapBnd |= 1 << 63
		err = cred.Restore(r.Injector, r, &c)
		if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "bounding set") {
			t.Errorf("restore with bounding bit 63: error %v, want EPERM about the bounding set", err)
		}
		after, _, err := cred.Dump(r)
		if err != nil {
			t.Errorf("dump stub: %v", err)
		} else if !reflect.DeepEqual(after, before) {
			t.Errorf("creds changed by a refused restore:\n got %+v\nwant %+v", after, before)
		}
	})
}
