package rtcr_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestPeriodicIncremental runs a writer under `rtcr run --every 100ms
// --keep 3` while it writes random pages for 40 rounds: the log lines
// show a full first checkpoint, increments and merges; the series keeps 3
// images, the oldest full; rtcr and the tree are SIGKILLed, and latest
// and then the oldest kept are restored: each restored program replays
// the rounds after its checkpoint, checks every page against its stamps,
// and its stamps sum to the model's at the last round.
func TestPeriodicIncremental(t *testing.T) {
	testutil.RequireRoot(t)
	ck := filepath.Join(t.TempDir(), "ck")
	const npages = 256
	tg := start(t, testutil.BuildRtcr(t), "run", "--dir", ck, "--every", "100ms", "--keep", "3", "--",
		testutil.BuildC(t, "dirtywriter", false), strconv.Itoa(npages))
	testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
	var base uint64
	if _, err := fmt.Sscanf(tg.output(), "ready %x", &base); err != nil {
		t.Fatalf("writer output %q: %v", tg.output(), err)
	}
	w := &writer{target: tg, base: base, npages: npages, stamps: make([]int64, npages)}
	for p := range w.stamps {
		w.stamps[p] = int64(1000000 + p%7)
	}
	sums := map[int64]int{w.sum(): 0} // verify sum -> round
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	deadline := time.Now().Add(120 * time.Second)
	for r := 1; r <= 40 || latestNumber(ck) < 8; r++ {
		if time.Now().After(deadline) {
			t.Fatalf("after 120 s: round %d, latest checkpoint %d; output:\n%s", r, latestNumber(ck), tg.output())
		}
		line := "w"
		for k := 0; k < 4; k++ {
			line += " " + strconv.Itoa(rng.IntN(npages))
		}
		w.run("", line)
		sums[w.sum()] = w.round
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
	}
	init := nsInit(t, tg.pid)
	unix.Kill(tg.pid, unix.SIGKILL) // rtcr run, perhaps while it checkpoints or merges
	unix.Kill(init, unix.SIGKILL)
	tg.waitOriginal()
	for !pidFree(init) {
		time.Sleep(10 * time.Millisecond)
	}
	out := tg.output()
	if !regexp.MustCompile(`checkpoint 1 into \S+/1 \(full, \d+ pages copied`).MatchString(out) ||
		!regexp.MustCompile(`\(incremental on \d+, \d+ pages in parents, \d+ pages copied`).MatchString(out) ||
		!strings.Contains(out, "merged into") {
		t.Fatalf("log lines: want a full first checkpoint, increments and merges:\n%s", out)
	}
	latest := latestNumber(ck)
	var kept []int
	for n := 1; n <= latest; n++ {
		if _, err := os.Stat(filepath.Join(ck, strconv.Itoa(n), image.ManifestName)); err == nil {
			kept = append(kept, n)
		}
	}
	// 4 when rtcr was killed between the link to a new one and the
	// removal of the oldest.
	if len(kept) < 3 || len(kept) > 4 {
		t.Fatalf("checkpoints %v kept up to latest %d, want 3", kept, latest)
	}
	oldest := filepath.Join(ck, strconv.Itoa(kept[0]))
	t.Logf("%d rounds, checkpoints %v kept", w.round, kept)
	// A restored program replays the rounds after its checkpoint from
	// the command files as they were (one may be open in it: rewriting
	// it would change a file it holds, which the restore refuses), then
	// verifies every page against the stamps of the last round.
	w.send("", w.round+1, "verify")
	for _, dir := range []string{filepath.Join(ck, "latest"), oldest} {
		before := len(tg.output())
		st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
		if err != nil {
			t.Fatalf("restore %s: %v", dir, err)
		}
		tg.pid, tg.done = st.Pid, false
		if code := tg.wait(60 * time.Second); code != 0 {
			t.Fatalf("restored %s: exit %d; output:\n%s", dir, code, tg.output()[before:])
		}
		m := regexp.MustCompile(`OK (-?\d+)\n`).FindStringSubmatch(tg.output()[before:])
		if m == nil {
			t.Fatalf("restored %s: no OK line:\n%s", dir, tg.output()[before:])
		}
		sum, _ := strconv.ParseInt(m[1], 10, 64)
		r, ok := sums[sum]
		if !ok {
			t.Fatalf("restored %s: its stamps sum to %d, the model's at no round", dir, sum)
		}
		if r != w.round {
			t.Fatalf("restored %s: its stamps are those of round %d after the replay, want %d", dir, r, w.round)
		}
	}
}
