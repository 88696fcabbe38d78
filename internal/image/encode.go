package image

import (
	"bytes"
	"encoding/json"
	"runtime"
	"sync"
)

// processesNull is how the payload of a Checkpoint without processes
// names the field: marshalCheckpoint puts the processes there.
var processesNull = []byte(`"Processes":null`)

// marshalCheckpoint returns json.Marshal(c), byte for byte, with the
// processes encoded side by side, one goroutine per CPU: the manifest of a
// tree is written while it is frozen, and its processes are most of it.
func marshalCheckpoint(c *Checkpoint) ([]byte, error) {
	n := len(c.Processes)
	workers := min(runtime.NumCPU(), n)
	if workers < 2 {
		return json.Marshal(c)
	}
	rest := *c
	rest.Processes = nil
	head, err := json.Marshal(&rest)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(head, processesNull)
	if at < 0 || bytes.Count(head, processesNull) != 1 {
		return json.Marshal(c) // not the one place expected: no shortcut
	}
	parts := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				parts[i], errs[i] = json.Marshal(&c.Processes[i])
			}
		}()
	}
	wg.Wait()
	size := len(head) + n
	for i, p := range parts {
		if errs[i] != nil {
			return nil, errs[i]
		}
		size += len(p)
	}
	out := make([]byte, 0, size)
	out = append(out, head[:at]...)
	out = append(out, `"Processes":[`...)
	for i, p := range parts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, p...)
	}
	out = append(out, ']')
	out = append(out, head[at+len(processesNull):]...)
	return out, nil
}
