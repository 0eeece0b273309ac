package view_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

func gunzipEquals(t *testing.T, gz, want []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	zr.Multistream(false)
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("gunzipped view differs (%d vs %d bytes)", len(got), len(want))
	}
}
