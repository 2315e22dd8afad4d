// gc's live chunk ids, split by the top bits of the id into ranges kept in files, so that a
// store of any size is collected with one range in memory at a time.

import SLMFormats
import Foundation

/// Ids go in (with repeats, as trees hold them) in any order; each range comes out as a
/// `ChunkIDSet`. With zero bits there is one range, held in memory and never written.
final class ChunkIDSpill {
    /// 64 ranges: 64 write buffers of 64 KiB, and ranges of at most a sixty-fourth of the ids.
    static let maxBits = 6
    private static let bufferBytes = 64 << 10

    let bits: Int
    var ranges: Int { 1 << bits }
    private var memory = ChunkIDSet.Builder()
    private var built: ChunkIDSet?
    private let paths: [String]
    private var files: [FileDescriptor?]
    private var buffers: [[UInt8]]

    init(directory: String, bits: Int) throws {
        precondition((0...ChunkIDSpill.maxBits).contains(bits))
        self.bits = bits
        paths = bits == 0 ? [] : (0..<(1 << bits)).map { "\(directory)/live-\($0)" }
        files = try paths.map { try FileDescriptor(path: $0, flags: O_WRONLY | O_CREAT | O_TRUNC) }
        buffers = paths.map { _ in [] }
    }

    /// The range an id falls in: ranges follow id order, so a sorted list's are consecutive.
    func range(of id: ChunkID) -> Int { bits == 0 ? 0 : Int(id.high >> UInt64(64 - bits)) }

    func append(_ id: ChunkID) throws {
        if bits == 0 { return memory.insert(id) }
        let r = range(of: id)
        withUnsafeBytes(of: id.high.littleEndian) { buffers[r].append(contentsOf: $0) }
        withUnsafeBytes(of: id.low.littleEndian) { buffers[r].append(contentsOf: $0) }
        if buffers[r].count >= ChunkIDSpill.bufferBytes {
            try files[r]!.write(buffers[r])
            buffers[r].removeAll(keepingCapacity: true)
        }
    }

    /// Writes what is buffered and closes the files; no `append` after it.
    func finish() throws {
        for r in files.indices {
            if !buffers[r].isEmpty { try files[r]!.write(buffers[r]) }
            buffers[r] = []
            files[r] = nil
        }
    }

    /// Hands the distinct ids of one range to `body` in ascending order.
    func forEachID(in r: Int, _ body: (ChunkID) throws -> Void) throws {
        try load(r).forEachMember(body)
    }

    /// The distinct ids of one range, read back in blocks (its file holds them with repeats).
    func load(_ r: Int) throws -> ChunkIDSet {
        if bits == 0 {
            if built == nil { built = memory.build() }
            return built!
        }
        let file = try FileDescriptor.openForReading(paths[r])
        let size = try file.size()
        var ids = ChunkIDSet.Builder()
        var at: UInt64 = 0
        while at < size {
            let block = try file.pread(count: Int(min(UInt64(1 << 20), size - at)), at: at)
            guard block.count % 16 == 0, !block.isEmpty else { throw SLMError.damaged(path: paths[r], problem: "live set file cut short") }
            var i = 0
            while i < block.count {
                ids.insert(ChunkID(high: block.readLE(UInt64.self, at: i), low: block.readLE(UInt64.self, at: i + 8)))
                i += 16
            }
            at += UInt64(block.count)
        }
        return ids.build()
    }
}
