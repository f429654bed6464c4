package rooms

import (
	"context"
	"encoding/json"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// backfillView is what a Viewer needs to judge backfilled events, loaded
// once per Viewer.
type backfillView struct {
	hv      []store.BackfilledHistoryVisibility // newest first
	hasGaps bool                                // older history is still missing here
}

// canSeeBackfilled applies history visibility to a backfilled event,
// whose state is not known here. The rule is conservative:
//
//   - the visibility in force is that of the newest backfilled
//     m.room.history_visibility event older than it; failing that, that
//     of the state stored with it (the state before the earliest event
//     with known state, normally the join) when that state's visibility
//     event is not itself backfilled above it; failing that, "shared" when
//     the whole history is here (no visibility event precedes it), and
//     unknown (nothing visible) while older history is missing;
//   - no user of this server is taken to have been a member then (the
//     server was not in the room), so the event is visible only when
//     world_readable, or shared and the user is joined now. Under invited
//     or joined nobody here sees history from before the join.
func (v *Viewer) canSeeBackfilled(ctx context.Context, row *store.EventRow) (bool, error) {
	if v.bf == nil {
		hv, err := v.s.store.BackfilledHistoryVisibilities(ctx, row.RoomID)
		if err != nil {
			return false, err
		}
		gaps, err := v.s.store.HasBackwardExtremities(ctx, row.RoomID)
		if err != nil {
			return false, err
		}
		v.bf = &backfillView{hv: hv, hasGaps: gaps}
	}
	vis := ""
	for _, h := range v.bf.hv {
		if h.Pos < row.Pos {
			var e struct {
				Content json.RawMessage `json:"content"`
			}
			_ = json.Unmarshal(h.PDU, &e)
			vis = HistoryVisibility(&pdu.Event{Content: e.Content})
			break
		}
	}
	if vis == "" {
		anchor, err := v.s.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.history_visibility"})
		if err != nil {
			return false, err
		}
		above := false
		if anchor != nil {
			for _, h := range v.bf.hv {
				above = above || h.EventID == anchor.ID
			}
		}
		switch {
		case anchor != nil && !above:
			vis = HistoryVisibility(anchor)
		case anchor == nil || !v.bf.hasGaps:
			vis = "shared"
		default:
			vis = "joined"
		}
	}
	switch vis {
	case "world_readable":
		return true, nil
	case "shared":
		return v.current == "join", nil
	}
	return false, nil
}
