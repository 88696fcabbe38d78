// goprog: a goroutine-heavy Go program that checks its own results across
// a checkpoint. Go programs are multi-threaded, block in futex, epoll_pwait
// and nanosleep, use an eventfd and an epoll instance (the runtime's
// poller), signals (SIGURG preemption) and per-thread sigaltstacks.
//
// Protocol: goprog <trigger>
// 64 goroutines compute SHA-256 chains over and over and compare each
// chain's end with the value computed at start; the main goroutine prints
// "ready" after every worker finished a round, waits (time.Sleep) for the
// trigger file, lets every worker finish 20 more rounds, and prints "OK"
// (exit 0) or "FAIL ..." (exit 1).
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const workers = 64

func chain(seed int) [32]byte {
	h := sha256.Sum256([]byte(fmt.Sprint("seed", seed)))
	for i := 0; i < 2000; i++ {
		h = sha256.Sum256(h[:])
	}
	return h
}

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: goprog TRIGGER")
		os.Exit(2)
	}
	var want [workers][32]byte
	for i := range want {
		want[i] = chain(i)
	}
	var rounds [workers]atomic.Int64
	var bad atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	results := make(chan int, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for !stop.Load() {
				if chain(w) != want[w] {
					bad.Add(1)
				}
				rounds[w].Add(1)
				select {
				case results <- w:
				default:
				}
				time.Sleep(time.Millisecond)
			}
		}(w)
	}
	go func() {
		for range results {
		}
	}()
	waitRounds := func(min [workers]int64) {
		for {
			done := true
			for w := range rounds {
				if rounds[w].Load() < min[w] {
					done = false
				}
			}
			if done {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	var one [workers]int64
	for i := range one {
		one[i] = 1
	}
	waitRounds(one)
	fmt.Println("ready")
	for {
		if _, err := os.Stat(os.Args[1]); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var more [workers]int64
	for w := range more {
		more[w] = rounds[w].Load() + 20
	}
	waitRounds(more)
	stop.Store(true)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		fmt.Println("FAIL", n, "chains differ")
		os.Exit(1)
	}
	fmt.Println("OK")
}
