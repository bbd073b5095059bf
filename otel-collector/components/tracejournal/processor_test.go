package tracejournal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// instance is one processor "process": its telemetry, what it passed on, and the
// processor itself (reached through the factory, as the collector does).
type instance struct {
	tel  *componenttest.Telemetry
	sink *consumertest.TracesSink
	proc processor.Traces
	impl *journalProcessor
}

func newInstance(t *testing.T, cfg *Config) *instance {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	set := processortest.NewNopSettings(componentType)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	sink := new(consumertest.TracesSink)
	// What the factory does, keeping the journalProcessor for white-box checks.
	impl, err := newJournalProcessor(set, cfg, sink)
	require.NoError(t, err)
	proc, err := wrap(context.Background(), set, cfg, sink, impl)
	require.NoError(t, err)
	return &instance{tel: tel, sink: sink, proc: proc, impl: impl}
}

// started is a started instance, shut down when the test ends.
func started(t *testing.T, cfg *Config) *instance {
	t.Helper()
	inst := newInstance(t, cfg)
	require.NoError(t, inst.proc.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { _ = inst.proc.Shutdown(context.Background()) })
	return inst
}

// journaled is a started process that took “batches“; the caller shuts it down, or drops
// it without Shutdown as a SIGKILL would.
func journaled(t *testing.T, cfg *Config, batches ...ptrace.Traces) *instance {
	t.Helper()
	inst := newInstance(t, cfg)
	require.NoError(t, inst.proc.Start(context.Background(), componenttest.NewNopHost()))
	for _, td := range batches {
		require.NoError(t, inst.proc.ConsumeTraces(context.Background(), td))
	}
	return inst
}

func testConfig(t *testing.T) *Config {
	cfg := createDefaultConfig()
	cfg.Directory = t.TempDir()
	cfg.Retention = time.Hour // nothing expires unless a test moves the clock
	require.NoError(t, cfg.Validate())
	return cfg
}

// batch makes one request of `traces` traces with `spans` spans each; trace ids start at seed.
func batch(seed byte, traces, spans int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "journal-test")
	ss := rs.ScopeSpans().AppendEmpty()
	for t := range traces {
		for s := range spans {
			span := ss.Spans().AppendEmpty()
			span.SetTraceID(pcommon.TraceID{seed, byte(t), 1})
			span.SetSpanID(pcommon.SpanID{seed, byte(t), byte(s), 1})
			span.SetName("work")
		}
	}
	return td
}

func counter(t *testing.T, tel *componenttest.Telemetry, name string) int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	var total int64
	switch data := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range data.DataPoints {
			total += dp.Value
		}
	case metricdata.Gauge[int64]:
		for _, dp := range data.DataPoints {
			total += dp.Value
		}
	}
	return total
}

func segments(t *testing.T, cfg *Config) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(cfg.Directory, "*", "*"+segmentSuffix))
	require.NoError(t, err)
	return paths
}

func spanIDs(batches []ptrace.Traces) map[pcommon.SpanID]int {
	ids := map[pcommon.SpanID]int{}
	for _, td := range batches {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					ids[span.SpanID()]++
				}
			}
		}
	}
	return ids
}

func TestKilledProcessJournalIsReplayedWhole(t *testing.T) {
	cfg := testConfig(t)
	cfg.SegmentDuration = 10 * time.Millisecond // several segments
	ctx := context.Background()

	first := newInstance(t, cfg)
	require.NoError(t, first.proc.Start(ctx, componenttest.NewNopHost()))
	var sent []ptrace.Traces
	for i := range 20 {
		td := batch(byte(i), 3, 4)
		sent = append(sent, td)
		require.NoError(t, first.proc.ConsumeTraces(ctx, td))
		if i%5 == 4 {
			time.Sleep(cfg.SegmentDuration) // next batches go to a new segment
		}
	}
	assert.Equal(t, 240, first.sink.SpanCount())
	assert.EqualValues(t, 240, counter(t, first.tel, "otelcol_processor_trace_journal_journaled_spans"))
	before := segments(t, cfg)
	assert.GreaterOrEqual(t, len(before), 4)
	// Killed: no Shutdown, the open segment never closed.

	second := started(t, cfg)

	assert.Equal(t, spanIDs(sent), spanIDs(second.sink.AllTraces()), "replay passes on every span once")
	assert.EqualValues(t, 240, counter(t, second.tel, "otelcol_processor_trace_journal_replayed_spans"))
	assert.EqualValues(t, 60, counter(t, second.tel, "otelcol_processor_trace_journal_replayed_traces"))
	// The old files are gone; the replayed data is journaled again (a second crash keeps it).
	after := segments(t, cfg)
	for _, old := range before {
		assert.NotContains(t, after, old)
	}
	assert.NotEmpty(t, after)
	assert.EqualValues(t, 240, counter(t, second.tel, "otelcol_processor_trace_journal_journaled_spans"))

	// And a third process after a second kill replays them again.
	third := started(t, cfg)
	assert.Equal(t, spanIDs(sent), spanIDs(third.sink.AllTraces()))
}

func TestTornTailIsSkippedAndEarlierRecordsReplayed(t *testing.T) {
	cfg := testConfig(t)
	journaled(t, cfg, batch(1, 2, 2), batch(2, 2, 2)) // then killed
	files := segments(t, cfg)
	require.Len(t, files, 1)
	// Cut the last record in half, as a crash between two page writes would.
	info, err := os.Stat(files[0])
	require.NoError(t, err)
	require.NoError(t, os.Truncate(files[0], info.Size()-10))

	second := started(t, cfg)
	assert.Equal(t, spanIDs([]ptrace.Traces{batch(1, 2, 2)}), spanIDs(second.sink.AllTraces()))
}

