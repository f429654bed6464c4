package fedapi

import (
	"context"
	"encoding/json"
	"runtime"
	"sync"
	"sync/atomic"

	"luxchat/internal/matrix/pdu"
)

// parsePDUs parses the PDUs of a transaction on every core: each parse
// computes the event id (a canonical JSON encoding and a hash), which is
// independent of the other PDUs.
func (a *API) parsePDUs(ctx context.Context, raws []json.RawMessage) ([]*pdu.Event, []error) {
	evs := make([]*pdu.Event, len(raws))
	errs := make([]error, len(raws))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(raws)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(raws); i = int(next.Add(1)) - 1 {
				evs[i], errs[i] = a.RoomFed.ParsePDU(ctx, raws[i])
			}
		}()
	}
	wg.Wait()
	return evs, errs
}
