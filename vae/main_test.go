package vae

import (
	"testing"

	"github.com/difftune/difftune/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
