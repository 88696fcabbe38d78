package ptrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// A Batch is a list of system calls run in one thread of a process in one
// go: in a live process, by a short piece of code (batchCode) written into
// the scratch area, which makes the calls one after the other and stores
// each result, then stops the thread for rtcr; one ptrace round trip
// instead of one per call (two stops each). Where that cannot be done
// safely (see canBatch) the calls are injected one by one, with the same
// results.
//
// Only calls that may all run to the end are batched: a killed rtcr lets
// the thread finish the batch on its own (then it returns through its
// frame, as from any injected call). The dump batches only calls that
// read state.
//
// How the thread stops without leaving anything behind if rtcr is gone:
// the code ends by unblocking one signal S of the thread and sending it to
// itself with tgkill. S is a signal the process ignores (its action is
// SIG_IGN, or SIG_DFL for a signal whose default is to ignore it) and the
// thread's own mask does not block. A traced thread gets every signal,
// ignored ones too, as a signal-delivery stop: rtcr reads the results
// there and re-arms the thread at its gadget (the stop's signal is
// dropped when rtcr resumes it). An untraced thread (rtcr killed) never
// gets an ignored signal: the kernel discards it when it is sent. Killed
// at the stop itself, the kernel delivers S to the thread, which ignores
// it. The code then blocks every signal again and runs rt_sigreturn on
// the thread's frame, like any other end of a live injection.
//
// The code checks S's action (rt_sigaction) just before sending it: had it
// changed, it skips the tgkill. While rtcr traces the process no thread of
// it can change an action; what is left is a thread that, with rtcr
// killed while the batch ran, installs a handler for S in the microsecond
// between that check and the tgkill: that handler then runs once. (Also
// left: a process sharing its signal actions with one outside the tree,
// CLONE_SIGHAND without CLONE_THREAD, changing S's action while rtcr
// waits: the thread would run on without stopping for rtcr.)
type Batch struct {
	r     *Remote
	calls [][7]uint64
	res   []uint64
	out   []byte
	// Where the batch's control block, outputs and table sit in the
	// scratch area, and how much they hold: the process's own area
	// (NewBatch) or a thread's slot (threads_linux.go).
	ctlOff, outOff, tabOff int
	outMax, callMax        int
	tab                    []byte // the table as written, read back into
}

// batchCode makes the calls of a table and stops (see Batch). On entry:
// r12 = the table (64-byte entries: nr, six arguments, result), r13 = the
// number of entries, r14 = the control block (mask without S, mask with
// everything, 32 bytes for a sigaction), r15 = S, rsp = the thread's frame.
//
//	loop:  test r13, r13 ; jz done
//	       mov rax, [r12] ; mov rdi, [r12+8] ; mov rsi, [r12+16]
//	       mov rdx, [r12+24] ; mov r10, [r12+32] ; mov r8, [r12+40]
//	       mov r9, [r12+48] ; syscall ; mov [r12+56], rax
//	       add r12, 64 ; dec r13 ; jmp loop
//	done:  rt_sigprocmask(SIG_SETMASK, r14, 0, 8)         ; only S unblocked
//	       rt_sigaction(r15, 0, r14+16, 8)
//	       test rax, rax ; jnz skip
//	       mov rax, [r14+16] ; cmp rax, 1 ; je send         ; SIG_IGN
//	       test rax, rax ; jnz skip                        ; not SIG_DFL
//	send:  tgkill(getpid(), gettid(), r15)
//	skip:  rt_sigprocmask(SIG_SETMASK, r14+8, 0, 8)       ; rtcr stops it here
//	       mov eax, 15 ; syscall                           ; rt_sigreturn
var batchCode = []byte{
	0x4d, 0x85, 0xed, 0x74, 0x32, 0x49, 0x8b, 0x04, 0x24, 0x49, 0x8b, 0x7c, 0x24, 0x08, 0x49, 0x8b,
	0x74, 0x24, 0x10, 0x49, 0x8b, 0x54, 0x24, 0x18, 0x4d, 0x8b, 0x54, 0x24, 0x20, 0x4d, 0x8b, 0x44,
	0x24, 0x28, 0x4d, 0x8b, 0x4c, 0x24, 0x30, 0x0f, 0x05, 0x49, 0x89, 0x44, 0x24, 0x38, 0x49, 0x83,
	0xc4, 0x40, 0x49, 0xff, 0xcd, 0xeb, 0xc9, 0xb8, 0x0e, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00,
	0x00, 0x4c, 0x89, 0xf6, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x0d,
	0x00, 0x00, 0x00, 0x4c, 0x89, 0xff, 0x31, 0xf6, 0x49, 0x8d, 0x56, 0x10, 0x41, 0xba, 0x08, 0x00,
	0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x75, 0x2d, 0x49, 0x8b, 0x46, 0x10, 0x48, 0x83, 0xf8,
	0x01, 0x74, 0x05, 0x48, 0x85, 0xc0, 0x75, 0x1e, 0xb8, 0x27, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48,
	0x89, 0xc7, 0xb8, 0xba, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x89, 0xc6, 0x4c, 0x89, 0xfa, 0xb8,
	0xea, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x0e, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00, 0x00,
	0x49, 0x8d, 0x76, 0x08, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x0f,
	0x00, 0x00, 0x00, 0x0f, 0x05,
}

