import XCTest
@testable import SLMStoreKit
import SLMTestSupport

/// A device pull's peak memory is set by its budget, not by how many chunks the model has:
/// measured on the real binary (peak RSS from GNU time) pulling over nginx and installing.
final class PullFootprintTests: XCTestCase {
    /// Publishes `bytes` of random data cut into 256-byte chunks on average (so a few MiB have
    /// the chunk count of a model some 250 times larger), pulls it onto an empty device with
    /// `--to`, and returns the pull's peak RSS and the chunks it fetched.
    func pullPeak(_ bytes: Int, in dir: String) throws -> (kib: Int, chunks: Int) {
        let pub = "\(dir)/pub-\(bytes)", remote = "\(dir)/remote-\(bytes)"
        var config = StoreConfig()
        config.chunker = ChunkerParameters(minSize: 64, avgSize: 256, maxSize: 1024, normalization: 1)
        TestSupport.write(TestSupport.random(bytes, seed: UInt64(bytes)), to: "\(dir)/model-\(bytes)/weights.bin")
        let store = try Store.create(at: pub, config: config)
        _ = try store.add(name: try ModelName("m"), version: try SemVer("1.0.0"), inputs: try AddInputs.collect(["\(dir)/model-\(bytes)"]))
        // Remote packs of 1 MiB hold about as many records as a default 256 MiB pack of 64 KiB
        // chunks: planning reads one pack index at a time, so its size, not the model's, counts.
        var push = PushOptions()
        push.packTargetSize = 1 << 20
        _ = try store.push(to: LocalBackend(root: remote), refs: [], options: push)
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/time")
        p.arguments = ["-f", "peak %M", TestSupport.binary, "--store", "\(dir)/edge-\(bytes)", "pull", nginx.url, "m@1.0.0",
                       "--to", "\(dir)/dev-\(bytes)", "--json"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, stderr)
        guard let line = stderr.split(separator: "\n").last(where: { $0.hasPrefix("peak ") }), let kib = Int(line.dropFirst(5)) else {
            throw XCTSkip("no peak RSS from /usr/bin/time: \(stderr)")
        }
        let chunks = try JSONValue.parse(String(decoding: stdout, as: UTF8.self))["chunks_fetched"]!.int64Value!
        return (kib, Int(chunks))
    }

    func testAPullsPeakMemoryBarelyGrowsWithTheModelsChunkCount() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else { throw XCTSkip("GNU time is not installed") }
        let dir = TestSupport.scratch()
        let small = try pullPeak(3 << 20, in: dir)
        let large = try pullPeak(24 << 20, in: dir)
        XCTAssertGreaterThan(large.chunks - small.chunks, 70_000)
        // The plan is made one window at a time and fetched packs are searched through the
        // multi-pack index. What is left per chunk is the version's chunk list (24 bytes), the
        // set of chunks the pull adds (16) and the allocator's slack around them: about 115
        // bytes of peak RSS here. A whole-version plan cost about 330.
        let perChunk = Double(large.kib - small.kib) * 1024 / Double(large.chunks - small.chunks)
        print("pull peak: \(small.kib) KiB for \(small.chunks) chunks, \(large.kib) KiB for \(large.chunks): \(Int(perChunk)) bytes a chunk")
        XCTAssertLessThan(perChunk, 200, "peak \(small.kib) KiB for \(small.chunks) chunks, \(large.kib) KiB for \(large.chunks)")
    }
}
