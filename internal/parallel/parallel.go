// Package parallel runs independent pieces of work side by side and
// reports the first error in their order.
package parallel

import "sync"

// All runs fns side by side and returns the first error in their order
// (nil if none), once every one has returned.
func All(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Each runs fn for every id of ids at once and returns the first error in
// the order of ids, once every fn has returned.
func Each(ids []int, fn func(id int) error) error {
	fns := make([]func() error, len(ids))
	for i, id := range ids {
		fns[i] = func() error { return fn(id) }
	}
	return All(fns...)
}