// batchStopOff is the offset in batchCode just after the tgkill: where the
// thread stops with S.
const batchStopOff = 0x96

// Scratch layout of a batch (between DataOff and gadgetOff): the control
// block, the outputs (fixed addresses, so that calls can name them before
// the table's size is known), the table; the code just below the gadget.
const (
	batchCtlOff   = DataOff
	batchOutOff   = DataOff + 64
	batchOutMax   = 8 << 10
	batchTableOff = batchOutOff + batchOutMax
	batchCodeOff  = gadgetOff - 0x100
	batchEntry    = 64
	// MaxBatch is the most calls a batch holds.
	MaxBatch = (batchCodeOff - batchTableOff) / batchEntry
)

// NewBatch returns an empty batch for the process of r.
func (r *Remote) NewBatch() *Batch {
	return &Batch{r: r, ctlOff: batchCtlOff, outOff: batchOutOff, tabOff: batchTableOff, outMax: batchOutMax, callMax: MaxBatch}
}

// Add queues call nr with up to six arguments and returns its index.
func (b *Batch) Add(nr uint64, args ...uint64) int {
	var c [7]uint64
	c[0] = nr
	copy(c[1:], args)
	b.calls = append(b.calls, c)
	return len(b.calls) - 1
}

// Out reserves n bytes, zeroed, for a call to store into: it returns their
// address in the process (an argument of the call) and their offset for
// Bytes.
func (b *Batch) Out(n int) (addr uint64, off int) {
	off = len(b.out)
	b.out = append(b.out, make([]byte, (n+7)&^7)...)
	return b.r.Scratch + uint64(b.outOff) + uint64(off), off
}

// Put is Out for n = len(data), with data written there before the calls
// run (an argument the calls read).
func (b *Batch) Put(data []byte) (addr uint64, off int) {
	addr, off = b.Out(len(data))
	copy(b.out[off:], data)
	return addr, off
}

// Len is the number of calls queued.
func (b *Batch) Len() int { return len(b.calls) }

// Result returns the result of call i once the batch ran: a negative
// kernel result becomes a syscall.Errno.
func (b *Batch) Result(i int) (uint64, error) {
	if i >= len(b.res) {
		return 0, fmt.Errorf("process %d: result of call %d of a batch that did not run", b.r.Pid, i)
	}
	if ret := int64(b.res[i]); ret < 0 && ret > -4096 {
		return 0, syscall.Errno(-ret)
	}
	return b.res[i], nil
}

// Bytes returns the n bytes at offset off of the outputs (see Out), as
// the calls left them.
func (b *Batch) Bytes(off, n int) []byte { return b.out[off : off+n] }

