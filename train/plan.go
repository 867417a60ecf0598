package train

import (
	"fmt"
	"io"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/tensor"
)

// PlanMemory runs one training forward per adapter form on a batch of the given
// image shape and reports the bytes each saves for backward (and the adapted module
// and parameter counts), without training: what --dry-run prints.
func PlanMemory(w io.Writer, model string, lo pipeline.Options, c adapters.Config, targets adapters.Targets, batch, height, width int) error {
	p, err := pipeline.LoadWith(model, lo)
	if err != nil {
		return err
	}
	defer p.Release()
	fmt.Fprintf(w, "memory plan for a batch of %d at %dx%d (saved for backward by one step):\n", batch, width, height)
	for _, form := range []adapters.Form{adapters.Activation, adapters.Weight, adapters.Auto} {
		fc := c
		fc.Form = form
		if form == adapters.Weight && c.Dropout > 0 {
			fmt.Fprintf(w, "  %-10s not available with input dropout %g\n", form, c.Dropout)
			continue
		}
		set, err := adapters.Inject(p.Denoiser, fc, targets)
		if err != nil {
			return err
		}
		set.Train(true)
		if form == c.Form {
			fmt.Fprintf(w, "  adapters: %s\n", set.Summary())
		}
		imgs := tensor.Zeros(batch, p.Channels, height/p.Factor, width/p.Factor) // latents in a VAE pipeline
		cond, err := p.Encode(make([]string, batch))
		if err != nil {
			set.Remove()
			return err
		}
		ts := make([]float32, batch)
		before := tensor.SavedBytes()
		out, err := p.Denoiser.Predict(imgs, ts, cond)
		if err != nil {
			set.Remove()
			return err
		}
		saved := tensor.SavedBytes() - before
		tensor.DropGraph(out)
		tensor.Release(out, imgs)
		cond.Release()
		set.Remove()
		mark := ""
		if form == c.Form {
			mark = "  <- this run"
		}
		fmt.Fprintf(w, "  %-10s %10.2f MiB%s\n", form, float64(saved)/(1<<20), mark)
	}
	return nil
}
