package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"luxchat/internal/config"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Batch sizes: a batch starts at firstBatch events and is resized after
// each so that the room's writer lock is held about targetHold (never
// more than a few times that: the first batch of a run is small).
const (
	firstBatch = 128
	minBatch   = 16
	maxBatch   = 2048
	targetHold = 10 * time.Millisecond
	// mergePages is the work of one step of the search index's merge
	// after a purge (pages written, a few ms of SQLite's writer).
	mergePages = 256
)

// Service runs the purge job. It is safe for concurrent use; runs never
// overlap.
type Service struct {
	cfg        config.Retention
	st         *store.Store
	rooms      *rooms.Service
	deleteBlob func(ctx context.Context, name string) error
	purged     func(roomID string)
	log        *slog.Logger
	now        func() time.Time // see SetClock
	afterBatch func(roomID string, b rooms.HistoryBatch) error

	run sync.Mutex
	// searchMergeOn is set once a run made sure the search index merges
	// automatically (a purge cut short by a crash leaves it paused).
	searchMergeOn bool
	m             metrics
}

// New returns the purge job's service: deleteBlob deletes a media file
// (media.Service.DeleteBlob), purged is told each room whose history a
// run purged (after the room is done: notification counts), reg takes
// the metrics (nil: none kept).
func New(cfg config.Retention, st *store.Store, rs *rooms.Service, deleteBlob func(ctx context.Context, name string) error,
	purged func(roomID string), reg prometheus.Registerer, log *slog.Logger) *Service {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Service{cfg: cfg, st: st, rooms: rs, deleteBlob: deleteBlob, purged: purged, log: log, now: time.Now, m: newMetrics(reg)}
}

// SetClock replaces the clock that lifetimes are measured with
// (time.Now), so that tests move time instead of waiting. Call it before
// the service runs.
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// SetAfterBatch makes f run after each batch (tests: a purge cut short
// by f's error is resumed by the next run).
func (s *Service) SetAfterBatch(f func(roomID string, b rooms.HistoryBatch) error) { s.afterBatch = f }