// RunBatch runs the calls of b in the thread of in (r's own injector or
// one of ThreadInjector), in order, each whatever the previous returned.
// The results are read with Result and Bytes. A live thread runs them as
// one batch when canBatch allows, else they are injected one by one.
func (r *Remote) RunBatch(in *Injector, b *Batch) error {
	if len(b.calls) > b.callMax || len(b.out) > b.outMax {
		return fmt.Errorf("process %d: batch of %d calls and %d bytes is too big", r.Pid, len(b.calls), len(b.out))
	}
	b.res = make([]uint64, len(b.calls))
	if s := r.batchSignal(in); s != 0 {
		return r.runBatchLive(in, b, s)
	}
	if len(b.out) > 0 {
		if err := WriteMem(r.Pid, r.Scratch+uint64(b.outOff), b.out); err != nil {
			return fmt.Errorf("process %d: zero the outputs of a batch: %w", r.Pid, err)
		}
	}
	for i, c := range b.calls {
		v, err := in.Syscall(c[0], c[1:]...)
		var errno syscall.Errno
		switch {
		case errors.As(err, &errno):
			b.res[i] = uint64(-int64(errno))
		case err != nil:
			return err
		default:
			b.res[i] = v
		}
	}
	return r.readOuts(b)
}

// readOuts reads the outputs of b back from the scratch area.
func (r *Remote) readOuts(b *Batch) error {
	if len(b.out) == 0 {
		return nil
	}
	if err := ReadMem(r.Pid, r.Scratch+uint64(b.outOff), b.out); err != nil {
		return fmt.Errorf("process %d: read the outputs of a batch: %w", r.Pid, err)
	}
	return nil
}

// Sequential makes every later batch of r run call by call (see
// RunBatch): for a process under seccomp, whose suspension ends with rtcr,
// so that a killed rtcr leaves at most one call to meet the filters.
func (r *Remote) Sequential() { r.sequential = true }

// Batched counts the batches that ran as one round trip.
func (r *Remote) Batched() int { return r.batched }

// canBatch tells whether r's scratch area can hold the batch code.
func (r *Remote) canBatch() bool {
	return r.exec && !r.sequential && r.Injector != nil && r.Injector.live != nil
}

// batchSignal chooses the signal that stops thread in at the end of a
// batch (see Batch), or returns 0 when the batch must run call by call.
func (r *Remote) batchSignal(in *Injector) int {
	if !r.canBatch() || in.live == nil {
		return 0
	}
	if !r.dispRead {
		st, err := procfs.ReadStatus(r.Pid)
		if err != nil {
			return 0
		}
		r.sigIgn, r.sigCgt, r.dispRead = st.SigIgn, st.SigCgt, true
	}
	fits := func(s int, dflIgnored bool) bool {
		bit := uint64(1) << (s - 1)
		return r.sigCgt&bit == 0 && in.savedMask&bit == 0 && (dflIgnored || r.sigIgn&bit != 0)
	}
	for _, s := range []int{int(unix.SIGURG), int(unix.SIGWINCH), int(unix.SIGCHLD)} {
		if fits(s, true) {
			return s
		}
	}
	for s := 1; s <= 64; s++ {
		switch syscall.Signal(s) {
		case unix.SIGKILL, unix.SIGSTOP, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
			// Sending a stop signal drops a pending SIGCONT and the
			// other way round, whatever the action.
			continue
		}
		if fits(s, false) {
			return s
		}
	}
	return 0
}

// runBatchLive runs b as one batch in the armed live thread of in, which
// stops with signal s at the end (see Batch).
func (r *Remote) runBatchLive(in *Injector, b *Batch, s int) error {
	if err := r.startBatch(in, b, s, true); err != nil {
		return err
	}
	if batchHook != nil && batchHook("running") {
		return errAbandoned
	}
	return r.finishBatch(in, b, s, true)
}

