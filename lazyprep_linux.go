package rtcr

import (
	"log/slog"
	"sync/atomic"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/stub"
)

// lazyPrep is what a lazy restore of a pre-copy migration gets ready
// while the source still runs (rtcr serve --lazy-restore, once the full
// image is in): the tracer thread its restore will run on and, as its
// children, a spare keeper (stub.Spare) for each process of the full
// image with lazy memory. The restore's userfaultfd step then arms a
// spare (a few injected calls) instead of starting a keeper (a stub
// exec) while the source is frozen. Spares left over are killed when the
// restore is done, or by drop when it never ran; a killed rtcr takes
// them with it (they are traced with exit-kill and have a parent-death
// signal until armed).
type lazyPrep struct {
	t      *ptrace.Tracer
	used   atomic.Bool
	spares []*stub.Spare // touched only on t
	ready  chan struct{} // closed once the spares are started
}

// newLazyPrep starts the tracer thread and, on it, in the background,
// the spares for the processes of c (the full image).
func newLazyPrep(c *image.Checkpoint, log *slog.Logger) *lazyPrep {
	p := &lazyPrep{t: ptrace.NewTracer(), ready: make(chan struct{})}
	n := 0
	for i := range c.Processes {
		if vmas, _ := mem.LazyRanges(&c.Processes[i]); !c.Processes[i].Zombie && len(vmas) > 0 {
			n++
		}
	}
	scratch, elfBase, err := stubPlace(c)
	if err != nil || n == 0 {
		close(p.ready)
		return p
	}
	go func() {
		defer close(p.ready)
		_ = p.t.Do(func() error {
			for range n {
				sp, err := stub.NewSpare(scratch, elfBase)
				if err != nil {
					logger(log).Warn("lazy restore: no spare keeper ahead", "err", err)
					return nil
				}
				p.spares = append(p.spares, sp)
			}
			return nil
		})
	}()
	return p
}

// take returns a spare, nil when none is left (on the tracer thread).
func (p *lazyPrep) take() *stub.Spare {
	if p == nil || len(p.spares) == 0 {
		return nil
	}
	sp := p.spares[len(p.spares)-1]
	p.spares = p.spares[:len(p.spares)-1]
	return sp
}

// killSpares kills the spares not taken (on the tracer thread).
func (p *lazyPrep) killSpares() {
	for _, sp := range p.spares {
		sp.Kill()
	}
	p.spares = nil
}

// run runs fn on the tracer thread, as ptrace.Run does on a fresh one,
// then kills the spares left and ends the thread.
func (p *lazyPrep) run(fn func() error) error {
	p.used.Store(true)
	<-p.ready
	err := p.t.Do(func() error {
		defer p.killSpares()
		return fn()
	})
	p.t.Close()
	return err
}

// drop ends the spares and the thread of a restore that never ran them
// (nothing when run did).
func (p *lazyPrep) drop() {
	if p == nil || p.used.Swap(true) {
		return
	}
	<-p.ready
	_ = p.t.Do(func() error { p.killSpares(); return nil })
	p.t.Close()
}
