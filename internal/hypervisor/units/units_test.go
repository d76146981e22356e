package units

import (
	"strings"
	"testing"
)

func TestParseAcceptsBinaryUnits(t *testing.T) {
	for in, want := range map[string]int64{
		"512MiB": 512 * MiB, "512mb": 512 * MiB, "1GB": GiB, "1G": GiB, "1gib": GiB, "10GiB": 10 * GiB,
		"1.5GiB": 1536 * MiB, "4096": 4096, "4096B": 4096, " 2 TiB ": 2 * TiB, "64K": 64 * KiB, "0": 0,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestParseRejectsWithTheAllowedForms(t *testing.T) {
	for in, wantMsg := range map[string]string{
		"12XB":      "is not a size",
		"-1GiB":     "is not a size",
		"":          "is not a size",
		"GiB":       "is not a size",
		"1.2.3MiB":  "is not a size",
		"0.3B":      "whole number of bytes",
		"99999999T": "too large",
	} {
		_, err := Parse(in)
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("Parse(%q) error = %v; want it to say %q", in, err, wantMsg)
		}
	}
}

func TestFormatPicksTheLargestExactUnit(t *testing.T) {
	for n, want := range map[int64]string{
		512 * MiB: "512MiB", GiB: "1GiB", 1536 * MiB: "1536MiB", 10 * GiB: "10GiB", 1000: "1000B", 0: "0B",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q; want %q", n, got, want)
		}
		if back, err := Parse(Format(n)); err != nil || back != n {
			t.Errorf("Parse(Format(%d)) = %d, %v", n, back, err)
		}
	}
}
