package image_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/inspect"
)

// FuzzHostileCheckpoint feeds payloads with a valid checksum but hostile
// content (what the owner of an image can write) through everything that
// runs on an image before a process exists: the bounded reader, Validate,
// CheckRestore against this kernel's usual limits for a root-owned and a
// uid-65534-owned image, and the inspect printer. None may panic or hang;
// an image is either refused with an image error or fully printable.
//
//	go test -run X -fuzz FuzzHostileCheckpoint -fuzztime 3m ./internal/image/
func FuzzHostileCheckpoint(f *testing.F) {
	good := image.SamplePayloadForTest()
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"Uid":65534`), []byte(`"Uid":0`), 1))
	f.Add(bytes.Replace(good, []byte(`"Num":3`), []byte(`"Num":4294967301`), 1))
	f.Add(bytes.Replace(good, []byte(`"Tid":4242`), []byte(`"Tid":4242},{"Tid":99999`), 1))
	f.Add(bytes.Replace(good, []byte(`"Signal":15`), []byte(`"Signal":9`), 1))
	f.Add(bytes.Replace(good, []byte(`"Start":4194304`), []byte(`"Start":0`), 1))
	f.Add([]byte(`{"Arch":"x86_64","Processes":[{"Pid":1,"Zombie":true}]}`))
	f.Add([]byte(`{"Arch":"x86_64","Processes":[{"Pid":1,"Threads":[{"Tid":1},{"Tid":1},{}]}]}`))
	sys := image.System{PidMax: 1 << 22, NrOpen: 1 << 20, MmapMinAddr: 1 << 16}
	owners := []image.Owner{{Root: true}, {Uid: 65534, Gids: []uint32{65534}}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > image.MaxManifestSize {
			return
		}
		c, err := image.ReadPayloadForTest(payload)
		if err != nil {
			if c != nil || !errors.Is(err, image.ErrCorrupt) && !errors.Is(err, image.ErrNotImage) {
				t.Fatalf("refusal %v: not an image error, or with a checkpoint", err)
			}
			return
		}
		for _, o := range owners {
			if err := c.CheckRestore(sys, o); err != nil && !errors.Is(err, image.ErrCorrupt) && !errors.Is(err, image.ErrUntrusted) {
				t.Fatalf("CheckRestore: %v wraps neither ErrCorrupt nor ErrUntrusted", err)
			}
		}
		if err := inspect.Write(io.Discard, "fuzz", c); err != nil {
			t.Fatalf("inspect: %v", err)
		}
	})
}
