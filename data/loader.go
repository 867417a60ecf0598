package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"math"
	"runtime"

	"github.com/difftune/difftune/tensor"
)

// LoaderOptions configure a Loader. The zero value of a field selects its default.
type LoaderOptions struct {
	// BatchSize is the number of samples per batch; default 1.
	BatchSize int
	// Seed fixes every random decision: the sample and batch order, crops, flips and
	// captions.
	Seed uint64
	// RandomCrop crops at a random position instead of the center (kohya
	// random_crop). It defeats a latent cache, whose keys include the crop.
	RandomCrop bool
	// Flip mirrors each sample left–right with probability 1/2, drawn per sample and
	// epoch (kohya flip_aug). Do not use it for subjects that are not symmetric
	// (text, asymmetric characters).
	Flip bool
	// Caption configures caption dropout and tag shuffling.
	Caption CaptionOptions
	// Workers is the number of images rendered at once; default GOMAXPROCS.
	Workers int
}

// Batch is one batch: samples of a single bucket.
type Batch struct {
	Epoch  int // counting from 0
	Index  int // position of the batch in its epoch
	Bucket Size
	// Images is [B, 3, H, W] in [-1, 1] (H, W = Bucket), owned by the batch: call
	// Release. It is nil for batches from NextSamples.
	Images   *tensor.Tensor
	Captions []string // one per sample, processed
	Samples  []Sample
}

// Release releases the batch's images. It is safe to call twice.
func (b *Batch) Release() {
	if b.Images != nil {
		b.Images.Release()
		b.Images = nil
	}
}

// State is where a Loader stands: enough to resume it. A Loader keeps no random
// generator state between batches — every random decision is drawn from a fresh
// generator seeded by (Seed, epoch, item, repeat, purpose) — so the epoch and the
// position within it are the whole state. Fingerprint ties the state to the dataset
// (paths, content hashes, repeats, buckets, captions) and the loader options; State is
// meant to be saved as JSON with a training checkpoint.
type State struct {
	Epoch       int    `json:"epoch"`
	Batch       int    `json:"batch"` // batches of Epoch already delivered
	Seed        uint64 `json:"seed"`
	Fingerprint string `json:"fingerprint"`
}

// Loader turns a Dataset into batches, epoch after epoch. Each epoch it shuffles the
// samples (every item Repeats times), groups them by bucket, cuts each bucket's
// samples into batches of BatchSize — the last batch of a bucket may be smaller;
// nothing is dropped — and shuffles the batches. A Loader is not safe for concurrent
// use.
type Loader struct {
	ds          *Dataset
	opts        LoaderOptions
	fingerprint string
	epoch, pos  int
	plan        [][]Sample // the plan of epoch
}

// NewLoader returns a Loader at the start of epoch 0. It fails when an option is out of
// range.
func NewLoader(ds *Dataset, opts LoaderOptions) (*Loader, error) {
	if opts.BatchSize == 0 {
		opts.BatchSize = 1
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	c := opts.Caption
	switch {
	case opts.BatchSize < 0:
		return nil, fmt.Errorf("data: batch size %d: must be positive", opts.BatchSize)
	case !(c.Dropout >= 0 && c.Dropout <= 1):
		return nil, fmt.Errorf("data: caption dropout %v: must be a probability in [0, 1]", c.Dropout)
	case !(c.TagDropout >= 0 && c.TagDropout <= 1):
		return nil, fmt.Errorf("data: caption tag dropout %v: must be a probability in [0, 1]", c.TagDropout)
	case c.KeepTokens < 0:
		return nil, fmt.Errorf("data: keep tokens %d: must not be negative", c.KeepTokens)
	}
	l := &Loader{ds: ds, opts: opts}
	l.fingerprint = l.fingerprintOf()
	l.plan = l.Plan(0)
	return l, nil
}

// BatchesPerEpoch returns the number of batches in every epoch.
func (l *Loader) BatchesPerEpoch() int { return l.ds.summary.BatchesPerEpoch(l.opts.BatchSize) }

// Plan returns the batches of epoch e, without pixels: the same samples, crops, flips
// and captions that Next delivers in that epoch. It does not move the Loader.
func (l *Loader) Plan(e int) [][]Sample {
	seed, ep := l.opts.Seed, uint64(e)
	type ref struct{ item, repeat int }
	var refs []ref
	for i, it := range l.ds.Items {
		for r := range it.Repeats {
			refs = append(refs, ref{i, r})
		}
	}
	newRNG(seed, streamOrder, ep).Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })

	// Group by bucket, buckets in order of first appearance, then cut into batches.
	var order []Size
	groups := map[Size][]ref{}
	for _, r := range refs {
		b := l.ds.Items[r.item].Bucket
		if _, ok := groups[b]; !ok {
			order = append(order, b)
		}
		groups[b] = append(groups[b], r)
	}
	var batches [][]ref
	for _, b := range order {
		g := groups[b]
		for i := 0; i < len(g); i += l.opts.BatchSize {
			batches = append(batches, g[i:min(i+l.opts.BatchSize, len(g))])
		}
	}
	newRNG(seed, streamBatches, ep).Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })

	plan := make([][]Sample, len(batches))
	for k, b := range batches {
		plan[k] = make([]Sample, len(b))
		for j, r := range b {
			plan[k][j] = l.sample(e, r.item, r.repeat)
		}
	}
	return plan
}

