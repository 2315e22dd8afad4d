// The merged view of every pack index in a store (or a remote): chunk id → where its bytes are.
// Full records (codecs 0-2) are preferred; a chunk stored only as a delta record (codec 3) is
// read through it, its bases always from full records (depth 1).

public struct ChunkIndex: Sendable {
    struct Slot: Sendable {
        var pack: UInt32
        var offset: UInt64
        var storedLength: UInt32
        var rawLength: UInt32
        var codec: ChunkCodec
    }

    public private(set) var packs: [PackID] = []
    public private(set) var packSizes: [PackID: UInt64] = [:]
    private var slots: [ChunkID: Slot] = [:]
    private var deltaSlots: [ChunkID: [Slot]] = [:]

    public init() {}

    /// Chunks with a full record.
    public var count: Int { slots.count }

    /// Whether the chunk's bytes are here, as a full or a delta record.
    public func contains(_ id: ChunkID) -> Bool { slots[id] != nil || deltaSlots[id] != nil }

    /// Whether the chunk has a full record (what a delta's base and a remote's listed version need).
    public func containsFull(_ id: ChunkID) -> Bool { slots[id] != nil }

    /// The full record of a chunk, else its first delta record.
    public func location(of id: ChunkID) -> ChunkLocation? {
        fullLocation(of: id) ?? deltaSlots[id]?.first.map(location)
    }

    public func fullLocation(of id: ChunkID) -> ChunkLocation? { slots[id].map(location) }

    private func location(_ s: Slot) -> ChunkLocation {
        ChunkLocation(pack: packs[Int(s.pack)], offset: s.offset, storedLength: s.storedLength, rawLength: s.rawLength, codec: s.codec)
    }

    /// Delta records of a chunk, in every pack that holds one.
    public func deltaLocations(of id: ChunkID) -> [ChunkLocation] { (deltaSlots[id] ?? []).map(location) }

    /// Chunks stored only as delta records.
    public var deltaOnly: [ChunkID] { deltaSlots.keys.filter { slots[$0] == nil } }

    /// Adds a pack's entries; a chunk already known keeps its first full location.
    public mutating func add(pack: PackID, index: PackIndex) {
        let p = UInt32(packs.count)
        packs.append(pack)
        packSizes[pack] = index.packSize
        slots.reserveCapacity(slots.count + index.entries.count)
        for e in index.entries {
            let slot = Slot(pack: p, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, codec: e.codec)
            if e.codec == .delta {
                deltaSlots[e.id, default: []].append(slot)
            } else if slots[e.id] == nil {
                slots[e.id] = slot
            }
        }
    }
}
