package rooms

import (
	"slices"
	"sync"
)

// Timeline gaps: an event from another server whose prev events could not
// all be fetched joins the timeline after a hole in the room's history.
// A sync whose window holds such an event shows the timeline from it on,
// marked limited, rather than passing over the hole as if the events
// around it were contiguous.
//
// Gaps are kept in memory, recorded in Tx.OnCommitted (so before the
// event's position is visible to syncs); a sync shortly after the hole is
// what they are for, so they are not kept across restarts. Each room keeps
// its newest gaps only.

const maxGapsPerRoom = 32

type timelineGaps struct {
	mu     sync.Mutex
	byRoom map[string][]int64 // ascending positions
}

func (g *timelineGaps) add(roomID string, pos int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byRoom == nil {
		g.byRoom = map[string][]int64{}
	}
	l := g.byRoom[roomID]
	i, found := slices.BinarySearch(l, pos)
	if found {
		return
	}
	l = slices.Insert(l, i, pos)
	if len(l) > maxGapsPerRoom {
		l = slices.Clone(l[len(l)-maxGapsPerRoom:])
	}
	g.byRoom[roomID] = l
}

// newest returns the newest gap position in (lo, hi], or 0.
func (g *timelineGaps) newest(roomID string, lo, hi int64) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.byRoom[roomID]
	for i := len(l) - 1; i >= 0; i-- {
		if l[i] <= hi {
			if l[i] > lo {
				return l[i]
			}
			break
		}
	}
	return 0
}

// GapAt returns the position of the newest event of a room in (lo, hi]
// that follows a hole in its history here, or 0 when there is none.
func (s *Service) GapAt(roomID string, lo, hi int64) int64 {
	return s.gaps.newest(roomID, lo, hi)
}
