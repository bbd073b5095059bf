// Command tail_sampling prints which trace ids the OpenTelemetry Collector's tail_sampling
// processor (contrib v0.161.0, the release otel-collector/manifest.yaml pins) keeps under a
// probabilistic policy, for several salts and percentages. It drives the real processor
// through its public factory, so the vectors come from the code the collector runs, not
// from a re-implementation. tests/test_exemplars.py checks the SDK exemplar filter against
// its output; generate.sh (beside this file) runs it.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/big"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
)

// threshold is the processor's calculateThreshold (internal/sampling/probabilistic.go, not
// importable): MaxUint64 x ratio in big.Float, truncated to uint64.
func threshold(percent float64) uint64 {
	boundary := new(big.Float).SetInt(new(big.Int).SetUint64(math.MaxUint64))
	res, _ := boundary.Mul(boundary, big.NewFloat(percent/100)).Uint64()
	return res
}

type policyCase struct {
	HashSalt           string   `json:"hash_salt"`
	SamplingPercentage float64  `json:"sampling_percentage"`
	TraceIDs           []string `json:"trace_ids"`
	Kept               []string `json:"kept"`
}

// decide feeds one single-span trace per id to a fresh processor and returns the kept ids.
func decide(salt string, percent float64, ids []pcommon.TraceID) []string {
	ctx := context.Background()
	factory := tailsamplingprocessor.NewFactory()
	cfg := factory.CreateDefaultConfig()
	conf := confmap.NewFromStringMap(map[string]any{
		"decision_wait": "100ms",
		"num_traces":    len(ids) * 2,
		"policies": []any{map[string]any{
			"name": "sample-rest",
			"type": "probabilistic",
			"probabilistic": map[string]any{
				"hash_salt":           salt,
				"sampling_percentage": percent,
			},
		}},
	})
	if err := conf.Unmarshal(cfg); err != nil {
		panic(err)
	}
	sink := new(consumertest.TracesSink)
	proc, err := factory.CreateTraces(ctx, processortest.NewNopSettings(factory.Type()), cfg, sink)
	if err != nil {
		panic(err)
	}
	if err := proc.Start(ctx, componenttest.NewNopHost()); err != nil {
		panic(err)
	}
	traces := ptrace.NewTraces()
	spans := traces.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	now := time.Now()
	for i, id := range ids {
		span := spans.AppendEmpty()
		span.SetTraceID(id)
		span.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i)})
		span.SetName("op")
		span.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		span.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	}
	if err := proc.ConsumeTraces(ctx, traces); err != nil {
		panic(err)
	}
	// Decisions are made on the processor's 1 s tick once decision_wait has passed.
	time.Sleep(3 * time.Second)
	if err := proc.Shutdown(ctx); err != nil {
		panic(err)
	}
	kept := []string{}
	for _, td := range sink.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					id := span.TraceID()
					kept = append(kept, hex.EncodeToString(id[:]))
				}
			}
		}
	}
	sort.Strings(kept)
	return kept
}

func main() {
	rng := rand.New(rand.NewSource(2922)) // fixed: the same ids on every run
	cases := []struct {
		salt    string
		percent float64
	}{
		{"", 10}, // empty: the processor's default salt "default-hash-seed"
		{"default-hash-seed", 10},
		{"modelobs", 10},
		{"modelobs", 25},
		{"another salt", 1.5},
		{"modelobs", 33.3},
		{"modelobs", 100},
		{"modelobs", 0},
	}
	out := make([]policyCase, 0, len(cases))
	for _, c := range cases {
		ids := make([]pcommon.TraceID, 400)
		hexIDs := make([]string, len(ids))
		for i := range ids {
			rng.Read(ids[i][:])
			hexIDs[i] = hex.EncodeToString(ids[i][:])
		}
		out = append(out, policyCase{c.salt, c.percent, hexIDs, decide(c.salt, c.percent, ids)})
	}
	thresholds := map[string]uint64{}
	for _, p := range []float64{10, 33.3, 1.5, 50, 99.99, 0.001, 100, 0} {
		thresholds[strconv.FormatFloat(p, 'g', -1, 64)] = threshold(p)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(map[string]any{
		"generator":  "tests/vectors/tail_sampling/generate.sh",
		"processor":  "github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor v0.161.0",
		"thresholds": thresholds,
		"cases":      out,
	}); err != nil {
		panic(err)
	}
}
