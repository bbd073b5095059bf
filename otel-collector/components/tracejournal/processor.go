package tracejournal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// journalProcessor journals each batch, then lets processorhelper pass it on.
type journalProcessor struct {
	logger  *zap.Logger
	journal *journal
	next    consumer.Traces
	metrics *journalMetrics

	marshaler   ptrace.ProtoMarshaler
	unmarshaler ptrace.ProtoUnmarshaler

	stop    chan struct{}
	stopped sync.WaitGroup
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

func newJournalProcessor(set processor.Settings, cfg *Config, next consumer.Traces) (*journalProcessor, error) {
	// One subdirectory per component id: two journals in one collector never mix files.
	dir := filepath.Join(cfg.Directory, unsafeName.ReplaceAllString(set.ID.String(), "_"))
	j := newJournal(cfg, dir)
	m, err := newJournalMetrics(set.TelemetrySettings, set.ID, j)
	if err != nil {
		return nil, err
	}
	return &journalProcessor{
		logger:  set.Logger,
		journal: j,
		next:    next,
		metrics: m,
		stop:    make(chan struct{}),
	}, nil
}

// processTraces journals the batch before it goes on. A failed write returns the error:
// the receiver refuses the request as retryable and the sender (the agent's persistent
// queue) sends it again. Nothing is passed on unjournaled. The price: the gateway's
// span_metrics connector, in the pipeline before this one, counted that batch already
// and counts it again on the retry, like any refusal behind it (memory_limiter).
func (p *journalProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	return td, p.write(ctx, td)
}

func (p *journalProcessor) write(ctx context.Context, td ptrace.Traces) error {
	spans := int64(td.SpanCount())
	payload, err := p.marshaler.MarshalTraces(td)
	if err == nil {
		err = p.journal.append(payload)
	}
	if err != nil {
		reason := "write"
		if errors.Is(err, errJournalFull) {
			reason = "full"
		}
		p.metrics.failed.Add(ctx, spans, metric.WithAttributes(p.metrics.id, attribute.String("reason", reason)))
		return err
	}
	p.metrics.journaled.Add(ctx, spans, p.metrics.attrs)
	return nil
}

// start replays what a previous process left in the journal, then starts the sweeper.
//
// Replay runs before Start returns: the collector starts components downstream first and
// receivers last, so tail_sampling is running and no new data arrives meanwhile. Each
// replayed batch is journaled again (it is as undecided as new data) before it is passed
// on, and a leftover file is deleted only once all of it is journaled again; so a second
// crash during replay loses nothing either. If it cannot be journaled again, start fails
// and keeps the file: a collector that cannot journal must not accept data.
//
// Replayed traces that the killed process had already decided reach the exporter twice.
// Jaeger's query service drops identical span copies when it reads a trace, so a
// duplicate costs storage, not correctness (otel-collector/README.md).
func (p *journalProcessor) start(ctx context.Context, _ component.Host) error {
	leftovers, err := p.journal.leftovers()
	if err != nil {
		return fmt.Errorf("trace journal: listing %s: %w", p.journal.dir, err)
	}
	started := time.Now()
	traces := map[pcommon.TraceID]struct{}{}
	var spans, torn, refused int64
	for _, path := range leftovers {
		cut, err := readSegment(path, func(payload []byte) error {
			td, err := p.unmarshaler.UnmarshalTraces(payload)
			if err != nil {
				torn++ // CRC matched but it does not decode: skip the record
				return nil
			}
			if err := p.write(ctx, td); err != nil {
				return err
			}
			n := int64(td.SpanCount())
			collectTraceIDs(td, traces)
			if err := p.next.ConsumeTraces(ctx, td); err != nil {
				// Journaled again: the next start replays it if this process dies.
				refused += n
				p.logger.Warn("trace journal: next consumer refused a replayed batch", zap.Error(err))
			}
			spans += n
			p.metrics.replayed.Add(ctx, n, p.metrics.attrs)
			return nil
		})
		if err != nil {
			return fmt.Errorf("trace journal: replaying %s: %w", path, err)
		}
		if cut {
			torn++
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("trace journal: removing replayed %s: %w", path, err)
		}
	}
	p.metrics.replayedTraces.Add(ctx, int64(len(traces)), p.metrics.attrs)
	if len(leftovers) > 0 {
		p.logger.Info("trace journal replayed",
			zap.Int("segments", len(leftovers)),
			zap.Int64("spans", spans),
			zap.Int("traces", len(traces)),
			zap.Int64("refused_spans", refused),
			zap.Int64("torn_records", torn),
			zap.Duration("took", time.Since(started)))
	}
	p.stopped.Add(1)
	go p.sweepEvery(p.journal.segmentDuration)
	return nil
}

func collectTraceIDs(td ptrace.Traces, into map[pcommon.TraceID]struct{}) {
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				into[span.TraceID()] = struct{}{}
			}
		}
	}
}