func TestRetentionDeletesOldSegmentsOnly(t *testing.T) {
	cfg := testConfig(t)
	cfg.Retention = 20 * time.Second
	cfg.SegmentDuration = time.Second
	ctx := context.Background()
	inst := newInstance(t, cfg)
	// White-box: the processor's journal with a clock the test moves (not started: no sweeper).
	p := inst.impl
	clock := time.Unix(1_700_000_000, 0)
	p.journal.now = func() time.Time { return clock }

	require.NoError(t, p.write(ctx, batch(1, 1, 3)))
	clock = clock.Add(5 * time.Second)
	require.NoError(t, p.write(ctx, batch(2, 1, 3))) // a second segment
	require.Len(t, segments(t, cfg), 2)
	size := p.journal.onDisk()
	require.Positive(t, size)

	clock = clock.Add(16 * time.Second) // first segment 21 s old, second 16 s
	p.sweep(ctx)
	assert.Len(t, segments(t, cfg), 1)
	assert.EqualValues(t, 1, counter(t, inst.tel, "otelcol_processor_trace_journal_deleted_segments"))
	assert.Less(t, p.journal.onDisk(), size)

	clock = clock.Add(5 * time.Second) // the open one idle for 21 s
	p.sweep(ctx)
	assert.Empty(t, segments(t, cfg))
	assert.Zero(t, p.journal.onDisk())
	assert.EqualValues(t, 2, counter(t, inst.tel, "otelcol_processor_trace_journal_deleted_segments"))
	assert.Zero(t, counter(t, inst.tel, "otelcol_processor_trace_journal_size"))

	// Writing after a sweep opens a new segment.
	require.NoError(t, p.write(ctx, batch(3, 1, 1)))
	assert.Len(t, segments(t, cfg), 1)
}

func TestWriteFailureRefusesTheBatch(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	inst := started(t, cfg)
	p, proc := inst.impl, inst.proc

	require.NoError(t, proc.ConsumeTraces(ctx, batch(1, 1, 2)))
	// The disk fails under the journal: its file descriptor is gone.
	require.NoError(t, p.journal.current.Close())
	err := proc.ConsumeTraces(ctx, batch(2, 1, 5))
	require.Error(t, err)
	assert.Equal(t, 2, inst.sink.SpanCount(), "a batch not journaled is not passed on")
	assert.EqualValues(t, 5, counter(t, inst.tel, "otelcol_processor_trace_journal_failed_spans"))

	// The directory is gone and a file stands in its place: no new segment can be made.
	require.NoError(t, os.RemoveAll(p.journal.dir))
	require.NoError(t, os.WriteFile(p.journal.dir, nil, 0o600))
	require.Error(t, proc.ConsumeTraces(ctx, batch(3, 1, 1)))
	assert.Equal(t, 2, inst.sink.SpanCount())
	assert.EqualValues(t, 6, counter(t, inst.tel, "otelcol_processor_trace_journal_failed_spans"))
}

func TestFullJournalRefusesBeyondMaxBytes(t *testing.T) {
	cfg := testConfig(t)
	one, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(batch(1, 1, 4))
	require.NoError(t, err)
	cfg.MaxBytes = int64(2 * (recordHeader + len(one)))
	ctx := context.Background()
	inst := started(t, cfg)

	require.NoError(t, inst.proc.ConsumeTraces(ctx, batch(1, 1, 4)))
	require.NoError(t, inst.proc.ConsumeTraces(ctx, batch(2, 1, 4)))
	err = inst.proc.ConsumeTraces(ctx, batch(3, 1, 4))
	require.ErrorIs(t, err, errJournalFull)
	assert.Equal(t, 8, inst.sink.SpanCount())
	assert.EqualValues(t, 4, counter(t, inst.tel, "otelcol_processor_trace_journal_failed_spans"))
	assert.EqualValues(t, cfg.MaxBytes, counter(t, inst.tel, "otelcol_processor_trace_journal_size"))
}

func TestGracefulShutdownKeepsTheJournal(t *testing.T) {
	// tail_sampling does not decide pending traces on Shutdown: a restart replays them too.
	cfg := testConfig(t)
	ctx := context.Background()
	first := journaled(t, cfg, batch(1, 2, 3))
	require.NoError(t, first.proc.Shutdown(ctx))

	second := started(t, cfg)
	assert.Equal(t, 6, second.sink.SpanCount())
}

func TestConfigValidation(t *testing.T) {
	cfg := createDefaultConfig()
	require.NoError(t, cfg.Validate())
	cfg.Directory = ""
	cfg.Retention = 100 * time.Millisecond
	cfg.MaxBytes = 0
	err := cfg.Validate()
	require.Error(t, err)
	for _, field := range []string{"directory", "retention", "max_bytes"} {
		assert.Contains(t, err.Error(), field)
	}
}

func TestFactoryBuildsAProcessorFromTheDefaultConfig(t *testing.T) {
	factory := NewFactory()
	assert.Equal(t, "trace_journal", factory.Type().String())
	cfg := factory.CreateDefaultConfig().(*Config)
	cfg.Directory = t.TempDir()
	set := processortest.NewNopSettings(componentType)
	proc, err := factory.CreateTraces(context.Background(), set, cfg, new(consumertest.TracesSink))
	require.NoError(t, err)
	assert.NoDirExists(t, filepath.Join(cfg.Directory, "trace_journal"), "creating touches no file")
	require.NoError(t, proc.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, proc.Shutdown(context.Background()))
	assert.False(t, proc.Capabilities().MutatesData)
}
