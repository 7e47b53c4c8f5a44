package main

import "testing"

func TestDiskText(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1000: "1kB", 100_000: "100kB", 1_234_567: "1.23MB", 5_000_000_000: "5GB", 7e15: "7000TB", 999_999_999: "1000MB", 25_550_000: "25.6MB"} {
		if got := diskText(n); got != want {
			t.Errorf("diskText(%d) = %q, want %q", n, got, want)
		}
	}
}
