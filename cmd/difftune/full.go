package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/difftune/difftune/data"
	"github.com/difftune/difftune/dit"
	"github.com/difftune/difftune/internal/atomicfile"
	"github.com/difftune/difftune/pipeline"
	"github.com/difftune/difftune/sampler"
	"github.com/difftune/difftune/textenc"
)

// fullOptions are the architecture flags of train --full: the difftune model built
// from scratch (a pixel-space PixArt-style transformer and a CLIP-architecture text
// encoder over a word vocabulary taken from the dataset's captions).
type fullOptions struct {
	width, depth, headDim, patch   int
	textWidth, textLayers, textLen int
	vocabMin, vocabMax             int
	schedule, prediction           string
	zeroSNR                        bool
	description                    string
}

func (o *fullOptions) flags(cmd *pflag.FlagSet) {
	cmd.IntVar(&o.width, "width", 256, "--full: transformer width (a multiple of --head-dim)")
	cmd.IntVar(&o.depth, "depth", 8, "--full: transformer blocks")
	cmd.IntVar(&o.headDim, "head-dim", 64, "--full: attention head width")
	cmd.IntVar(&o.patch, "patch", 2, "--full: patch side in pixels")
	cmd.IntVar(&o.textWidth, "text-width", 128, "--full: text encoder width")
	cmd.IntVar(&o.textLayers, "text-layers", 3, "--full: text encoder layers")
	cmd.IntVar(&o.textLen, "text-length", 24, "--full: tokens per caption, start and end included")
	cmd.IntVar(&o.vocabMin, "vocab-min-count", 1, "--full: keep caption words seen at least this often")
	cmd.IntVar(&o.vocabMax, "vocab-max", 8192, "--full: at most this many words (the most frequent)")
	cmd.StringVar(&o.schedule, "beta-schedule", "scaled_linear", "--full: noise schedule: scaled_linear, linear, squaredcos_cap_v2")
	cmd.StringVar(&o.prediction, "full-prediction", "v_prediction", "--full: what the model predicts: v_prediction or epsilon")
	cmd.BoolVar(&o.zeroSNR, "zero-terminal-snr", true, "--full: rescale the schedule to zero terminal SNR (the last timestep is pure noise; needs v_prediction), sampled with trailing timesteps")
	cmd.StringVar(&o.description, "description", "", "--full: the model's description (saved in the file)")
}

// spec builds the model description from the flags and the dataset's captions.
func (o *fullOptions) spec(name string, size int, ds *data.Dataset) (pipeline.ModelSpec, error) {
	if o.width <= 0 || o.headDim <= 0 || o.width%o.headDim != 0 {
		return pipeline.ModelSpec{}, fmt.Errorf("--width %d: want a positive multiple of --head-dim %d", o.width, o.headDim)
	}
	if o.textWidth <= 0 || o.textWidth%32 != 0 {
		return pipeline.ModelSpec{}, fmt.Errorf("--text-width %d: want a positive multiple of 32 (heads of 32)", o.textWidth)
	}
	var captions []string
	for _, it := range ds.Items {
		captions = append(captions, it.Captions...)
	}
	vocab := textenc.BuildVocab(captions, o.vocabMin, o.vocabMax)
	if len(vocab) == 0 {
		return pipeline.ModelSpec{}, fmt.Errorf("%s: the captions have no words: full training learns text conditioning from captions (name.txt beside each image)", ds.Root)
	}
	base := dit.Presets["tiny-pixart"].(dit.PixArtConfig)
	out := 3
	d := base
	d.OutChannels, d.PatchSize, d.SampleSize = &out, o.patch, size
	d.NumLayers, d.NumAttentionHeads, d.AttentionHeadDim = o.depth, o.width/o.headDim, o.headDim
	d.CrossAttentionDim, d.CaptionChannels, d.PooledProjectionDim = o.width, o.textWidth, o.textWidth
	t := textenc.CLIPConfig{VocabSize: textenc.WordFirst + len(vocab), HiddenSize: o.textWidth, IntermediateSize: 4 * o.textWidth,
		NumHiddenLayers: o.textLayers, NumAttentionHeads: o.textWidth / 32, MaxPositionEmbeddings: o.textLen, HiddenAct: "quick_gelu",
		LayerNormEps: 1e-5, EOSTokenID: textenc.WordEnd}
	desc := o.description
	if desc == "" {
		desc = fmt.Sprintf("pixel-space %d×%d RGB text-to-image transformer (width %d, %d blocks, patch %d) with a %d-word text encoder, trained by difftune",
			size, size, o.width, o.depth, o.patch, len(vocab))
	}
	s := pipeline.ModelSpec{Name: name, Description: desc, Denoiser: d, Text: t, Vocab: vocab, Size: size,
		Scheduler: sampler.Config{NumTrainTimesteps: 1000, BetaStart: 0.00085, BetaEnd: 0.012, BetaSchedule: o.schedule, PredictionType: o.prediction,
			RescaleBetasZeroSNR: o.zeroSNR, TimestepSpacing: "trailing"}}
	if o.schedule == "linear" {
		s.Scheduler.BetaStart, s.Scheduler.BetaEnd = 1e-4, 0.02 // DDPM's
	}
	if o.zeroSNR && o.prediction != "v_prediction" {
		return s, fmt.Errorf("--zero-terminal-snr needs --full-prediction v_prediction: at zero SNR an epsilon model cannot recover the image")
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	if _, err := sampler.NewNoiseSchedule(s.Scheduler); err != nil {
		return s, fmt.Errorf("--beta-schedule: %w", err)
	}
	return s, nil
}

// fullPipeline returns the model train --full trains: the one --model names (a
// difftune model file, trained further), the one a resumed run recorded in
// <out>/state/spec.json, or a new one from the flags (recorded there when record).
func fullPipeline(model, out string, resume, record bool, o *fullOptions, name string, size int, ds *data.Dataset, seed uint64) (*pipeline.Pipeline, error) {
	if model != "" {
		return pipeline.Load(model)
	}
	specPath := filepath.Join(out, "state", "spec.json")
	var s pipeline.ModelSpec
	if resume {
		raw, err := os.ReadFile(specPath)
		if err != nil {
			return nil, fmt.Errorf("--resume: %w", err)
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("--resume: %s: %w", specPath, err)
		}
	} else {
		var err error
		if s, err = o.spec(name, size, ds); err != nil {
			return nil, usageError{err}
		}
		raw, _ := json.MarshalIndent(s, "", " ")
		if !record {
			return pipeline.NewFromSpec(s, seed)
		}
		if err := os.MkdirAll(filepath.Dir(specPath), 0o755); err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(out, "state", "state.safetensors")); err == nil {
			return nil, fmt.Errorf("%s holds a previous run's state; pass --resume to continue it, or choose another --out", out)
		}
		if err := atomicfile.WriteFile(specPath, func(w io.Writer) error { _, err := w.Write(raw); return err }); err != nil {
			return nil, err
		}
	}
	return pipeline.NewFromSpec(s, seed)
}
