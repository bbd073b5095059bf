package tracejournal

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
)

// componentType is the name used in collector configs: `trace_journal`.
var componentType = component.MustNewType("trace_journal")

// NewFactory returns the factory ocb registers for the trace journal.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		componentType,
		func() component.Config { return createDefaultConfig() },
		processor.WithTraces(createTraces, component.StabilityLevelAlpha),
	)
}

func createTraces(
	ctx context.Context,
	set processor.Settings,
	cfg component.Config,
	next consumer.Traces,
) (processor.Traces, error) {
	p, err := newJournalProcessor(set, cfg.(*Config), next)
	if err != nil {
		return nil, err
	}
	return wrap(ctx, set, cfg, next, p)
}

// wrap gives the journal processorhelper's standard processor metrics and span events.
func wrap(
	ctx context.Context,
	set processor.Settings,
	cfg component.Config,
	next consumer.Traces,
	p *journalProcessor,
) (processor.Traces, error) {
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
		// The batch is serialised before it is passed on and never changed.
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
	)
}
