package netlock

import (
	"sync"
	"time"
)

// Lease is how long a lock holds past its last renewal. A dump killed
// with SIGKILL leaves its tree's connections blocked at most this long
// (TCP retransmits what was dropped meanwhile).
const Lease = 10 * time.Second

// renewEvery is how often a Keeper renews: a few renewals may fail or be
// late on a loaded machine before the lease runs out.
const renewEvery = 2 * time.Second

// Keeper renews the lease of one lock until stopped.
type Keeper struct {
	name string
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	err  error // the first renewal that failed
}

// Keep starts renewing lock name, installed with a lease, every few
// seconds.
func Keep(name string) *Keeper {
	k := &Keeper{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	go k.run()
	return k
}

func (k *Keeper) run() {
	defer close(k.done)
	tick := time.NewTicker(renewEvery)
	defer tick.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-tick.C:
			if err := Renew(k.name, time.Now().Add(Lease)); err != nil {
				k.mu.Lock()
				if k.err == nil {
					k.err = err
				}
				k.mu.Unlock()
			}
		}
	}
}

// Err returns the first renewal that failed, nil if none did: the lock
// may then have lapsed, and the connections it held may have been reset.
func (k *Keeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Stop ends the renewals and waits until none runs.
func (k *Keeper) Stop() {
	select {
	case <-k.stop:
	default:
		close(k.stop)
	}
	<-k.done
}