// sweepEvery deletes expired segments on a timer, so an idle journal empties too.
func (p *journalProcessor) sweepEvery(interval time.Duration) {
	defer p.stopped.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-ticker.C:
			p.sweep(context.Background())
		}
	}
}

func (p *journalProcessor) sweep(ctx context.Context) {
	deleted, err := p.journal.sweep()
	p.metrics.deleted.Add(ctx, int64(deleted), p.metrics.attrs)
	if err != nil {
		p.logger.Warn("trace journal: deleting an expired segment failed", zap.Error(err))
	}
}

// shutdown stops the sweeper and closes the open segment, keeping every file (see close).
func (p *journalProcessor) shutdown(context.Context) error {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.stopped.Wait()
	p.journal.close()
	return p.metrics.registration.Unregister()
}

// journalMetrics: the processor's own counters, exported with the collector's otelcol_*
// metrics (Prometheus drops no suffix: otelcol_processor_trace_journal_*).
type journalMetrics struct {
	id             attribute.KeyValue // processor=<component id>, as processorhelper's own metrics
	attrs          metric.MeasurementOption
	journaled      metric.Int64Counter
	replayed       metric.Int64Counter
	replayedTraces metric.Int64Counter
	deleted        metric.Int64Counter
	failed         metric.Int64Counter
	registration   metric.Registration
}

func newJournalMetrics(set component.TelemetrySettings, id component.ID, j *journal) (*journalMetrics, error) {
	meter := set.MeterProvider.Meter("modelobs.local/tracejournal")
	var m journalMetrics
	m.id = attribute.String("processor", id.String())
	m.attrs = metric.WithAttributes(m.id)
	var errs []error
	counter := func(name, unit, description string) metric.Int64Counter {
		c, err := meter.Int64Counter("otelcol_processor_trace_journal_"+name,
			metric.WithDescription(description), metric.WithUnit(unit))
		errs = append(errs, err)
		return c
	}
	m.journaled = counter("journaled_spans", "{spans}",
		"Spans written to the trace journal (including replayed ones journaled again).")
	m.replayed = counter("replayed_spans", "{spans}",
		"Spans a previous process left in the journal, replayed at start.")
	m.replayedTraces = counter("replayed_traces", "{traces}",
		"Distinct trace ids among the replayed spans.")
	m.deleted = counter("deleted_segments", "{segments}",
		"Segment files deleted after the retention.")
	m.failed = counter("failed_spans", "{spans}",
		"Spans refused because the journal could not take them (reason: write, full).")
	size, err := meter.Int64ObservableGauge("otelcol_processor_trace_journal_size",
		metric.WithDescription("Bytes in the journal's segment files written by this process."),
		metric.WithUnit("By"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(size, j.onDisk(), m.attrs)
		return nil
	}, size)
	if err != nil {
		return nil, err
	}
	m.registration = reg
	return &m, nil
}
