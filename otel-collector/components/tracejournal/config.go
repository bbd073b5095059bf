// Package tracejournal is a traces processor that writes every batch it accepts to a
// segmented journal on local disk before passing it on, and replays what a previous
// process left there when it starts.
//
// Why: the tail_sampling processor (v0.161.0) holds every trace in memory for its
// decision_wait, keeps nothing on disk and does not decide pending traces on Shutdown.
// A gateway collector killed (SIGKILL, OOM kill, node loss of the process) loses every
// trace it had already acknowledged to the agent but not yet decided. Placed in front of
// tail_sampling, this journal keeps each accepted batch for `retention`, long enough for
// the trace to be decided and handed to the exporter's persistent queue; after a crash
// the next process feeds the journal back into tail_sampling, which decides it again.
package tracejournal // import "modelobs.local/tracejournal"

import (
	"errors"
	"time"
)

// Config of the trace journal.
type Config struct {
	// Directory holding the segment files. The processor keeps its files in a
	// subdirectory named after its component id, so two journals never share files.
	// It must survive a process restart (a volume in a container), and belong to
	// exactly one collector process.
	Directory string `mapstructure:"directory"`

	// Retention: how long a segment is kept after its last write. It must cover the
	// time from a span's arrival until its trace has reached the exporter's persistent
	// queue: tail_sampling's decision_wait + its 1 s decision tick + the batch
	// processor's timeout behind it + a margin. Shorter loses traces on a crash;
	// longer only costs disk and more duplicates replayed after a crash.
	Retention time.Duration `mapstructure:"retention"`

	// SegmentDuration: a new segment file is started when the current one is older
	// than this. Deletion works a segment at a time, so a kept span lives on disk
	// between Retention and Retention + SegmentDuration.
	SegmentDuration time.Duration `mapstructure:"segment_duration"`

	// MaxBytes bounds the journal on disk. A batch that would take it beyond the bound
	// is refused (the receiver answers "retry later", the sender keeps it), never
	// accepted without being journaled.
	MaxBytes int64 `mapstructure:"max_bytes"`

	// Fsync every write. Off by default: a plain write reaches the page cache and
	// survives the process being killed; only a kernel crash or power loss needs
	// fsync, at the cost of one disk flush per batch.
	Fsync bool `mapstructure:"fsync"`
}

func createDefaultConfig() *Config {
	return &Config{
		Directory:       "/var/lib/otelcol/storage/trace_journal",
		Retention:       20 * time.Second,
		SegmentDuration: time.Second,
		MaxBytes:        1 << 30,
	}
}

// Validate checks the config when the collector loads it.
func (c *Config) Validate() error {
	var errs []error
	if c.Directory == "" {
		errs = append(errs, errors.New("directory must be set"))
	}
	if c.SegmentDuration <= 0 {
		errs = append(errs, errors.New("segment_duration must be positive"))
	}
	if c.Retention < c.SegmentDuration {
		errs = append(errs, errors.New("retention must be at least segment_duration"))
	}
	if c.MaxBytes <= 0 {
		errs = append(errs, errors.New("max_bytes must be positive"))
	}
	return errors.Join(errs...)
}
