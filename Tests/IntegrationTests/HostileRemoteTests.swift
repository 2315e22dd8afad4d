import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Remotes that serve what an attacker would: inflated trees, surprising but valid objects,
/// manifests that contradict themselves, and model names aimed at other models' directories.
/// Each must end in a clear error (or a correct install) with the device intact.
final class HostileRemoteTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
    }

    func add(_ ref: String, bytes: [UInt8], extra: [String] = []) {
        let src = "\(dir)/src-\(ref)"
        TestSupport.write(bytes, to: src + "/model.safetensors")
        let r = TestSupport.cli(["add", ref, src] + extra, store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func push() { XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0) }

    func weights(_ seed: UInt64, _ n: Int = 200_000) -> [UInt8] {
        TestSupport.safetensors([("w", "BF16", [n / 2], TestSupport.bf16Like(n, seed: seed))])
    }

    /// Publishes m@1.1.0 on the remote: m@1.0.0's tree with its file's SHA-256 replaced, so every
    /// chunk passes its check and the file fails (what a planted chunk-id collision looks like).
    @discardableResult
    func publishVersionWithAWrongFileDigest() throws -> TreeObject {
        let store = try Store.open(at: remote)
        var files = try store.readTree(try store.resolve("m@1.0.0").object.tree).files
        files[0].sha256 = SHA256Hasher.hash(Array("something else".utf8))
        let tree = TreeObject(files: files)
        let v = VersionObject(name: "m", version: try SemVer("1.1.0"), tree: try store.writeObject(tree.encoded()), parent: nil,
                              created: Timestamp.now(), addedBy: "x", tool: "x")
        try store.writeRef(at: store.versionRefPath(try ModelName("m"), v.version), id: try store.writeObject(v.encoded()))
        return tree
    }

    /// Finding 3: a few downloaded bytes that install as a large file (zeros dedup to one chunk).
    func testAnInstallLargerThanTheDiskOrTheLimitIsRefusedBeforeItFillsTheDisk() throws {
        add("big@1.0.0", bytes: TestSupport.safetensors([("w", "BF16", [40 << 20], [UInt8](repeating: 0, count: 80 << 20))]))
        push()
        let limited = TestSupport.cli(["pull", remote, "big@1.0.0", "--max-install-size", "10M", "--to", dir + "/dev"], store: dir + "/edge")
        XCTAssertEqual(limited.status, 1)
        XCTAssertTrue(limited.stderr.contains("more than --max-install-size") && limited.stderr.contains("nothing was downloaded"), limited.stderr)
        XCTAssertFalse(FileSystem.exists(dir + "/dev"))
        let small = dir + "/small"
        try FileSystem.makeDirectories(small)
        guard mountTmpfs(small, size: "48m") else { throw XCTSkip("cannot mount a tmpfs here (not root?)") }
        defer { unmount(small) }
        // The expansion bound (ExpansionBoundTests) refuses these zeros by default; lifted, the
        // disk floor still catches them.
        let r = TestSupport.cli(["pull", remote, "big@1.0.0", "--to", small + "/dev", "--max-expansion", "0"], store: small + "/store")
        XCTAssertEqual(r.status, 1)
        // #45: one check for the download and the install, before anything is fetched.
        XCTAssertTrue(r.stderr.contains("not enough disk space") && r.stderr.contains("pulling big@1.0.0") && r.stderr.contains("to install"), r.stderr)
        XCTAssertNil(InstallDirectory(root: small + "/dev").current())
        // Refused before writing: the disk is still nearly empty.
        XCTAssertLessThan(DiskSpace.stats(small)!.total - DiskSpace.stats(small)!.available, 8 << 20)
    }

    /// #45: the store and the install directory on one small filesystem: one check covers the
    /// download and the install together, in human units, and refuses before anything is fetched.
    func testOneDiskCheckCoversTheStoreAndTheInstallTogether() throws {
        add("r@1.0.0", bytes: TestSupport.safetensors([("w", "U8", [5 << 20], TestSupport.random(5 << 20, seed: 3))]))
        push()
        let small = dir + "/tiny"
        try FileSystem.makeDirectories(small)
        guard mountTmpfs(small, size: "9m") else { throw XCTSkip("cannot mount a tmpfs here (not root?)") }
        defer { unmount(small) }
        let r = TestSupport.cli(["pull", remote, "r@1.0.0", "--to", small + "/dev"], store: small + "/store")
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("on one filesystem") && r.stderr.contains("MiB") && r.stderr.contains("nothing was downloaded"), r.stderr)
        XCTAssertFalse((try? FileSystem.listDirectory(small + "/store/packs"))?.contains { $0.hasSuffix(".pack") } ?? false, "nothing was downloaded")
        XCTAssertNil(InstallDirectory(root: small + "/dev").current())
    }

    /// Finding 5: a version object with a key this release does not know is stored as its exact
    /// bytes, under the id its ref names.
    func testAVersionObjectWithAnUnknownKeyIsStoredAsItsExactBytes() throws {
        add("m@1.0.0", bytes: weights(1))
        push()
        let store = try Store.open(at: remote)
        let v = try store.resolve("m@1.0.0")
        var json = try JSONValue.parse(try store.readObject(v.id, limit: 1 << 20)).objectValue!
        json["x-future-field"] = .string("readers ignore this")
        json["version"] = .string("1.1.0")
        let own = JSONValue.object(json).canonicalBytes() + [0x0a]
        let ownID = try store.writeObject(own)
        try store.writeRef(at: store.versionRefPath(try ModelName("m"), try SemVer("1.1.0")), id: ownID)
        let edge = dir + "/edge"
        let r = TestSupport.cli(["pull", remote, "m@1.1.0", "--to", dir + "/dev"], store: edge)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertSameBytes(try Store.open(at: edge).readObject(ownID, limit: 1 << 20), own)
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
        XCTAssertEqual(TestSupport.cli(["ls"], store: edge).status, 0)
        XCTAssertEqual(TestSupport.cli(["gc"], store: edge).status, 0)
    }

    /// Finding 6: a stage naming a version the manifest does not list is an error for pull and
    /// for sync (never a crash, never "up to date").
    func testAStageNamingAnUnlistedVersionIsAnErrorNotACrash() throws {
        add("m@1.0.0", bytes: weights(1))
        XCTAssertEqual(TestSupport.cli(["promote", "m@1.0.0", "production", "--skip-staging"], store: publisher).status, 0)
        push()
        var manifest = try JSONValue.parse(TestSupport.read(remote + "/manifest.json")).objectValue!
        var models = manifest["models"]!.objectValue!
        var m = models["m"]!.objectValue!
        m["stages"] = .object(["production": .object(["version": .string("9.9.9"), "id": .string(String(repeating: "ab", count: 32))])])
        models["m"] = .object(m)
        manifest["models"] = .object(models)
        TestSupport.write(Array(JSONValue.object(manifest).prettyString().utf8), to: remote + "/manifest.json")
        let r = TestSupport.cli(["pull", remote, "m@production"], store: dir + "/edge")
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("names version 9.9.9, which the manifest does not list"), r.stderr)
        let s = TestSupport.cli(["sync", remote, "--to", dir + "/dev", "--follow", "m@production", "--once"])
        XCTAssertEqual(s.status, 1, s.stdout + s.stderr)
        XCTAssertTrue(s.stdout.contains("does not list"), s.stdout)
    }

    /// Finding 9: a dependency named "m/current" (or "m/1.0.0") would land inside model m's
    /// install directory; the daemon refuses it and m's installed version is untouched.
    func testADependencyNameCannotReachIntoAnotherModelsInstallDirectory() throws {
        add("m@1.0.0", bytes: weights(1))
        add("m/current@1.0.0", bytes: weights(2))
        add("app@1.0.0", bytes: weights(3), extra: ["--depends", "m/current@^1"])
        for ref in ["m@1.0.0", "app@1.0.0"] {
            XCTAssertEqual(TestSupport.cli(["promote", ref, "production", "--skip-staging"], store: publisher).status, 0)
        }
        push()
        let device = dir + "/dev"
        let first = TestSupport.cli(["sync", remote, "--to", device, "--follow", "m@production", "--once"])
        XCTAssertEqual(first.status, 0, first.stdout)
        let before = TestSupport.snapshot(device + "/m")
        let s = TestSupport.cli(["sync", remote, "--to", device, "--follow", "m@production", "--follow", "app@production", "--once"])
        XCTAssertEqual(s.status, 1, s.stdout)
        XCTAssertTrue(s.stdout.contains("model name \"m/current\" would install into another model's directory"), s.stdout)
        XCTAssertEqual(TestSupport.snapshot(device + "/m"), before)
        XCTAssertEqual(InstallDirectory(root: device + "/m").current(), "1.0.0")
    }

    /// A file whose chunks all pass their XXH3 but which does not reassemble to its SHA-256 (what
    /// a planted chunk-id collision looks like): its chunks leave the store and the version with
    /// them, so no later version is built from them.
    func testAFileFailingItsSHA256AtInstallHasItsChunksDroppedFromTheStore() throws {
        add("m@1.0.0", bytes: weights(1))
        push()
        let tree = try publishVersionWithAWrongFileDigest()
        let edge = dir + "/edge"
        let r = TestSupport.cli(["pull", remote, "m@1.1.0", "--to", dir + "/dev"], store: edge)
        XCTAssertEqual(r.status, 5, r.stderr)
        XCTAssertTrue(r.stderr.contains("reassembles to SHA-256") && r.stderr.contains("dropped from the store"), r.stderr)
        let index = try Store.open(at: edge).loadChunkIndex()
        XCTAssertFalse(try tree.files[0].chunks.contains { index.contains($0.id) })
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
        XCTAssertFalse(TestSupport.cli(["ls"], store: edge).stdout.contains("1.1.0"))
        let again = TestSupport.cli(["pull", remote, "m@1.0.0", "--to", dir + "/dev", "--json"], store: edge)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try TestSupport.json(again)["chunks_fetched"]?.uint64Value, UInt64(tree.files[0].chunks.count))
    }

    /// Only what the failed pull brought is dropped: chunks the device held before (here its own
    /// version of the same weights' first half) stay, and that version still checks out.
    func testAFailedInstallDropsOnlyTheChunksThePullBrought() throws {
        let bytes = weights(1)
        add("m@1.0.0", bytes: bytes)
        push()
        let tree = try publishVersionWithAWrongFileDigest()
        let edge = dir + "/edge"
        // The same tensor, its second half changed: the first half's chunks are shared.
        let values = TestSupport.bf16Like(200_000, seed: 1)
        let mine = TestSupport.safetensors([("w", "BF16", [100_000], Array(values[..<100_000]) + TestSupport.bf16Like(100_000, seed: 9))])
        XCTAssertEqual(bytes, TestSupport.safetensors([("w", "BF16", [100_000], values)]))
        TestSupport.write(mine, to: dir + "/own/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "own@1.0.0", dir + "/own"], store: edge).status, 0)
        let own = try Store.open(at: edge).readTree(try Store.open(at: edge).resolve("own@1.0.0").object.tree).files[0].chunks.map(\.id)
        let shared = Set(own).intersection(try tree.files[0].chunks.map(\.id))
        XCTAssertGreaterThan(shared.count, 0, "the device holds part of the version before the pull")
        XCTAssertLessThan(shared.count, Set(try tree.files[0].chunks.map(\.id)).count)

        let r = TestSupport.cli(["pull", remote, "m@1.1.0", "--to", dir + "/dev"], store: edge)
        XCTAssertEqual(r.status, 5, r.stderr)
        let index = try Store.open(at: edge).loadChunkIndex()
        XCTAssertTrue(own.allSatisfy(index.contains), "the device's own chunks stay")
        XCTAssertFalse(try tree.files[0].chunks.contains { !shared.contains($0.id) && index.contains($0.id) }, "the pulled ones are gone")
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
        let out = TestSupport.cli(["checkout", "own@1.0.0", dir + "/out"], store: edge)
        XCTAssertEqual(out.status, 0, out.stderr)
        XCTAssertEqual(TestSupport.read(dir + "/out/model.safetensors"), mine)
    }

    /// The same with a multi-pack index: the pull writes one (16 packs are outside it) before it
    /// installs, so dropping the chunks must write it again, or they would still be found there.
    func testChunksDroppedAfterACollisionLeaveTheMultiPackIndexToo() throws {
        add("m@1.0.0", bytes: weights(1))
        push()
        let tree = try publishVersionWithAWrongFileDigest()
        let edge = dir + "/edge"
        for i in 0..<(Store.uncoveredPackLimit - 1) {
            TestSupport.write(TestSupport.random(1000, seed: UInt64(100 + i)), to: "\(dir)/small-\(i)/f.bin")
            XCTAssertEqual(TestSupport.cli(["add", "local@1.0.\(i)", "\(dir)/small-\(i)"], store: edge).status, 0)
        }
        XCTAssertFalse(FileSystem.exists(edge + "/packs/multi-pack-index"))
        let r = TestSupport.cli(["pull", remote, "m@1.1.0", "--to", dir + "/dev"], store: edge)
        XCTAssertEqual(r.status, 5, r.stderr)
        XCTAssertTrue(FileSystem.exists(edge + "/packs/multi-pack-index"))
        let index = try Store.open(at: edge).loadChunkIndex()
        XCTAssertNotNil(index.multiPackIndex)
        XCTAssertFalse(try tree.files[0].chunks.contains { index.contains($0.id) })
        let verify = TestSupport.cli(["verify"], store: edge)
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    /// Finding 8: metadata larger than its bound is refused from its Content-Length, before a
    /// byte of it is held (a 1 GiB index used to cost 3.3 GiB of memory).
    func testOversizedMetadataIsRefusedBeforeItIsRead() throws {
        add("m@1.0.0", bytes: weights(1))
        push()
        let idx = try XCTUnwrap(try FileSystem.listDirectory(remote + "/packs").first { $0.hasSuffix(".idx") })
        XCTAssertEqual(truncate(remote + "/packs/" + idx, off_t(1) << 30), 0)  // sparse: 1 GiB on paper
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let start = Date()
        let r = TestSupport.cli(["pull", nginx.url, "m@1.0.0"], store: dir + "/edge")
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("larger than the \(PackIndex.maxEncodedSize) bytes expected"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    /// The tree object of the remote's m@1.0.0.
    func remoteTreePath() throws -> String {
        let store = try Store.open(at: remote)
        return store.objectPath(try store.resolve("m@1.0.0").object.tree)
    }

    func testAnOversizedTreeObjectIsRefusedBeforeItIsRead() throws {
        add("m@1.0.0", bytes: weights(1))
        push()
        let tree = try remoteTreePath()
        XCTAssertEqual(chmod(tree, 0o644), 0)
        XCTAssertEqual(truncate(tree, off_t(1) << 30), 0)  // sparse: 1 GiB on paper
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let start = Date()
        let r = TestSupport.cli(["pull", nginx.url, "m@1.0.0", "--to", dir + "/dev"], store: dir + "/edge")
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("larger than the \(TreeObject.maxEncodedSize) bytes expected"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(try FileSystem.listDirectory(dir + "/edge/tmp"), [], "the streamed tree went with the pull")
        XCTAssertFalse(FileSystem.exists(dir + "/dev/current"))
    }

    func testATreeObjectThatDoesNotHashToItsIdIsRefusedWhileItStreams() throws {
        add("m@1.0.0", bytes: weights(1))
        push()
        let tree = try remoteTreePath()
        var bytes = TestSupport.read(tree)
        bytes[bytes.count - 1] ^= 0xff
        XCTAssertEqual(chmod(tree, 0o644), 0)
        TestSupport.write(bytes, to: tree)
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let r = TestSupport.cli(["pull", nginx.url, "m@1.0.0", "--to", dir + "/dev"], store: dir + "/edge")
        XCTAssertEqual(r.status, 6, r.stderr)
        XCTAssertTrue(r.stderr.contains("does not hash to its id"), r.stderr)
        let edge = try Store.open(at: dir + "/edge")
        XCTAssertEqual(try edge.models(), [])
        XCTAssertFalse(edge.hasObject(SHA256Hasher.hash(bytes)))
        XCTAssertEqual(try FileSystem.listDirectory(dir + "/edge/tmp"), [])
    }

    /// What a failed pull may leave in an edge store: no working file, and only checked pack
    /// indexes in the remote's cache.
    func assertNothingUncheckedLeft(in edge: String, _ what: String) throws {
        XCTAssertEqual(try FileSystem.listDirectory(edge + "/tmp"), [], what)
        let cache = edge + "/cache/pack-indexes"
        for remote in (try? FileSystem.listDirectory(cache)) ?? [] {
            for file in try FileSystem.listDirectory("\(cache)/\(remote)") {
                XCTAssertNoThrow(try PackIndexCursor.check("\(cache)/\(remote)/\(file)"), "\(what): \(file)")
            }
        }
    }

    /// Tree objects and pack indexes stream into files as they arrive; a spoiled answer is
    /// refused, nothing is installed, and neither the store nor the index cache keeps it.
    func testSpoiledTreeObjectsAndPackIndexesAreRefusedWhileTheyStream() throws {
        add("m@1.0.0", bytes: weights(1))
        push()
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        for (mode, message) in [("tree-corrupt", "does not hash to its id"), ("tree-oversize", "does not hash to its id"),
                                ("tree-truncate", ""), ("tree-drop", ""),
                                ("index-corrupt", "pack index"), ("index-oversize", "pack index"), ("index-truncate", "")] {
            let proxy = try FaultProxy(upstream: nginx.port, mode: mode)
            let edge = dir + "/edge-\(mode)"
            let r = TestSupport.cli(["pull", proxy.url, "m@1.0.0", "--to", dir + "/dev-\(mode)"], store: edge)
            XCTAssertNotEqual(r.status, 0, mode)
            XCTAssertTrue(message.isEmpty || r.stderr.contains(message), "\(mode): \(r.stderr)")
            XCTAssertNil(InstallDirectory(root: dir + "/dev-\(mode)").current(), "\(mode): nothing is installed")
            XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0, "\(mode): the edge store stays sound")
            try assertNothingUncheckedLeft(in: edge, mode)
        }
        // Server errors on the streamed tree are ridden out by retries.
        let proxy = try FaultProxy(upstream: nginx.port, mode: "tree-error500", count: 2)
        let r = TestSupport.cli(["pull", proxy.url, "m@1.0.0", "--to", dir + "/dev-ok"], store: dir + "/edge-ok")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertSameBytes(TestSupport.read(dir + "/dev-ok/current/model.safetensors"), weights(1))
    }
}

/// Finding 7 of #28: a remote that lists one tiny record over and over ("dedup bomb") is
/// refused by default, before anything is downloaded.
final class ExpansionBoundTests: XCTestCase {
    func testADedupBombIsRefusedByDefaultAndInstallsOnlyWhenTheBoundIsLifted() throws {
        let dir = TestSupport.scratch()
        // 64 MiB of zeros: one 256 KiB chunk, a few dozen bytes stored, listed 256 times.
        try FileSystem.makeDirectories(dir + "/bomb")
        _ = FileManager.default.createFile(atPath: dir + "/bomb/weights.bin", contents: nil)
        XCTAssertEqual(truncate(dir + "/bomb/weights.bin", 64 << 20), 0)
        XCTAssertEqual(TestSupport.cli(["add", "bomb@1.0.0", dir + "/bomb"], store: dir + "/publisher").status, 0)
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote", "--no-web"], store: dir + "/publisher").status, 0)
        let refused = TestSupport.cli(["pull", dir + "/remote", "bomb@1.0.0", "--to", dir + "/device"], store: dir + "/edge")
        XCTAssertEqual(refused.status, 6, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("more than 1024 times") && refused.stderr.contains("nothing was downloaded"), refused.stderr)
        XCTAssertNil(InstallDirectory(root: dir + "/device").current())
        XCTAssertEqual(try FileSystem.listDirectory(dir + "/edge/packs").filter { $0.hasSuffix(".pack") }, [])
        let sync = TestSupport.cli(["sync", dir + "/remote", "--to", dir + "/sync", "--follow", "bomb@^1", "--once", "--store", dir + "/sync-store"])
        XCTAssertEqual(sync.status, 1, sync.stdout)
        XCTAssertTrue(sync.stdout.contains("more than 1024 times"), sync.stdout)
        let lifted = TestSupport.cli(["pull", dir + "/remote", "bomb@1.0.0", "--to", dir + "/device", "--max-expansion", "0"], store: dir + "/edge")
        XCTAssertEqual(lifted.status, 0, lifted.stderr)
        XCTAssertEqual(InstallDirectory(root: dir + "/device").current(), "1.0.0")
    }

    /// An honest update (a fine-tune fetched as tensor deltas against the installed version)
    /// stays far below the default bound.
    func testAnHonestDeltaUpdateIsNotRefused() throws {
        let dir = TestSupport.scratch()
        let base = TestSupport.bf16Like(2_000_000, seed: 7)
        var tuned = base
        for i in stride(from: 0, to: tuned.count, by: 2) where i % 64 == 0 { tuned[i] ^= 1 }
        for (v, bytes) in [("1.0.0", base), ("1.1.0", tuned)] {
            TestSupport.write(TestSupport.safetensors([("w", "BF16", [1_000_000], bytes)]), to: "\(dir)/src-\(v)/model.safetensors")
            XCTAssertEqual(TestSupport.cli(["add", "m@\(v)", "\(dir)/src-\(v)"], store: dir + "/publisher").status, 0)
        }
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote", "--no-web"], store: dir + "/publisher").status, 0)
        XCTAssertEqual(TestSupport.cli(["pull", dir + "/remote", "m@1.0.0", "--to", dir + "/device"], store: dir + "/edge").status, 0)
        let update = TestSupport.cli(["pull", dir + "/remote", "m@1.1.0", "--to", dir + "/device"], store: dir + "/edge")
        XCTAssertEqual(update.status, 0, update.stderr)
        XCTAssertEqual(InstallDirectory(root: dir + "/device").current(), "1.1.0")
    }
}
