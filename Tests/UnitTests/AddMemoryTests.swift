import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
import SLMTestSupport

/// `add` keeps nothing that grows with its input: no sealed pack's write batch or record list,
/// no chunk list, no tree, no set of the ids it stored in memory. Stores of 256-byte chunks and
/// 1 MiB packs make a few MiB stand in for a model some 250 times larger, with as many packs.
final class AddMemoryTests: XCTestCase {
    /// This process's peak resident KiB since `resetPeak`.
    func peakKiB() throws -> Int {
        let text = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return try XCTUnwrap(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    /// Sets the peak to the current resident size (Linux: "5" to clear_refs).
    func resetPeak() throws {
        guard let f = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { throw XCTSkip("/proc/self/clear_refs is not writable here") }
        f.write(Data("5".utf8))
        try f.close()
    }

    /// The rise of this process's peak RSS while adding `bytes` of random data into a new, empty
    /// store of 256-byte chunks, read in 1 MiB blocks into 1 MiB packs.
    func peakRiseOfAdd(_ bytes: Int, in dir: String) throws -> (kib: Int, chunks: Int) {
        var config = StoreConfig()
        config.chunker = ChunkerParameters(minSize: 64, avgSize: 256, maxSize: 1024, normalization: 1)
        let store = try Store.create(at: "\(dir)/store-\(bytes)", config: config)
        let src = "\(dir)/src-\(bytes)"
        TestSupport.write(TestSupport.random(bytes, seed: UInt64(bytes)), to: "\(src)/weights.bin")
        let inputs = try AddInputs.collect([src])
        var options = AddOptions()
        options.packTargetSize = 1 << 20
        options.blockSize = 1 << 20
        try resetPeak()
        let before = try peakKiB()
        let r = try store.add(name: try ModelName("m"), version: try SemVer("1.0.0"), inputs: inputs, options: options)
        let rise = try peakKiB() - before
        FileSystem.removeTree(src)
        return (rise, r.newChunks)
    }

    func testPeakMemoryOfAddDoesNotGrowWithTheInputOrItsChunkCount() throws {
        let dir = TestSupport.scratch()
        // Once first, so the code and the allocator's arenas are warm for both measurements.
        _ = try peakRiseOfAdd(4 << 20, in: dir)
        let small = try peakRiseOfAdd(8 << 20, in: dir)
        let large = try peakRiseOfAdd(40 << 20, in: dir)
        XCTAssertGreaterThan(large.chunks, 4 * small.chunks)
        // 128k more chunks (a 10 GB model's count at the default chunk size) and 32 more packs:
        // kept in memory they would cost 16 MiB or more (ids, refs, tree, sealed packs' buffers).
        XCTAssertLessThan(large.kib - small.kib, 4096,
                          "peak rise \(small.kib) KiB at \(small.chunks) chunks, \(large.kib) KiB at \(large.chunks) chunks")
    }
}
