package rtcr_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestForkTree checkpoints a parent with a zombie child, a child in its
// own session and a pipe holding bytes, kills the whole tree, restores it
// and lets the parent reap its children and check their exit codes.
func TestForkTree(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "forker", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	for round := 0; round < 2; round++ {
		dir := tg.dump(false)
		tg.restore(dir)
		tg.done = false
	}
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("forker after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestShellPipeline checkpoints `sh -c 'producer | consumer'`: three
// processes and a pipe between two of them. After the restore the
// consumer goes on finding every number in sequence.
func TestShellPipeline(t *testing.T) {
	testutil.RequireRoot(t)
	seq := testutil.BuildC(t, "seq", false)
	tg := start(t, "/bin/sh", "-c", fmt.Sprintf("%s produce | %s consume", seq, seq))
	progress := func() int {
		lines := testutil.WaitForLines(t, tg.out, 1, 10*time.Second)
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "ok ") {
			t.Fatalf("consumer says %q; output:\n%s", last, tg.output())
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(last, "ok "))
		return n
	}
	testutil.WaitForLines(t, tg.out, 2, 10*time.Second)
	for round := 0; round < 2; round++ {
		dir := tg.dump(false)
		before := progress()
		tg.restore(dir)
		tg.done = false
		n := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
		testutil.WaitForLines(t, tg.out, n+3, 20*time.Second)
		if after := progress(); after <= before {
			t.Fatalf("consumer at %d after restore, was %d", after, before)
		}
	}
	if strings.Contains(tg.output(), "FAIL") {
		t.Fatalf("consumer found a gap:\n%s", tg.output())
	}
	killTree(tg.pid)
}

// killTree kills the children of pid (found through /proc) and pid itself.
func killTree(pid int) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			c, _ := strconv.Atoi(e.Name())
			_ = syscallKill(c)
		}
	}
}

// TestSharedMemoryTree checkpoints a parent and child sharing anonymous
// memory (one page of it dropped from the page tables, the child's view
// starting at an offset, a large region barely touched): after the restore
// they still share it, every byte is back, and the untouched part was
// neither saved nor created.
func TestSharedMemoryTree(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "shmfork", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	for round := 0; round < 2; round++ {
		dir := tg.dump(false)
		c, err := image.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		var saved int64
		for _, p := range c.Processes {
			saved += p.PageFileSize
		}
		if saved > 8<<20 {
			t.Errorf("%d MiB of pages saved: the untouched shared memory was read", saved>>20)
		}
		tg.restore(dir)
		tg.done = false
	}
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("shmfork after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestForkChurn dumps, again and again, a parent that never stops forking
// children that fork grandchildren and exit: every process is frozen by a
// tracer thread of its own, and a child born while its parent was being
// seized starts attached to its parent's tracer, which must then freeze
// it. Each dump leaves the tree running untraced; the last one kills it,
// and the restored parent forks on.
func TestForkChurn(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "forkchurn", false))
	testutil.WaitForLines(t, tg.out, 2, 10*time.Second)
	for round := 0; round < 8; round++ {
		tg.dump(true)
		if tp := tracerPid(tg.pid); tp != 0 {
			t.Fatalf("round %d: parent %d left traced by %d", round, tg.pid, tp)
		}
		n := len(testutil.WaitForLines(t, tg.out, 1, 10*time.Second))
		testutil.WaitForLines(t, tg.out, n+2, 60*time.Second)
	}
	dir := tg.dump(false)
	n := len(testutil.WaitForLines(t, tg.out, 1, time.Second))
	tg.restore(dir)
	testutil.WaitForLines(t, tg.out, n+3, 60*time.Second)
}