// sample draws the augmentation of one repeat of one item in epoch e.
func (l *Loader) sample(e, i, r int) Sample {
	it := &l.ds.Items[i]
	seed, ep, item, rep := l.opts.Seed, uint64(e), uint64(i), uint64(r)
	s := Sample{Item: i, Repeat: r, Hash: it.Hash, Size: it.Size, Bucket: it.Bucket, Crop: centerCrop(it.Placement)}
	if l.opts.RandomCrop {
		g := newRNG(seed, streamCrop, ep, item, rep)
		s.Crop = image.Pt(g.IntN(it.Resized.W-it.Bucket.W+1), g.IntN(it.Resized.H-it.Bucket.H+1))
	}
	if l.opts.Flip {
		s.Flip = newRNG(seed, streamFlip, ep, item, rep).Float64() < 0.5
	}
	g := newRNG(seed, streamCaption, ep, item, rep)
	caption := it.Captions[0]
	if len(it.Captions) > 1 {
		caption = it.Captions[g.IntN(len(it.Captions))]
	}
	s.Caption = l.opts.Caption.apply(caption, g)
	return s
}

// Next returns the next batch with its images, moving to the next epoch after the
// last batch of one; the caller releases the batch. On error (a file that cannot be
// read or that changed, see Dataset.Render) the Loader does not move, so State still
// names the failed batch.
func (l *Loader) Next() (*Batch, error) {
	b := l.peek()
	img, err := l.ds.Render(b.Samples, l.opts.Workers)
	if err != nil {
		return nil, err
	}
	b.Images = img
	l.advance()
	return b, nil
}

// NextSamples is Next without the pixels (Batch.Images is nil): for a trainer that
// takes latents from a Cache, or a dry run.
func (l *Loader) NextSamples() *Batch {
	b := l.peek()
	l.advance()
	return b
}

func (l *Loader) peek() *Batch {
	s := l.plan[l.pos]
	b := &Batch{Epoch: l.epoch, Index: l.pos, Bucket: s[0].Bucket, Samples: s, Captions: make([]string, len(s))}
	for i := range s {
		b.Captions[i] = s[i].Caption
	}
	return b
}

func (l *Loader) advance() {
	l.pos++
	if l.pos == len(l.plan) {
		l.epoch, l.pos = l.epoch+1, 0
		l.plan = l.Plan(l.epoch)
	}
}

// State returns the Loader's position, to be saved with a checkpoint.
func (l *Loader) State() State {
	return State{Epoch: l.epoch, Batch: l.pos, Seed: l.opts.Seed, Fingerprint: l.fingerprint}
}

// Restore moves the Loader to s, so that it delivers exactly the batches it would
// have delivered after s was saved. It fails, leaving the Loader as it was, when the
// seed, the dataset or the loader options differ from those s was saved with (the
// error says to start a new run or restore the data), or when s is out of range.
func (l *Loader) Restore(s State) error {
	switch {
	case s.Seed != l.opts.Seed:
		return fmt.Errorf("data: resume: the saved loader state has seed %d, this run %d; use the same seed to resume", s.Seed, l.opts.Seed)
	case s.Fingerprint != l.fingerprint:
		return errors.New("data: resume: the dataset (files, captions, repeats or buckets) or the loader options changed since the state was saved; restore them, or start a new run")
	case s.Epoch < 0 || s.Batch < 0 || s.Batch >= l.BatchesPerEpoch():
		return fmt.Errorf("data: resume: state epoch %d batch %d is out of range (%d batches per epoch)", s.Epoch, s.Batch, l.BatchesPerEpoch())
	}
	if s.Epoch != l.epoch {
		l.plan = l.Plan(s.Epoch)
	}
	l.epoch, l.pos = s.Epoch, s.Batch
	return nil
}

// fingerprintOf hashes everything the batches depend on.
func (l *Loader) fingerprintOf() string {
	h := sha256.New()
	w := func(args ...any) { fmt.Fprintln(h, args...) }
	o := l.opts
	w("difftune data loader v1", o.BatchSize, o.Seed, o.RandomCrop, o.Flip)
	c := o.Caption
	w(c.Shuffle, c.KeepTokens, c.KeepSeparator, math.Float64bits(c.Dropout), math.Float64bits(c.TagDropout))
	for _, it := range l.ds.Items {
		w(it.Rel, it.Hash, it.Repeats, it.Bucket, it.Resized, len(it.Captions))
		for _, c := range it.Captions {
			w(len(c), c)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
