// The ids of the chunks one ingest has stored so far, exact, in memory that does not grow with
// their number: the latest ids in a hash set, older ones in sorted run files in the working
// directory, each with a Bloom filter, so the disk is read only when a filter says "maybe".

import SLMFormats
import Foundation

/// Exact membership of the chunk ids inserted so far. Memory: at most `runLength` ids in a hash
/// set plus 12 bits an id in the runs' filters; a repeat found on disk costs a binary search.
struct SpilledChunkIDSet: Sendable {
    /// Ids held in memory before they go to a run: about 1.5 MiB of hash set.
    static let runLength = 1 << 15
    private let directory: String
    private let runLength: Int
    private var recent = Set<ChunkID>()
    private var runs: [Run] = []

    private struct Run: Sendable {
        let file: FileDescriptor
        let count: Int
        let filter: ChunkIDFilter
    }

    /// A set whose runs go to files in `directory` (removed with it).
    init(directory: String, runLength: Int = SpilledChunkIDSet.runLength) {
        self.directory = directory
        self.runLength = runLength
    }

    /// Adds `id` (not already a member).
    mutating func insert(_ id: ChunkID) throws {
        recent.insert(id)
        if recent.count >= runLength { try spill() }
    }

    /// Whether `id` was inserted. Throws only when a run file cannot be read.
    func contains(_ id: ChunkID) throws -> Bool {
        if recent.contains(id) { return true }
        for run in runs where run.filter.contains(id) {
            if try search(run, for: id) { return true }
        }
        return false
    }

    private mutating func spill() throws {
        let sorted = recent.sorted()
        var filter = ChunkIDFilter(capacity: sorted.count)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.count * 16)
        for id in sorted {
            filter.insert(id)
            bytes.append(contentsOf: id.canonicalBytes)
        }
        let file = try FileDescriptor(path: "\(directory)/written-ids-\(runs.count)", flags: O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
        try file.write(bytes)
        runs.append(Run(file: file, count: sorted.count, filter: filter))
        recent = []
    }

    private func search(_ run: Run, for id: ChunkID) throws -> Bool {
        var lo = 0, hi = run.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let bytes = try run.file.pread(count: 16, at: UInt64(mid) * 16)
            guard let found = ChunkID(canonical: bytes[...]) else {
                throw SLMError.damaged(path: run.file.path, problem: "a chunk id of this working file cannot be read back")
            }
            if found == id { return true }
            if found < id { lo = mid + 1 } else { hi = mid }
        }
        return false
    }
}
