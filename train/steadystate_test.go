package train

import (
	"runtime"
	"testing"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/tensor"
)

// TestSteadyStateStepAllocations runs DiT-S/2 LoRA training steps (the bench step:
// forward, loss, backward, AdamW) on two workers and checks, once warm:
//
//   - every tensor buffer comes from the allocator's pool: PoolMiss does not grow,
//     and live storage returns to the same level after each step;
//   - the Go heap sees only small bookkeeping objects: the tensor headers, graph
//     nodes and backward closures of the ops. Measured on this configuration
//     (tensor/parallel.go's persistent helpers, tensor headers and graph nodes one
//     allocation each): 3.5 mallocs per tensor allocation with the auto form, 4.0 with
//     activation form under checkpointing, 0.27-0.67 MB per step; before those changes
//     11.4 and 10.4. The bound of 5 per tensor allocation leaves a quarter of headroom,
//     and the byte bound (1 MiB a step) is about five of this step's activations
//     ([2, 64, 384] float32 = 196 KB): a buffer that left the pool shows up in it.
func TestSteadyStateStepAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 14 DiT-S/2 training steps")
	}
	tensor.SetThreads(2)
	defer tensor.SetThreads(0)
	for _, c := range []BenchConfig{
		{Model: "dit-s-2", Adapter: "lora", Form: adapters.Auto, Rank: 8, Batch: 2, Latent: 16, Steps: 1},
		{Model: "dit-s-2", Adapter: "lora", Form: adapters.Activation, Rank: 8, Batch: 2, Latent: 16, Steps: 1, Checkpoint: true},
	} {
		t.Run(string(c.Form), func(t *testing.T) {
			r, err := newBenchRun(c)
			if err != nil {
				t.Fatal(err)
			}
			defer r.release()
			for range 3 {
				if _, _, _, err := r.step(); err != nil {
					t.Fatal(err)
				}
			}
			const steps = 4
			var m0, m1 runtime.MemStats
			s0 := tensor.CPU.Stats()
			runtime.ReadMemStats(&m0)
			for range steps {
				if _, _, _, err := r.step(); err != nil {
					t.Fatal(err)
				}
				if s := tensor.CPU.Stats(); s.Live != s0.Live {
					t.Fatalf("live storage %d B after a step, %d B before", s.Live, s0.Live)
				}
			}
			runtime.ReadMemStats(&m1)
			s1 := tensor.CPU.Stats()
			allocs := (s1.Allocs - s0.Allocs) / steps
			mallocs := int64(m1.Mallocs-m0.Mallocs) / steps
			bytes := int64(m1.TotalAlloc-m0.TotalAlloc) / steps
			t.Logf("per step: %d tensor allocations, %d pool misses, %d Go mallocs (%.1f per tensor), %d heap bytes",
				allocs, (s1.PoolMiss-s0.PoolMiss)/steps, mallocs, float64(mallocs)/float64(allocs), bytes)
			if s1.PoolMiss != s0.PoolMiss {
				t.Errorf("%d pool misses in %d steady-state steps, want 0", s1.PoolMiss-s0.PoolMiss, steps)
			}
			if allocs == 0 {
				t.Fatal("no tensor allocations counted: the step did not run")
			}
			if mallocs > 5*allocs {
				t.Errorf("%d Go mallocs per step for %d tensor allocations, want <= 5 per tensor", mallocs, allocs)
			}
			if bytes > 1<<20 {
				t.Errorf("%d Go heap bytes per step, want <= 1 MiB", bytes)
			}
		})
	}
}
