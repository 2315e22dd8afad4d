// The merged view of every pack index in a store (or a remote): chunk id → location.

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

    public init() {}

    public var count: Int { slots.count }

    public func contains(_ id: ChunkID) -> Bool { slots[id] != nil }

    public func location(of id: ChunkID) -> ChunkLocation? {
        guard let s = slots[id] else { return nil }
        return ChunkLocation(pack: packs[Int(s.pack)], offset: s.offset, storedLength: s.storedLength,
                             rawLength: s.rawLength, codec: s.codec)
    }

    /// Adds a pack's entries; a chunk already known keeps its first location.
    public mutating func add(pack: PackID, index: PackIndex) {
        let p = UInt32(packs.count)
        packs.append(pack)
        packSizes[pack] = index.packSize
        slots.reserveCapacity(slots.count + index.entries.count)
        for e in index.entries where slots[e.id] == nil {
            slots[e.id] = Slot(pack: p, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, codec: e.codec)
        }
    }
}
