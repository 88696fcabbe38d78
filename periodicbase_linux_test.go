package rtcr_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestKillPeriodicMergeBase SIGKILLs `rtcr run --every 30ms --keep 2` of
// a 16 MiB writer that writes a few pages between checkpoints, so that
// every removal merges the increment into the full base (its pages
// appended to the base's page file, which the increment takes), at
// random moments, merges included; each time `latest` is restored (a
// merge the kill interrupted is finished first) and the restored program
// replays the rounds after its checkpoint and checks every page.
func TestKillPeriodicMergeBase(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildRtcr(t)
	prog := testutil.BuildC(t, "dirtywriter", false)
	const npages = 4096
	rng := rand.New(rand.NewPCG(11, uint64(time.Now().UnixNano())))
	based := false
	for i := 0; i < 4; i++ {
		ck := filepath.Join(t.TempDir(), "ck")
		tg := start(t, bin, "run", "--dir", ck, "--every", "30ms", "--keep", "2", "--", prog, strconv.Itoa(npages))
		testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
		rm := regexp.MustCompile(`ready ([0-9a-f]+)`).FindStringSubmatch(tg.output())
		if rm == nil {
			t.Fatalf("writer output %q: no ready line", tg.output())
		}
		base, _ := strconv.ParseUint(rm[1], 16, 64)
		w := &writer{target: tg, base: base, npages: npages, stamps: make([]int64, npages)}
		for p := range w.stamps {
			w.stamps[p] = int64(1000000 + p%7)
		}
		sums := map[int64]int{w.sum(): 0}
		deadline := time.Now().Add(60 * time.Second)
		for latestNumber(ck) < 5 || !strings.Contains(tg.output(), "appended") {
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s: latest checkpoint %d; output:\n%s", latestNumber(ck), tg.output())
			}
			w.run("", fmt.Sprintf("w %d %d %d", rng.IntN(npages), rng.IntN(npages), rng.IntN(npages)))
			sums[w.sum()] = w.round
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		init := nsInit(t, tg.pid)
		unix.Kill(tg.pid, unix.SIGKILL) // rtcr run, perhaps in a merge
		unix.Kill(init, unix.SIGKILL)
		tg.waitOriginal()
		waitGone(t, init)
		out := tg.output()
		based = based || regexp.MustCompile(`merged into \d+ \(its \d+ pages appended`).MatchString(out)
		w.send("", w.round+1, "verify")
		before := len(tg.output())
		st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: filepath.Join(ck, "latest")})
		if err != nil {
			t.Fatalf("kill %d: restore latest (%d): %v; output:\n%s", i, latestNumber(ck), err, out)
		}
		tg.pid, tg.done = st.Pid, false
		if code := tg.wait(60 * time.Second); code != 0 {
			t.Fatalf("kill %d: restored latest: exit %d; output:\n%s", i, code, tg.output()[before:])
		}
		m := regexp.MustCompile(`OK (-?\d+)\n`).FindStringSubmatch(tg.output()[before:])
		if m == nil {
			t.Fatalf("kill %d: restored latest: no OK line:\n%s", i, tg.output()[before:])
		}
		sum, _ := strconv.ParseInt(m[1], 10, 64)
		if r, ok := sums[sum]; !ok || r != w.round {
			t.Fatalf("kill %d: restored latest: its stamps sum to %d (round %d, %v), want round %d", i, sum, r, ok, w.round)
		}
		t.Logf("kill %d: latest %d restored and verified", i, latestNumber(ck))
	}
	if !based {
		t.Fatal("no merge into the base was logged")
	}
}
