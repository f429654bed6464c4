package reports

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// What the administrators' event report endpoints (Synapse's admin API)
// read and delete.

// EventReport is a report of an event with the event's sender and the
// room's name and alias.
type EventReport = store.EventReport

// EventReportsQuery is a page of event reports with its filters.
type EventReportsQuery = store.EventReportsQuery

// EventReports returns a page of event reports and how many match.
func (s *Service) EventReports(ctx context.Context, q EventReportsQuery) ([]EventReport, int64, error) {
	return s.store.EventReports(ctx, q)
}

// EventReport returns one event report and the reported event as stored
// (nil when the event is gone).
func (s *Service) EventReport(ctx context.Context, id int64) (*EventReport, json.RawMessage, error) {
	r, err := s.store.GetEventReport(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errcode.NotFound("event report not found")
	}
	if err != nil {
		return nil, nil, err
	}
	pdus, err := s.rooms.PDUs(ctx, []string{r.EventID})
	if err != nil || len(pdus) == 0 {
		return r, nil, nil
	}
	return r, pdus[0], nil
}

// DeleteEventReport deletes one event report.
func (s *Service) DeleteEventReport(ctx context.Context, id int64) error {
	err := s.store.DeleteEventReport(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("event report not found")
	}
	return err
}
