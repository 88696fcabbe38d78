package ptrace

import (
	"errors"
	"fmt"
)

// Injecting into many threads of a live process at once. Each thread that
// runs a batch needs a frame and a batch area of its own: a scratch area
// opened with OpenLiveThreads has, above ScratchSize, one slot of
// threadSlotSize bytes per thread: its batch's control block and outputs,
// its table, then its frame. The batch code is the process's one copy (it
// keeps its state in registers). RunThreads arms every thread, sets each
// running its batch, and only then waits for the first to stop: the
// threads run their calls side by side while the tracer arms the next,
// instead of one ptrace round trip after the other.
//
// Killed at any moment, rtcr leaves each thread where one injected thread
// alone would be left (at its gadget on its frame, or in the batch code,
// or on its way into its interrupt stop), each with its own frame: every
// one of them returns to its own state, as with one thread at a time.
const (
	slotCtlOff  = 0
	slotOutOff  = 64
	slotTabOff  = 0x800
	slotFrame   = 0x1000
	slotOutMax  = slotTabOff - slotOutOff
	slotCallMax = (slotFrame - slotTabOff) / batchEntry
	// threadSlotSize is the size of one thread's slot.
	threadSlotSize = slotFrame + maxFrameSize
	// MaxThreadSlots is the most thread slots a scratch area has: more
	// threads are injected into in groups of that many.
	MaxThreadSlots = 256
)

// ThreadSlots is the number of threads r can inject into at once.
func (r *Remote) ThreadSlots() int { return r.slots }

// slotBase returns the offset in the scratch area of thread slot i.
func slotBase(i int) int { return ScratchSize + i*threadSlotSize }

// slotBatch returns an empty batch in thread slot i.
func (r *Remote) slotBatch(i int) *Batch {
	base := slotBase(i)
	return &Batch{r: r, ctlOff: base + slotCtlOff, outOff: base + slotOutOff, tabOff: base + slotTabOff,
		outMax: slotOutMax, callMax: slotCallMax}
}

// ThreadWork queues in b the calls to run in the thread of in (armed: its
// registers and mask as frozen are in.Saved and in.SavedMask) and returns
// done, called once every thread ran its batch and was put back.
type ThreadWork func(in *Injector, b *Batch) (done func() error, err error)

// RunThreads runs, for each thread of tids (threads of r's process other
// than r's own), the calls work queues, as one batch. With thread slots
// (OpenLiveThreads) and batches allowed, the threads run them side by
// side, up to ThreadSlots at once; else one thread after the other, each
// through ThreadInjector. Every thread is put back as it was frozen before
// RunThreads returns, error or not.
func (r *Remote) RunThreads(tids []int, work ThreadWork) error {
	if !r.canBatch() || r.slots == 0 {
		for _, tid := range tids {
			if err := r.runThreadAlone(tid, work); err != nil {
				return err
			}
		}
		return nil
	}
	for len(tids) > 0 {
		n := min(len(tids), r.slots)
		if err := r.runThreadsAtOnce(tids[:n], work); err != nil {
			return err
		}
		tids = tids[n:]
	}
	return nil
}

// runThreadAlone runs work's batch in thread tid through ThreadInjector.
func (r *Remote) runThreadAlone(tid int, work ThreadWork) error {
	in, err := r.ThreadInjector(tid)
	if err != nil {
		return err
	}
	b := r.NewBatch()
	done, err := work(in, b)
	if err == nil {
		err = r.RunBatch(in, b)
	}
	if rerr := in.Restore(); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	return done()
}

// Where a thread of runThreadsAtOnce is.
const (
	threadIdle      = iota // not touched (or put back when arming failed)
	threadArmed            // at its gadget
	threadRunning          // in its batch
	threadDisarming        // on its way into its interrupt stop
	threadBack             // put back (or left as disarming failed)
)

// runThreadsAtOnce runs work's batches in tids, at most r.slots threads,
// side by side (see RunThreads).
func (r *Remote) runThreadsAtOnce(tids []int, work ThreadWork) error {
	type thread struct {
		in    *Injector
		b     *Batch
		s     int
		done  func() error
		state int
	}
	ts := make([]thread, len(tids))
	var errs []error
	// Arm each thread and set it running its batch.
	for i, tid := range tids {
		t := &ts[i]
		in, err := NewLiveInjector(tid, r.gadget, r.Scratch+uint64(slotBase(i)+slotFrame), false)
		if err != nil {
			errs = append(errs, err)
			break
		}
		t.in, t.state, t.b = in, threadArmed, r.slotBatch(i)
		if t.done, err = work(in, t.b); err != nil {
			errs = append(errs, err)
			break
		}
		if len(t.b.calls) > t.b.callMax || len(t.b.out) > t.b.outMax {
			errs = append(errs, fmt.Errorf("thread %d: batch of %d calls and %d bytes is too big", tid, len(t.b.calls), len(t.b.out)))
			break
		}
		t.b.res = make([]uint64, len(t.b.calls))
		if t.s = r.batchSignal(in); t.s == 0 {
			// No signal to stop this thread with: its calls one by one.
			if err := r.RunBatch(in, t.b); err != nil {
				errs = append(errs, err)
				break
			}
			continue
		}
		if err := r.startBatch(in, t.b, t.s, false); err != nil {
			errs = append(errs, err)
			break
		}
		t.state = threadRunning
	}
	// Set running only once all are armed: a running batch takes the
	// process's signal lock, which the tracer's calls on the others
	// need too.
	for i := range ts {
		t := &ts[i]
		if t.state != threadRunning {
			continue
		}
		if err := contBatch(t.in); err != nil {
			errs = append(errs, err)
			t.state = threadArmed
		}
	}
	// Wait for each batch's end, then set the threads on their way back,
	// again all set up before any runs.
	for i := range ts {
		t := &ts[i]
		if t.state != threadRunning {
			continue
		}
		// Left in the stop at the end of the batch, for disarmStart
		// to take it from there (finishBatch without rearm).
		err := r.finishBatch(t.in, t.b, t.s, false)
		if errors.Is(err, errAbandoned) {
			return err // a test: left as a killed rtcr leaves them
		}
		if err != nil {
			errs = append(errs, err)
		}
		t.state = threadArmed
	}
	for i := range ts {
		t := &ts[i]
		if t.state != threadArmed {
			continue
		}
		t.state = threadDisarming
		if err := t.in.disarmStart(false); err != nil {
			errs = append(errs, fmt.Errorf("putting thread %d back: %w", t.in.Tid, err))
			t.state = threadBack
		}
	}
	for i := range ts {
		t := &ts[i]
		if t.state != threadDisarming {
			continue
		}
		if err := t.in.disarmCont(); err != nil {
			errs = append(errs, fmt.Errorf("putting thread %d back: %w", t.in.Tid, err))
			t.state = threadBack
		}
	}
	for i := range ts {
		t := &ts[i]
		if t.state == threadDisarming {
			if err := t.in.disarmEnd(nil); err != nil {
				errs = append(errs, err)
			}
			t.state = threadBack
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	for i := range ts {
		if err := ts[i].done(); err != nil {
			return err
		}
	}
	return nil
}
