// A Bloom filter of chunk ids: "maybe" or "certainly not" in 12 bits a chunk. Where a false
// "maybe" only costs an extra chunk stored (seeding a pull from files on disk), it stands in for
// an exact set that would cost 16 bytes a chunk.

import SLMFormats

/// What a chunk ingester asks of the set of chunks it should keep.
public protocol ChunkIDMembership: Sendable {
    func contains(_ id: ChunkID) -> Bool
}

extension ChunkIDSet: ChunkIDMembership {}

/// A Bloom filter of chunk ids, 12 bits an id: `contains` may say yes for an id never inserted
/// (about 0.3%), never no for one that was.
public struct ChunkIDFilter: ChunkIDMembership {
    static let bitsPerID = 12
    /// About 0.3% false "maybe" at 12 bits an id.
    static let probes = 8
    private var bits: [UInt64]
    private let bitCount: UInt64

    /// A filter sized for `capacity` ids.
    public init(capacity: Int) {
        let words = max(1, (capacity * Self.bitsPerID + 63) / 64)
        bits = [UInt64](repeating: 0, count: words)
        bitCount = UInt64(words * 64)
    }

    /// Chunk ids are XXH3-128 values, evenly spread: their two halves are the two hashes of
    /// double hashing, with no further hashing needed.
    private func positions(_ id: ChunkID) -> some Sequence<UInt64> {
        let step = id.low | 1
        return (0..<UInt64(Self.probes)).lazy.map { i in (id.high &+ i &* step) % bitCount }
    }

    /// Adds `id`.
    public mutating func insert(_ id: ChunkID) {
        for p in positions(id) { bits[Int(p >> 6)] |= 1 << (p & 63) }
    }

    /// False when `id` was certainly never inserted; true when it probably was.
    public func contains(_ id: ChunkID) -> Bool {
        positions(id).allSatisfy { bits[Int($0 >> 6)] & (1 << ($0 & 63)) != 0 }
    }
}