// startBatch writes b into the scratch area and sets the armed live
// thread of in at its start, and running it with cont (else contBatch
// does); finishBatch waits for its end. In between, the thread may be
// anywhere in the batch code.
func (r *Remote) startBatch(in *Injector, b *Batch, s int, cont bool) error {
	lv := in.live
	if !r.codeWritten {
		if err := WriteMem(r.Pid, r.Scratch+batchCodeOff, batchCode); err != nil {
			return fmt.Errorf("process %d: write the batch code: %w", r.Pid, err)
		}
		r.codeWritten = true
	}
	// Control block with the outputs, and the table, in one write.
	head := make([]byte, b.outOff-b.ctlOff+len(b.out))
	binary.LittleEndian.PutUint64(head[0:], ^uint64(0)&^(1<<(s-1)))
	binary.LittleEndian.PutUint64(head[8:], ^uint64(0))
	copy(head[b.outOff-b.ctlOff:], b.out)
	b.tab = make([]byte, len(b.calls)*batchEntry)
	for i, c := range b.calls {
		e := b.tab[i*batchEntry:]
		for j, v := range c {
			binary.LittleEndian.PutUint64(e[j*8:], v)
		}
		binary.LittleEndian.PutUint64(e[56:], ^uint64(0)) // -EPERM: never ran
	}
	if err := vmIO(r.Pid, true, r.Scratch+uint64(b.ctlOff), head, r.Scratch+uint64(b.tabOff), b.tab); err != nil {
		return fmt.Errorf("thread %d: write a batch: %w", in.Tid, err)
	}
	regs, err := GetRegs(in.Tid)
	if err != nil {
		return err
	}
	regs.Rip, regs.Orig_rax = r.Scratch+batchCodeOff, ^uint64(0)
	regs.R12, regs.R13 = r.Scratch+uint64(b.tabOff), uint64(len(b.calls))
	regs.R14, regs.R15 = r.Scratch+uint64(b.ctlOff), uint64(s)
	regs.Rsp = lv.uc
	if lv.nextUC != 0 {
		regs.Rsp = lv.nextUC
	}
	if err := SetRegs(in.Tid, &regs); err != nil {
		return err
	}
	if lv.nextUC != 0 {
		if err := in.switchFrame(); err != nil {
			return in.rearm(err)
		}
	}
	// From here on the thread may be anywhere in the code until it stops
	// with s just after its tgkill.
	lv.inBatch = true
	if !cont {
		return nil
	}
	return contBatch(in)
}

// contBatch sets the thread of in, at the start of its batch (startBatch),
// running it.
func contBatch(in *Injector) error {
	if err := unix.PtraceCont(in.Tid, 0); err != nil {
		return in.rearm(fmt.Errorf("thread %d: run a batch: %w", in.Tid, err))
	}
	return nil
}

// finishBatch waits until the thread of in, running b (startBatch), stops
// with s at the end of the code, puts it back at its gadget (with rearm)
// and reads the results. Without rearm the thread stays in its stop at the
// end of the code, for disarmStart to take it from there: killed there,
// rtcr leaves it to block its signals and return through its frame, as the
// gadget would.
func (r *Remote) finishBatch(in *Injector, b *Batch, s int, rearm bool) error {
	stop := r.Scratch + batchCodeOff + batchStopOff
	for {
		ws, err := Wait(in.Tid)
		if err != nil {
			return in.rearm(fmt.Errorf("thread %d: run a batch: %w", in.Tid, err))
		}
		if ws.Stopped() && event(ws) == 0 && ws.StopSignal() == syscall.Signal(s) {
			at, err := GetRegs(in.Tid)
			if err != nil {
				return in.rearm(err)
			}
			if at.Rip == stop {
				break
			}
			// An s that was pending before: ignored by the process, dropped.
		} else if ws.Stopped() && event(ws) == 0 {
			in.held = append(in.held, ws.StopSignal())
		}
		// Not stopped, or a group-stop or an event on the way.
		if err := unix.PtraceCont(in.Tid, 0); err != nil {
			return in.rearm(fmt.Errorf("thread %d: run a batch: %w", in.Tid, err))
		}
	}
	if batchHook != nil && batchHook("stopped") {
		return errAbandoned
	}
	if rearm {
		if err := in.rearm(nil); err != nil {
			return err
		}
	}
	if err := vmIO(r.Pid, false, r.Scratch+uint64(b.outOff), b.out, r.Scratch+uint64(b.tabOff), b.tab); err != nil {
		return fmt.Errorf("thread %d: read the results of a batch: %w", in.Tid, err)
	}
	for i := range b.calls {
		b.res[i] = binary.LittleEndian.Uint64(b.tab[i*batchEntry+56:])
	}
	r.batched++
	return nil
}

