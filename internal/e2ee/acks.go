package e2ee

import "sync"

// ackTable remembers, per device, the newest to-device position delivered
// by a sync and not deleted yet (0: nothing waits), so that a sync only
// writes when it acknowledges something. A device missing from it is
// checked in the database once. Every sync reads it: a plain map under a
// mutex, keyed without building a string.
type ackTable struct {
	mu sync.Mutex
	m  map[deviceKey]int64
}

type deviceKey struct{ userID, deviceID string }

func (t *ackTable) load(k deviceKey) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[k]
	return v, ok
}

func (t *ackTable) store(k deviceKey, pos int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setLocked(k, pos)
}

// storeIfAbsent records pos unless the device is known already.
func (t *ackTable) storeIfAbsent(k deviceKey, pos int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[k]; !ok {
		t.setLocked(k, pos)
	}
}

func (t *ackTable) setLocked(k deviceKey, pos int64) {
	if t.m == nil {
		t.m = map[deviceKey]int64{}
	}
	t.m[k] = pos
}

// clearIf sets the device to "nothing waits" if it still holds old.
func (t *ackTable) clearIf(k deviceKey, old int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[k]; ok && v == old {
		t.m[k] = 0
	}
}

func (t *ackTable) forget(k deviceKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, k)
}
