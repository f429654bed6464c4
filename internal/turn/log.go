package turn

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/logging"
)

// slogFactory hands pion loggers that write to the server's log. pion's
// info lines (every relay address) go to debug; its warnings and errors
// (some per datagram, e.g. sends to a client that just left) are kept
// to a few a second, so that peers cannot flood the log.
type slogFactory struct {
	log   *slog.Logger
	limit *lineLimit
}

func newSlogFactory(log *slog.Logger) slogFactory {
	return slogFactory{log: log, limit: &lineLimit{perSecond: 10}}
}

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{l: f.log.With("scope", scope), limit: f.limit}
}

type slogLogger struct {
	l     *slog.Logger
	limit *lineLimit
}

func (l slogLogger) Trace(string)                      {}
func (l slogLogger) Tracef(string, ...any)             {}
func (l slogLogger) Debug(msg string)                  { l.l.Debug(msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.debugf(format, args...) }
func (l slogLogger) Info(msg string)                   { l.l.Debug(msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.debugf(format, args...) }
func (l slogLogger) Warn(msg string)                   { l.at(slog.LevelWarn, msg) }
func (l slogLogger) Warnf(format string, args ...any) {
	l.at(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (l slogLogger) Error(msg string) { l.at(slog.LevelError, msg) }
func (l slogLogger) Errorf(format string, args ...any) {
	l.at(slog.LevelError, fmt.Sprintf(format, args...))
}

// debugf formats only when debug lines are kept: pion logs some per
// datagram.
func (l slogLogger) debugf(format string, args ...any) {
	if l.l.Enabled(context.Background(), slog.LevelDebug) {
		l.l.Debug(fmt.Sprintf(format, args...))
	}
}

func (l slogLogger) at(level slog.Level, msg string) {
	if l.limit.allow(time.Now()) {
		l.l.Log(context.Background(), level, msg)
	}
}

// lineLimit lets perSecond lines through in each second.
type lineLimit struct {
	perSecond int
	mu        sync.Mutex
	second    int64
	n         int
}

func (l *lineLimit) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	l.n++
	return l.n <= l.perSecond
}