// rearm puts a thread stopped in (or on its way out of) a batch back at
// its gadget with every signal blocked, as after any injected call, and
// returns err. A thread that did not stop where rtcr expects it (an error
// above) is interrupted first.
func (in *Injector) rearm(err error) error {
	lv := in.live
	if !lv.inBatch {
		return err
	}
	regs, e := GetRegs(in.Tid)
	if e != nil {
		if err != nil {
			return fmt.Errorf("%w (and re-arming thread %d: %v)", err, in.Tid, e)
		}
		return e
	}
	regs.Rip, regs.Rsp, regs.Orig_rax = lv.gadget, lv.uc, ^uint64(0)
	if e := SetRegs(in.Tid, &regs); e != nil {
		return joinErr(err, e)
	}
	// After the registers: killed between the two, the thread still
	// ignores s and runs the gadget.
	if e := SetSigMask(in.Tid, ^uint64(0)); e != nil {
		return joinErr(err, e)
	}
	lv.inBatch = false
	return err
}

// switchFrame makes the frame MoveFrame placed the current one, once the
// thread's rsp points at it, and puts back the bytes under the old one.
func (in *Injector) switchFrame() error {
	lv := in.live
	old, oldBase := lv.restore, lv.base
	lv.uc, lv.base, lv.restore = lv.nextUC, lv.nextBase, lv.nextSaved
	lv.nextUC, lv.nextSaved = 0, nil
	if old != nil {
		if err := WriteMem(in.Tid, oldBase, old); err != nil {
			return fmt.Errorf("thread %d: put back memory at %#x: %w", in.Tid, oldBase, err)
		}
	}
	return nil
}

// batchHook, set by tests, is called when a batch is running and when it
// has stopped; true makes RunBatch return errAbandoned at once, leaving the
// thread where it is (as a killed rtcr would).
var batchHook func(stage string) bool

// errAbandoned is returned when batchHook abandons a batch.
var errAbandoned = errors.New("batch abandoned (test)")

// vmIO writes (or reads, write false) the two buffers a and b at addresses
// aAddr and bAddr of process pid in one process_vm_writev (readv); an
// empty a is left out.
func vmIO(pid int, write bool, aAddr uint64, a []byte, bAddr uint64, b []byte) error {
	var local []unix.Iovec
	var remote []unix.RemoteIovec
	for _, x := range []struct {
		addr uint64
		buf  []byte
	}{{aAddr, a}, {bAddr, b}} {
		if len(x.buf) == 0 {
			continue
		}
		iov := unix.Iovec{Base: &x.buf[0]}
		iov.SetLen(len(x.buf))
		local = append(local, iov)
		remote = append(remote, unix.RemoteIovec{Base: uintptr(x.addr), Len: len(x.buf)})
	}
	if len(local) == 0 {
		return nil
	}
	var n int
	var err error
	if write {
		n, err = unix.ProcessVMWritev(pid, local, remote, 0)
	} else {
		n, err = unix.ProcessVMReadv(pid, local, remote, 0)
	}
	if err == nil && n != len(a)+len(b) {
		err = fmt.Errorf("%d of %d bytes", n, len(a)+len(b))
	}
	if err != nil {
		return fmt.Errorf("%d bytes at %#x and %d at %#x of %d: %w", len(a), aAddr, len(b), bAddr, pid, err)
	}
	return nil
}
