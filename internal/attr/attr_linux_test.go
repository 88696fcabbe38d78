package attr_test

import (
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRoundTrip dumps the attributes of a target, restores them into a
// stub, dumps the stub and expects the same working directory, umask,
// personality, resource limits, OOM score adjustment, THP-disable setting
// membarrier registrations
// and main-thread scheduling state (policy, reset-on-fork, nice).
//
// Exe and Comm are not compared: the stub's executable is the stub ELF (a
// memfd) and its name the stub's until the restore's other steps change
// them, which are not attr's (mem.RestoreMM sets the exe link, task.Restore
// the thread name); they are covered by the mem and task tests.
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name, prog string
		args       []string
		// check verifies the target's dump holds what the program set up,
		// so the round trip compares non-default values.
		check func(t *testing.T, tg *testutil.Target, p *image.Process)
	}{
		{"defaults", "counter", []string{"1000"}, nil},
		{"procstate", "procstate", []string{"."}, checkProcstate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ready := "ready\n"
			if tc.prog == "counter" {
				ready = "0\n"
			}
			tg := testutil.StartTarget(t, testutil.BuildC(t, tc.prog, false), ready, tc.args...)
			want := &image.Process{}
			var wantSched *image.Sched
			testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
				if err := attr.Dump(r, want); err != nil {
					t.Errorf("dump target: %v", err)
				}
				var err error
				if wantSched, err = attr.DumpSched(tg.Pid); err != nil {
					t.Errorf("dump target: %v", err)
				}
			})
			if t.Failed() {
				return
			}
			if tc.check != nil {
				tc.check(t, tg, want)
				checkSched(t, wantSched)
			}
			got := &image.Process{}
			var gotSched *image.Sched
			testutil.InStub(t, func(r *ptrace.Remote) {
				if err := attr.Restore(r, want); err != nil {
					t.Errorf("restore: %v", err)
					return
				}
				if err := attr.RestoreSched(r.Pid, wantSched); err != nil {
					t.Errorf("restore: %v", err)
					return
				}
				if err := attr.Dump(r, got); err != nil {
					t.Errorf("dump stub: %v", err)
				}
				var err error
				if gotSched, err = attr.DumpSched(r.Pid); err != nil {
					t.Errorf("dump stub: %v", err)
				}
			})
			if t.Failed() {
				return
			}
			if got.Cwd != want.Cwd {
				t.Errorf("cwd %q, want %q", got.Cwd, want.Cwd)
			}
			if got.Umask != want.Umask {
				t.Errorf("umask %#o, want %#o", got.Umask, want.Umask)
			}
			if got.Personality != want.Personality {
				t.Errorf("personality %#x, want %#x", got.Personality, want.Personality)
			}
			if !reflect.DeepEqual(got.Rlimits, want.Rlimits) {
				t.Errorf("rlimits\n got %v\nwant %v", got.Rlimits, want.Rlimits)
			}
			if got.OomScoreAdj == nil || want.OomScoreAdj == nil || *got.OomScoreAdj != *want.OomScoreAdj {
				t.Errorf("oom_score_adj %v, want %v", show(got.OomScoreAdj), show(want.OomScoreAdj))
			}
			if got.Membarrier != want.Membarrier {
				t.Errorf("membarrier registrations %#x, want %#x", got.Membarrier, want.Membarrier)
			}
			if got.THPDisable != want.THPDisable {
				t.Errorf("THP disable %d, want %d", got.THPDisable, want.THPDisable)
			}
			if !reflect.DeepEqual(gotSched, wantSched) {
				t.Errorf("scheduling %+v, want %+v", gotSched, wantSched)
			}
		})
	}
}

func checkProcstate(t *testing.T, tg *testutil.Target, p *image.Process) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(tg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Cwd != dir {
		t.Errorf("target cwd %q, want %q", p.Cwd, dir)
	}
	if p.Umask != 0o027 {
		t.Errorf("target umask %#o, want 027", p.Umask)
	}
	const addrNoRandomize, addrCompatLayout = 0x0040000, 0x0200000
	if p.Personality != addrNoRandomize|addrCompatLayout {
		t.Errorf("target personality %#x, want %#x", p.Personality, addrNoRandomize|addrCompatLayout)
	}
	lim := map[int]image.Rlimit{}
	for _, rl := range p.Rlimits {
		lim[rl.Resource] = rl
	}
	if len(lim) != 16 {
		t.Errorf("target has %d rlimits, want all 16", len(lim))
	}
	for _, w := range []image.Rlimit{
		{Resource: unix.RLIMIT_CORE, Cur: 0, Max: 0},
		{Resource: unix.RLIMIT_MSGQUEUE, Cur: 4096, Max: 8192},
	} {
		if lim[w.Resource] != w {
			t.Errorf("target rlimit %d is %+v, want %+v", w.Resource, lim[w.Resource], w)
		}
	}
	if nofile := lim[unix.RLIMIT_NOFILE]; nofile.Cur != 200 {
		t.Errorf("target RLIMIT_NOFILE soft limit %d, want 200", nofile.Cur)
	}
	if p.OomScoreAdj == nil || *p.OomScoreAdj != 123 {
		t.Errorf("target oom_score_adj %v, want 123", show(p.OomScoreAdj))
	}
	if p.THPDisable != 1 {
		t.Errorf("target THP disable %d, want 1", p.THPDisable)
	}
	if p.Membarrier != 1<<4 {
		t.Errorf("target membarrier registrations %#x, want PRIVATE_EXPEDITED (0x10)", p.Membarrier)
	}
}

// checkSched checks procstate.c's main thread is SCHED_BATCH, reset on
// fork, nice 5.
func checkSched(t *testing.T, s *image.Sched) {
	t.Helper()
	if s == nil || s.Policy != unix.SCHED_BATCH || s.Flags != unix.SCHED_FLAG_RESET_ON_FORK || s.Nice != 5 {
		t.Errorf("target scheduling %+v, want SCHED_BATCH, reset on fork, nice 5", s)
	}
}

func show(p *int) string {
	if p == nil {
		return "nil"
	}
	return strconv.Itoa(*p)
}
