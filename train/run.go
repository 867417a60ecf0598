package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/difftune/difftune/adapters"
	"github.com/difftune/difftune/data"
	"github.com/difftune/difftune/internal/atomicfile"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/tensor"
)

// Source feeds training batches. Next returns images [B, C, H, W] in [-1, 1] (the
// caller releases them) and their captions. State and Restore save and restore the
// position so that a resumed run sees exactly the batches it would have seen.
type Source interface {
	Next() (images *tensor.Tensor, captions []string, err error)
	Epoch() int
	State() (string, error)
	Restore(state string) error
}

// RunOptions describe a training run.
type RunOptions struct {
	Model string // a pipeline preset, diffusers folder or single-file checkpoint
	// Pipeline, when set, is trained instead of loading Model (pretraining builds it
	// from a spec); Run does not release it.
	Pipeline *pipeline.Pipeline
	// Full trains every weight of a difftune model (the denoiser and the text encoder)
	// instead of adapters; the saved files are difftune model files.
	Full    bool
	Load    pipeline.Options // tokenizer folder, clip skip, prediction type
	Adapter adapters.Config
	Targets adapters.Targets
	Train   Config
	// Out is the output folder and Name the file stem (<Out>/<Name>.safetensors).
	Out, Name string
	// SaveEvery writes <Name>-stepNNNNNN.safetensors and the resumable state every N
	// steps (0: only at the end); KeepLast keeps that many step files (0: all).
	SaveEvery, KeepLast int
	// SampleEvery renders SamplePrompts to <Out>/samples every N steps (0: never).
	SampleEvery   int
	SamplePrompts []pipeline.PromptLine
	Sampler       string
	SaveDType     tensor.DType
	Format        adapters.Format
	Resume        bool
	// Log receives progress lines; Progress, if set, is called after every step.
	Log      io.Writer
	Progress func(step, total int, loss, lr float64)
	// Metadata is added to every saved adapter (ss_* training record, modelspec.*).
	Metadata map[string]string
	// CacheDir holds the latent cache of a latent-space model ("" : no cache).
	CacheDir string
}