// Run runs the purge job at once and then every purge_interval until ctx
// ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.PurgeInterval.Duration)
	defer t.Stop()
	for {
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("retention: purge", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Report is what a run did.
type Report struct {
	Rooms  int // rooms whose history was purged
	Events int64
	Media  int64
	// MaxHold is the longest the run held a room's writer lock at once.
	MaxHold time.Duration
	// MaxMerge is the longest step of the search index's merge after a
	// purge (outside any room's lock, one SQLite write transaction).
	MaxMerge time.Duration
	Duration time.Duration
}

// RunOnce purges every room's expired history: first the purges a
// previous run left unfinished (with their cutoff), then every room whose
// policy gives a lifetime, then the media left without a reference.
func (s *Service) RunOnce(ctx context.Context) (Report, error) {
	s.run.Lock()
	defer s.run.Unlock()
	start := time.Now()
	var rep Report
	err := s.runOnce(ctx, &rep)
	rep.Duration = time.Since(start)
	s.m.runs.WithLabelValues(result(err)).Inc()
	s.m.duration.Observe(rep.Duration.Seconds())
	if rep.Events > 0 || err != nil {
		s.log.Info("retention: purge run", "rooms", rep.Rooms, "events", rep.Events, "media", rep.Media,
			"max_hold", rep.MaxHold, "duration", rep.Duration, "err", err)
	}
	return rep, err
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (s *Service) runOnce(ctx context.Context, rep *Report) error {
	if !s.searchMergeOn {
		if err := s.st.PauseSearchMerge(ctx, false); err != nil {
			return err
		}
		s.searchMergeOn = true
	}
	if err := s.drainMedia(ctx, rep); err != nil {
		return err
	}
	list, err := s.st.RetentionRooms(ctx)
	if err != nil {
		return err
	}
	nowMS := s.now().UnixMilli()
	type job struct {
		roomID string
		cutoff int64
	}
	var resumed, fresh []job
	for _, r := range list {
		var policy *RoomPolicy
		if r.Policy != nil {
			p := policyOfPDU(r.Policy)
			policy = &p
		}
		cutoff := int64(0)
		if life, ok := Lifetime(s.cfg, policy); ok {
			cutoff = nowMS - life.Milliseconds()
		}
		switch {
		case r.CutoffTS > 0:
			// A purge cut short: resumed first, up to the later cutoff
			// (the policy may have changed since; never beyond now's).
			resumed = append(resumed, job{r.RoomID, max(r.CutoffTS, cutoff)})
		case cutoff > 0:
			fresh = append(fresh, job{r.RoomID, cutoff})
		}
	}
	for _, j := range append(resumed, fresh...) {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := s.PurgeRoom(ctx, j.roomID, j.cutoff, rep)
		if err != nil {
			return fmt.Errorf("purge %s: %w", j.roomID, err)
		}
		if n > 0 {
			rep.Rooms++
		}
	}
	return s.drainMedia(ctx, rep)
}

// PurgeRoom deletes a room's non-state events sent before cutoffTS (but
// its forward extremities), batch by batch, then the notifications they
// left; the purge is recorded so that a restart resumes it. It returns
// how many events it deleted.
func (s *Service) PurgeRoom(ctx context.Context, roomID string, cutoffTS int64, rep *Report) (int64, error) {
	if rep == nil {
		rep = &Report{}
	}
	if err := s.st.StartRetentionPurge(ctx, roomID, cutoffTS); err != nil {
		return 0, err
	}
	var total int64
	var maxPos int64
	var cursor store.PurgeCursor
	size := firstBatch
	paused := false
	defer func() {
		if paused {
			if err := s.st.PauseSearchMerge(context.WithoutCancel(ctx), false); err != nil {
				s.log.Warn("retention: resume search merging", "err", err)
				s.searchMergeOn = false
			}
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		b, err := s.rooms.PurgeHistory(ctx, roomID, cutoffTS, cursor, size)
		if err != nil {
			return total, err
		}
		s.m.hold.Observe(b.Held.Seconds())
		rep.MaxHold = max(rep.MaxHold, b.Held)
		total += int64(b.Purged)
		rep.Events += int64(b.Purged)
		rep.Media += int64(b.Media)
		s.m.events.Add(float64(b.Purged))
		maxPos = max(maxPos, b.MaxPos)
		cursor = b.Next
		if s.afterBatch != nil {
			if err := s.afterBatch(roomID, b); err != nil {
				return total, err
			}
		}
		if b.Scanned < size {
			break
		}
		if !paused {
			// More than a batch to purge: the search index stops merging
			// in the batches' commits until the purge is done.
			if err := s.st.PauseSearchMerge(ctx, true); err != nil {
				return total, err
			}
			paused = true
		}
		size = nextBatch(size, b.Held)
		// The log the batch filled is checkpointed now, outside the
		// room's lock and without blocking writers, rather than by the
		// commit (a send's) that finds it full.
		if err := s.st.Checkpoint(ctx); err != nil {
			return total, err
		}
		// Let the room's writers (and SQLite's) in between batches.
		pause := b.Held / 8
		if pause < 500*time.Microsecond {
			pause = 500 * time.Microsecond
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pause):
		}
	}
	if paused {
		if err := s.mergeSearch(ctx, rep); err != nil {
			return total, err
		}
	}
	if maxPos > 0 {
		for {
			n, err := s.st.PurgeOrphanNotifications(ctx, roomID, maxPos, 1000)
			if err != nil {
				return total, err
			}
			if n == 0 {
				break
			}
		}
	}
	if err := s.st.FinishRetentionPurge(ctx, roomID); err != nil {
		return total, err
	}
	if total > 0 && s.purged != nil {
		s.purged(roomID)
	}
	return total, nil
}

// mergeSearch merges the search index in short steps (outside any
// room's lock) until nothing is left to merge: the segments the purge
// left mostly deleted are rewritten without their deleted rows.
func (s *Service) mergeSearch(ctx context.Context, rep *Report) error {
	for {
		t0 := time.Now()
		more, err := s.st.MergeSearch(ctx, mergePages)
		if err != nil {
			return err
		}
		d := time.Since(t0)
		rep.MaxMerge = max(rep.MaxMerge, d)
		if !more {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(d/4, 500*time.Microsecond)):
		}
	}
}

// nextBatch sizes the next batch from how long the last one held the
// room's lock.
func nextBatch(size int, held time.Duration) int {
	switch {
	case held < targetHold/2:
		size *= 2
	case held > targetHold*3/2:
		size /= 2
	}
	return min(max(size, minBatch), maxBatch)
}

// drainMedia deletes the media queued by purges: rows and thumbnails in
// a transaction that re-checks that nothing references the media, then
// the files, then the queue row; each step can run again after a crash.
func (s *Service) drainMedia(ctx context.Context, rep *Report) error {
	for {
		queue, err := s.st.RetentionMediaQueue(ctx, 100)
		if err != nil {
			return err
		}
		for _, m := range queue {
			blobs := m.Blobs
			if blobs == nil {
				err := s.st.InTx(ctx, func(tx *store.Tx) error {
					var err error
					blobs, err = tx.DeleteRetainedMedia(ctx, m.MediaID)
					return err
				})
				if err != nil {
					return fmt.Errorf("retention media %s: %w", m.MediaID, err)
				}
				if blobs == nil {
					continue // referenced again, or gone: dequeued
				}
			}
			for _, b := range blobs {
				if err := s.deleteBlob(ctx, b); err != nil {
					return fmt.Errorf("retention media %s: %w", m.MediaID, err)
				}
			}
			if err := s.st.DoneRetainedMedia(ctx, m.MediaID); err != nil {
				return err
			}
			s.m.media.Inc()
		}
		if len(queue) < 100 {
			return nil
		}
	}
}

// ErrStop is what an after-batch hook returns to cut a purge short as a
// crash would (tests).
var ErrStop = errors.New("retention: stopped")
