package view

import (
	"encoding/json"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// FuzzParseMeta: any blob parses without a panic through parseMeta (branch
// metadata) and decodeBlobJSON (stack metadata); a pull request is kept
// only with a positive number, and what is kept encodes as JSON.
func FuzzParseMeta(f *testing.F) {
	for _, seed := range []string{
		`{"parentBranchName":"main","parentBranchRevision":"0123456789012345678901234567890123456789","stackId":"s1"}`,
		`{"parentBranchName":"a","prInfo":{"number":7,"title":"Add a","state":"OPEN","url":"https://github.com/acme/x/pull/7","isDraft":false,"base":"main"}}`,
		`{"parentBranchName":"a","prInfo":{"number":0}}`,
		`{"parentBranchName":"a","prInfo":{"number":-1,"title":null}}`,
		`{"parentBranchName":"a","prInfo":{"number":1e400}}`,
		`{"parentBranchName":7}`,
		`{"id":"s1","title":"Login flow","description":"three steps"}`,
		`{"parentBranchName":"\u0000\u001b[31m"}`,
		`null`, `[]`, `"x"`, `{`, ``, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		obj := &plumbing.MemoryObject{}
		obj.SetType(plumbing.BlobObject)
		if _, err := obj.Write(data); err != nil {
			t.Fatal(err)
		}
		h := obj.Hash()
		e := parseMeta(h, obj)
		if e.err != nil {
			if e.pr != nil {
				t.Fatal("a pull request from metadata that failed to parse")
			}
		} else if e.pr != nil {
			if e.pr.Number <= 0 {
				t.Fatalf("pull request number %d kept", e.pr.Number)
			}
			if _, err := json.Marshal(e.pr); err != nil {
				t.Fatalf("pull request does not encode: %v", err)
			}
		}
		var sm stackMeta
		_ = decodeBlobJSON(h, obj, &sm)

		// A blob of another type is refused, never decoded.
		tree := &plumbing.MemoryObject{}
		tree.SetType(plumbing.TreeObject)
		if _, err := tree.Write(data); err != nil {
			t.Fatal(err)
		}
		if e := parseMeta(tree.Hash(), tree); e.err == nil {
			t.Fatal("a tree parsed as metadata")
		}
	})
}