// encoderIdentity names the latent encoder for cache keys: the model's path with the
// size and modification time of its files, and what the pipeline detected, so that a
// changed checkpoint misses.
func encoderIdentity(model string, p *pipeline.Pipeline) string {
	id := model + "|" + p.Description
	filepath.Walk(model, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(path, ".safetensors") {
			id += fmt.Sprintf("|%s:%d:%d", filepath.Base(path), info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return id
}

// ErrInterrupted is returned when the context was cancelled (Ctrl-C): the resumable
// state was saved first.
var ErrInterrupted = errors.New("training interrupted; the state is saved: run again with --resume to continue")

// Result summarises a finished (or interrupted) run.
type Result struct {
	Steps     int
	Adapter   string  // the final adapter file
	FinalLoss float64 // EMA of the loss
	Samples   []string
}

// logLine is one line of train.jsonl.
type logLine struct {
	Step      int     `json:"step"`
	Epoch     int     `json:"epoch"`
	Loss      float64 `json:"loss"`
	LossEMA   float64 `json:"loss_ema"`
	LR        float64 `json:"lr"`
	ItPerS    float64 `json:"it_per_s"`
	LiveBytes int64   `json:"live_bytes"`
	PeakBytes int64   `json:"peak_bytes"`
	SavedPeak int64   `json:"peak_saved_bytes"`
}

// Run trains adapters on src: builds the pipeline, injects the adapters, optionally
// resumes from <Out>/state, and loops over optimizer steps, writing adapter files,
// the state, previews, train.jsonl and loss.png under Out. A cancelled ctx saves the
// state and returns ErrInterrupted.
func Run(ctx context.Context, src Source, o RunOptions) (Result, error) {
	if o.Name == "" {
		return Result{}, fmt.Errorf("train: an output name is required")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Sampler == "" {
		o.Sampler = "euler_a"
	}
	if err := os.MkdirAll(filepath.Join(o.Out, "state"), 0o755); err != nil {
		return Result{}, fmt.Errorf("create output folder: %w", err)
	}
	p := o.Pipeline
	var err error
	if p == nil {
		if p, err = pipeline.LoadWith(o.Model, o.Load); err != nil {
			return Result{}, err
		}
		defer p.Release()
		fmt.Fprintf(o.Log, "model %s\n", p.Description)
	}
	var cache *data.Cache
	if o.CacheDir != "" {
		if cache, err = data.OpenCache(o.CacheDir); err != nil {
			return Result{}, err
		}
	}
	identity := encoderIdentity(o.Model, p)
	if ls, ok := src.(*LoaderSource); ok && p.VAE != nil && cache != nil {
		ls.Cache, ls.Encode, ls.Encoder = cache, p.EncodeImages, identity
	}
	var set Weights
	if o.Full {
		full, err := NewFullModel(p)
		if err != nil {
			return Result{}, err
		}
		set = full
	} else {
		as, err := adapters.Inject(p.Denoiser, o.Adapter, o.Targets)
		if err != nil {
			return Result{}, err
		}
		defer as.Remove()
		set = as
	}
	fmt.Fprintf(o.Log, "%s\n", set.Summary())
	tr, err := NewTrainer(p, set, o.Train)
	if err != nil {
		return Result{}, err
	}
	defer tr.Release()
	if cache != nil {
		tr.TextCache, tr.TextEncoder = cache, fmt.Sprintf("%s|clip skip %d", identity, p.ClipSkip)
	}
	statePath := filepath.Join(o.Out, "state", "state.safetensors")
	lossEMA := 0.0
	var history []float64
	jsonlPath := filepath.Join(o.Out, "train.jsonl")
	if o.Resume {
		ds, le, err := tr.LoadState(statePath)
		if err != nil {
			return Result{}, fmt.Errorf("--resume: %w", err)
		}
		if err := src.Restore(ds); err != nil {
			return Result{}, fmt.Errorf("--resume: data state: %w", err)
		}
		lossEMA = le
		history = readHistory(jsonlPath, tr.Step)
		fmt.Fprintf(o.Log, "resumed at step %d\n", tr.Step)
	} else if _, err := os.Stat(statePath); err == nil {
		return Result{}, fmt.Errorf("%s holds a previous run's state; pass --resume to continue it, or choose another --out", o.Out)
	}
	jsonl, err := openLog(jsonlPath, history, o.Resume)
	if err != nil {
		return Result{}, err
	}
	defer jsonl.Close()

	res := Result{}
	save := func(path string) error {
		restore := tr.EMAWeights()
		defer restore()
		meta := map[string]string{"ss_steps": fmt.Sprint(tr.Step), "ss_output_name": o.Name, "ss_base_model_version": o.Model,
			"modelspec.architecture": o.Model, "modelspec.title": o.Name}
		for k, v := range o.Metadata {
			meta[k] = v
		}
		if o.Full {
			return p.SaveModel(path, o.SaveDType, meta)
		}
		return adapters.Save(set.(*adapters.Set), path, adapters.SaveOptions{Format: o.Format, DType: o.SaveDType, Metadata: meta})
	}
	saveState := func() error {
		ds, err := src.State()
		if err != nil {
			return err
		}
		return tr.SaveState(statePath, ds, lossEMA)
	}
	start := time.Now()
	startStep := tr.Step
	for tr.Step < o.Train.Steps {
		if err := ctx.Err(); err != nil {
			if serr := saveState(); serr != nil {
				return res, fmt.Errorf("interrupted, and saving the state failed: %w", serr)
			}
			res.Steps = tr.Step
			return res, ErrInterrupted
		}
		tensor.CPU.ResetPeak()
		var loss float64
		for range tr.cfg.GradAccum {
			imgs, caps, err := src.Next()
			if err != nil {
				return res, err
			}
			l, err := tr.Micro(imgs, caps)
			imgs.Release()
			if err != nil {
				return res, err
			}
			loss += l / float64(tr.cfg.GradAccum)
		}
		if len(history) == 0 {
			lossEMA = loss
		} else {
			lossEMA = 0.9*lossEMA + 0.1*loss
		}
		history = append(history, loss)
		st := tensor.CPU.Stats()
		line := logLine{Step: tr.Step, Epoch: src.Epoch(), Loss: loss, LossEMA: lossEMA, LR: tr.opt.LR,
			ItPerS: float64(tr.Step-startStep) / time.Since(start).Seconds(), LiveBytes: st.Live, PeakBytes: st.Peak, SavedPeak: st.PeakSaved}
		b, _ := json.Marshal(line)
		if _, err := fmt.Fprintln(jsonl, string(b)); err != nil {
			return res, fmt.Errorf("write %s: %w", jsonlPath, err)
		}
		if o.Progress != nil {
			o.Progress(tr.Step, o.Train.Steps, lossEMA, tr.opt.LR)
		}
		if o.SaveEvery > 0 && tr.Step%o.SaveEvery == 0 && tr.Step < o.Train.Steps {
			path := filepath.Join(o.Out, fmt.Sprintf("%s-step%06d.safetensors", o.Name, tr.Step))
			if err := save(path); err != nil {
				return res, err
			}
			if err := saveState(); err != nil {
				return res, err
			}
			prune(o.Out, o.Name, o.KeepLast)
		}
		if o.SampleEvery > 0 && len(o.SamplePrompts) > 0 && tr.Step%o.SampleEvery == 0 {
			path, err := preview(ctx, p, set, tr, o, fmt.Sprintf("%s-step%06d.png", o.Name, tr.Step))
			switch {
			case err != nil && ctx.Err() != nil:
				continue // interrupted while previewing: the loop's top saves the state
			case err != nil:
				return res, err
			}
			res.Samples = append(res.Samples, path)
		}
	}
	final := filepath.Join(o.Out, o.Name+".safetensors")
	if err := save(final); err != nil {
		return res, err
	}
	if err := saveState(); err != nil {
		return res, err
	}
	if err := PlotLoss(filepath.Join(o.Out, "loss.png"), history); err != nil {
		return res, err
	}
	if len(o.SamplePrompts) > 0 {
		path, err := preview(ctx, p, set, tr, o, o.Name+".png")
		if err != nil {
			return res, err
		}
		res.Samples = append(res.Samples, path)
	}
	res.Steps, res.Adapter, res.FinalLoss = tr.Step, final, lossEMA
	return res, nil
}

// preview renders the sample prompts with the adapters as trained (EMA weights when
// enabled), dropout off, into <Out>/samples/name.
func preview(ctx context.Context, p *pipeline.Pipeline, set Weights, tr *Trainer, o RunOptions, name string) (string, error) {
	restore := tr.EMAWeights()
	defer restore()
	set.Train(false)
	defer set.Train(true)
	path := filepath.Join(o.Out, "samples", name)
	_, err := p.Preview(ctx, path, o.Sampler, o.Model, o.SamplePrompts)
	return path, err
}

// prune removes all but the keep newest step files of name (keep 0: none removed).
func prune(dir, name string, keep int) {
	if keep <= 0 {
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, name+"-step*.safetensors"))
	sort.Strings(files)
	for len(files) > keep {
		os.Remove(files[0])
		files = files[1:]
	}
}

// openLog opens train.jsonl for appending; a resumed run first rewrites it to the
// steps the state holds (a crash may have logged steps the state does not have).
func openLog(path string, history []float64, resume bool) (*os.File, error) {
	if resume {
		raw, _ := os.ReadFile(path)
		var keep []string
		for _, l := range strings.Split(string(raw), "\n") {
			var ll logLine
			if json.Unmarshal([]byte(l), &ll) == nil && ll.Step <= len(history) {
				keep = append(keep, l)
			}
		}
		err := atomicfile.WriteFile(path, func(w io.Writer) error {
			for _, l := range keep {
				if _, err := fmt.Fprintln(w, l); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else {
		os.Remove(path)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open training log: %w", err)
	}
	return f, nil
}

// readHistory returns the losses of steps 1..upTo from train.jsonl.
func readHistory(path string, upTo int) []float64 {
	raw, _ := os.ReadFile(path)
	out := make([]float64, 0, upTo)
	for _, l := range strings.Split(string(raw), "\n") {
		var ll logLine
		if json.Unmarshal([]byte(l), &ll) == nil && ll.Step >= 1 && ll.Step <= upTo && ll.Step == len(out)+1 {
			out = append(out, ll.Loss)
		}
	}
	return slices.Clip(out)
}
