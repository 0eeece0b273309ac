// Package hostile is test support only: it is never imported by the
// server. It builds git objects and packs byte for byte, correct or
// malicious (lying sizes and counts, delta bombs, corrupt checksums,
// truncations, thin and self-referencing deltas, ...), and serves them
// from a scriptable git server on loopback that speaks the git daemon
// protocol (git://) and smart HTTP, so that tests can replay each attack
// against a client: the mirror package, or a built stackd binary.
//
// # Building
//
// [Blob], [Tree], [Commit] and [Tag] encode objects; a [PackBuilder]
// writes a pack v2 with whole objects and deltas ([DeltaHeader],
// [CopyOp], [InsertOp]), any header count, a correct, corrupted or
// missing checksum and trailing bytes. [Inspect] reads a pack back without
// trusting it. The attack constructors ([HeaderOnly], [DeltaBomb],
// [ChainBomb], [HugeCommit], [DuplicateObjects], ...) return a [Built]: the
// pack and the refs that make a client want it.
//
// # Serving
//
// [Start] listens on loopback for git:// and http://. Each repository
// path has a [Scenario], which a test swaps at any time with
// [Server.Set]: a scripted advertisement and pack, a real repository
// served by the git CLI (passthrough), or a hybrid of both (the real
// repository's refs, overridden, and a crafted pack: how an attack reaches
// an existing mirror's sync). [Server.Requests] records what clients
// asked for.
//
// An attack on a clone, over either transport:
//
//	srv := hostile.Start(t)
//	srv.Set("app.git", hostile.DeltaBomb(hostile.Bomb558MB).Scenario())
//	_, _, err := root.Clone(ctx, "app", mirror.Config{URL: srv.GitURL("app.git"), AllowPrivate: true})
//
// An attack on the sync of an existing mirror: onboard a real
// repository through the server, then switch the same URL to a hybrid
// whose crafted pack builds on the mirror's tip:
//
//	srv.Set("app.git", hostile.Scenario{Passthrough: workDir})
//	m, _, _ := root.Clone(ctx, "app", mirror.Config{URL: srv.HTTPURL("app.git"), AllowPrivate: true})
//	srv.Set("app.git", hostile.DeltaBomb(hostile.Bomb1GiB, tip).Hybrid(workDir))
//	_, err := m.Sync(ctx)
//
// Large outputs (a 100 MB advertisement, an endless one, a 256 MiB commit)
// are streamed or built from small compressed pieces: nothing here holds
// more than a few MiB, and nothing inflates a bomb.
package hostile
