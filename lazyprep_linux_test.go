package rtcr

import (
	"errors"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// TestLazyPrepSpares checks the spare keepers serve --lazy-restore starts
// before the increment arrives: one per process with lazy memory, taken
// on the prepared thread, and those not taken killed and reaped when the
// restore ran, or when it never did (drop).
func TestLazyPrepSpares(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("needs root (as every lazy restore)")
	}
	const P = image.PageSize
	c := &image.Checkpoint{Processes: []image.Process{
		{Pid: 1, VMAs: []image.VMA{{Start: 0x10000, End: 0x10000 + 16*P, Kind: image.KindAnon, Pages: image.PageRuns{{Addr: 0x10000, Count: 4}}}}},
		{Pid: 2, Zombie: true},
		{Pid: 3, VMAs: []image.VMA{{Start: 0x10000, End: 0x10000 + 16*P, Kind: image.KindAnon, Pages: image.PageRuns{{Addr: 0x10000, Count: 4}}}}},
	}}
	p := newLazyPrep(c, nil)
	var pids []int
	err := p.run(func() error {
		sp := p.take()
		if sp == nil {
			return errors.New("no spare")
		}
		pids = append(pids, sp.Pid())
		sp.Kill() // as a restore that armed it would end it
		for _, sp := range p.spares {
			pids = append(pids, sp.Pid())
		}
		if len(pids) != 2 {
			return errors.New("not one spare per live process with lazy memory")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p.drop() // after run: nothing
	for _, pid := range pids {
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("spare %d still there after the restore (kill 0: %v)", pid, err)
		}
	}

	p = newLazyPrep(c, nil)
	<-p.ready
	pids = nil
	_ = p.t.Do(func() error {
		for _, sp := range p.spares {
			pids = append(pids, sp.Pid())
		}
		return nil
	})
	if len(pids) != 2 {
		t.Fatalf("spares %v, want 2", pids)
	}
	p.drop()
	p.drop()
	for _, pid := range pids {
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("spare %d still there after drop (kill 0: %v)", pid, err)
		}
	}
}
