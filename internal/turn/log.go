package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// slogFactory hands pion loggers that write to the server's log. pion's
// info lines (every relay address) go to debug.
type slogFactory struct{ log *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{f.log.With("scope", scope)}
}

type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Trace(msg string)                  {}
func (l slogLogger) Tracef(format string, args ...any) {}
func (l slogLogger) Debug(msg string)                  { l.l.Debug(msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.debugf(format, args...) }
func (l slogLogger) Info(msg string)                   { l.l.Debug(msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.debugf(format, args...) }
func (l slogLogger) Warn(msg string)                   { l.l.Warn(msg) }
func (l slogLogger) Warnf(format string, args ...any)  { l.l.Warn(fmt.Sprintf(format, args...)) }
func (l slogLogger) Error(msg string)                  { l.l.Error(msg) }
func (l slogLogger) Errorf(format string, args ...any) { l.l.Error(fmt.Sprintf(format, args...)) }

// debugf formats only when debug lines are kept: pion logs some per
// datagram.
func (l slogLogger) debugf(format string, args ...any) {
	if l.l.Enabled(context.Background(), slog.LevelDebug) {
		l.l.Debug(fmt.Sprintf(format, args...))
	}
}
