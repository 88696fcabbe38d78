package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// CRIU is what the shapes measure of CRIU, the peer, in the same run:
// best of the runs, as for rtcr.
type CRIU struct {
	// Freeze is how long the tree stood stopped: CRIU's own freezing_time
	// plus frozen_time from its stats-dump file.
	Freeze time.Duration
	// Dump and Restore are the wall times of `criu dump` and
	// `criu restore -d`, the start of the criu process included (Exec).
	Dump, Restore time.Duration
	// Exec is the wall time of `criu --version`: what starting criu
	// costs, included in Dump and Restore.
	Exec time.Duration
	// DumpCPU is the CPU time (user and system) of the `criu dump`
	// process, its start included; as rtcr's, it leaves out what runs in
	// the dumped processes (CRIU's parasite, rtcr's injected calls).
	DumpCPU time.Duration
}

// criuShapeOnce starts the program, waits for its n threads or processes,
// dumps it with CRIU at path (killing it), restores it with CRIU and kills
// the restored tree.
func criuShapeOnce(path, work string, text []byte, n int, threads bool) (CRIU, error) {
	var c CRIU
	p, err := startText(work, text)
	if err != nil {
		return c, err
	}
	pid := p.Pid
	_ = p.Release()
	defer killTree(pid)
	if err := waitShape(pid, n, threads); err != nil {
		return c, err
	}
	pids := []int{pid}
	if m, err := tree.ChildMap(); err == nil {
		pids = append(pids, m[pid]...)
	}
	dir := filepath.Join(work, "criu-img")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c, err
	}
	defer os.RemoveAll(dir)
	// The shapes share rtcr's session and have no terminal: --shell-job.
	t0 := time.Now()
	if c.DumpCPU, err = runCRIU(path, dir, "dump", "-t", strconv.Itoa(pid), "--shell-job"); err != nil {
		return c, err
	}
	c.Dump = time.Since(t0)
	if c.Freeze, err = criuFrozen(filepath.Join(dir, "stats-dump")); err != nil {
		return c, err
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil)
	if err := waitGone(pids); err != nil {
		return c, err
	}
	t0 = time.Now()
	// -d: criu exits once the tree runs; the tree is init's then.
	if _, err := runCRIU(path, dir, "restore", "--shell-job", "-d"); err != nil {
		return c, err
	}
	c.Restore = time.Since(t0)
	return c, nil
}

// runCRIU runs criu verb in image directory dir with args, its log in
// dir/VERB.log (quoted in the error if it fails), and returns the CPU time
// the criu process took.
func runCRIU(path, dir, verb string, args ...string) (time.Duration, error) {
	logName := verb + ".log"
	cmd := exec.Command(path, append([]string{verb, "-D", dir, "-o", logName, "-v2"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, logName))
		return 0, fmt.Errorf("criu %s: %w: %s%s", verb, err, out, tail(string(log), 2000))
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

// criuExec measures starting criu: the wall time of `criu --version`.
func criuExec(path string) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.Command(path, "--version").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s --version: %w: %s", path, err, out)
	}
	return time.Since(t0), nil
}

// criuFrozen reads CRIU's stats-dump file (a service image: two magics, a
// 32-bit length, a stats_entry protobuf message) and returns
// freezing_time + frozen_time of its dump_stats_entry (microseconds).
func criuFrozen(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if len(b) < 12 {
		return 0, fmt.Errorf("%s: %d bytes, too short", path, len(b))
	}
	n := int(binary.LittleEndian.Uint32(b[8:12]))
	if 12+n > len(b) {
		return 0, fmt.Errorf("%s: entry of %d bytes in a file of %d", path, n, len(b))
	}
	dump, ok := protoField(b[12:12+n], 1)
	if !ok {
		return 0, fmt.Errorf("%s: no dump_stats_entry", path)
	}
	var us uint64
	for _, f := range []int{1, 2} { // freezing_time, frozen_time
		v, ok := protoVarint(dump, f)
		if !ok {
			return 0, fmt.Errorf("%s: no field %d in dump_stats_entry", path, f)
		}
		us += v
	}
	return time.Duration(us) * time.Microsecond, nil
}

// protoField returns the bytes of length-delimited field num of msg.
func protoField(msg []byte, num int) ([]byte, bool) {
	var out []byte
	found := false
	walkProto(msg, func(f, wire int, v uint64, b []byte) {
		if f == num && wire == 2 {
			out, found = b, true
		}
	})
	return out, found
}

// protoVarint returns varint field num of msg.
func protoVarint(msg []byte, num int) (uint64, bool) {
	var out uint64
	found := false
	walkProto(msg, func(f, wire int, v uint64, b []byte) {
		if f == num && wire == 0 {
			out, found = v, true
		}
	})
	return out, found
}

// walkProto calls fn for every field of msg (varints, length-delimited and
// fixed ones), stopping at the first malformed one.
func walkProto(msg []byte, fn func(num, wire int, v uint64, b []byte)) {
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return
		}
		msg = msg[n:]
		num, wire := int(key>>3), int(key&7)
		switch wire {
		case 0:
			v, n := binary.Uvarint(msg)
			if n <= 0 {
				return
			}
			fn(num, wire, v, nil)
			msg = msg[n:]
		case 1, 5:
			size := 8
			if wire == 5 {
				size = 4
			}
			if len(msg) < size {
				return
			}
			msg = msg[size:]
		case 2:
			l, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < l {
				return
			}
			fn(num, wire, 0, msg[n:n+int(l)])
			msg = msg[n+int(l):]
		default:
			return
		}
	}
}

// ErrNoCRIU reports that the CRIU binary given cannot be run.
var ErrNoCRIU = errors.New("criu not usable")

// CheckCRIU checks that path is a CRIU binary that runs.
func CheckCRIU(path string) error {
	if _, err := criuExec(path); err != nil {
		return fmt.Errorf("%w: %v", ErrNoCRIU, err)
	}
	return nil
}

// PrintCRIU writes rtcr's shape results against CRIU's, as times and as
// ratios rtcr/CRIU (below 1: rtcr is faster).
func PrintCRIU(w io.Writer, shapes []Shape) {
	if len(shapes) == 0 || shapes[0].CRIU == nil {
		return
	}
	fmt.Fprintf(w, "against CRIU (best of runs; CRIU's times include starting criu, %v here; dump CPU: of rtcr, and of the criu process)\n\n",
		shapes[0].CRIU.Exec.Round(time.Millisecond/10))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tfrozen rtcr\tCRIU\trtcr/CRIU\tdump rtcr\tCRIU\trtcr/CRIU\trestore rtcr\tCRIU\trtcr/CRIU\tdump CPU rtcr\tCRIU\trtcr/CRIU\t")
	for _, s := range shapes {
		c := s.CRIU
		r := func(d time.Duration) string { return d.Round(time.Millisecond / 10).String() }
		x := func(a, b time.Duration) string { return fmt.Sprintf("%.2f", a.Seconds()/b.Seconds()) }
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Name,
			r(s.Freeze), r(c.Freeze), x(s.Freeze, c.Freeze),
			r(s.Dump), r(c.Dump), x(s.Dump, c.Dump),
			r(s.Restore), r(c.Restore), x(s.Restore, c.Restore),
			r(s.DumpCPU), r(c.DumpCPU), x(s.DumpCPU, c.DumpCPU))
	}
	tw.Flush()
}
