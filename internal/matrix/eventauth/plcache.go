package eventauth

import (
	"sync"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// The checker parses the power levels in force for every event it checks,
// and a room's events mostly share one power levels event: parsed levels
// are kept, keyed by the (immutable) events they come from. The checker
// only reads them.
type plKey struct {
	v          *roomversion.Version
	create, pl *pdu.Event
}

var plCache struct {
	mu sync.Mutex
	m  map[plKey]*PowerLevels
}

const plCacheSize = 256

func cachedPowerLevels(v *roomversion.Version, create, pl *pdu.Event) *PowerLevels {
	if pl == nil || create == nil {
		return roomPowerLevels(v, create, pl)
	}
	k := plKey{v, create, pl}
	plCache.mu.Lock()
	p := plCache.m[k]
	plCache.mu.Unlock()
	if p != nil {
		return p
	}
	p = roomPowerLevels(v, create, pl)
	plCache.mu.Lock()
	if plCache.m == nil || len(plCache.m) >= plCacheSize {
		plCache.m = make(map[plKey]*PowerLevels, plCacheSize)
	}
	plCache.m[k] = p
	plCache.mu.Unlock()
	return p
}
